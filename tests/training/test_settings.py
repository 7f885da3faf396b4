"""The Setting contract and the one configuration route: a throwaway setting defined in this
file runs through the runner, --resume and evaluate.py; flags are gin bindings; a binding of a
value the builder derives either takes effect or stops with one line."""
import json

import pytest
import torch
import torch.nn.functional as F
import torchvision

import evaluate
from models.visual_concept_tokenizor import VCT_Decoder, VCT_Encoder
from tests.training.conftest import run_in_process, run_with_output
from training import checkpoint as ckpt
from training.objectives import VCTObjective
from training.run_log import read_scalars
from training.runner import vct_main
from training.setting import SETTINGS, Evaluation, Setting, check_derived, register_setting
from training.errors import UserError

GRID = 4  # the throwaway tokenizer's token grid (GRID x GRID tokens of 3 channels)


class PooledPixels(torch.nn.Module):
    """A frozen tokenizer: image tokens are the mean colours of a GRID x GRID grid of cells, and
    they are also the reconstruction targets."""

    def tokenize(self, images, indices=None):
        tokens = F.adaptive_avg_pool2d(images, GRID).flatten(2).transpose(1, 2)  # (B, GRID^2, 3)
        return tokens, tokens

    def reconstruction_loss(self, output, targets):
        return F.mse_loss(output, targets)

    @torch.no_grad()
    def detokenize(self, output, generator=None):
        cells = output.transpose(1, 2).unflatten(2, (GRID, GRID))
        return F.interpolate(cells, scale_factor=8, mode="nearest")

    def retokenize(self, images):
        return self.tokenize(images)[0]

    def model_state(self):
        return {}

    def load_model_state(self, checkpoint, load):
        pass


class PooledObjective(VCTObjective):
    @torch.no_grad()
    def decode_concepts(self, concepts):
        return self.tokenizer.detokenize(self.decoder(concepts))


class PooledPixelsSetting(Setting):
    name = "pooled_pixels_for_test"
    description = "VCT over mean cell colours (a test of the Setting contract)"
    run_tag = "-pooled"

    def build(self, ctx):
        encoder = VCT_Encoder(z_index_dim=ctx.cfg.concepts_num, dim=3)
        decoder = VCT_Decoder(dim=encoder.latents.shape[-1], index_num=3, z_index_dim=GRID * GRID, ce_loss=True)
        return PooledObjective(encoder, decoder, PooledPixels(), dis_loss=ctx.cfg.dis_loss, swap_min_change=0.0)

    def image_grids(self, ctx, objective):
        images = ctx.batches[torch.arange(4).numpy()][0]
        recon = objective.decode_concepts(objective.encode_images(images))
        return {"cells": torchvision.utils.make_grid((torch.cat([images, recon]) + 1) / 2, nrow=4)}

    def evaluate(self, ctx, objective, cache_key):
        images = ctx.batches[torch.arange(8).numpy()][0]
        concepts = objective.encode_images(images)
        return Evaluation({"concept_spread": {"std": float(concepts.std(dim=0).mean())}}, {"images": 8})


@pytest.fixture
def pooled_setting():
    register_setting(PooledPixelsSetting)
    yield PooledPixelsSetting.name
    SETTINGS.pop(PooledPixelsSetting.name)


def test_a_setting_defined_here_trains_resumes_and_evaluates(pooled_setting, tiny_world, tmp_path, capsys):
    def main(argv):
        return vct_main(argv, setting=pooled_setting)

    out = tmp_path / "run"
    code, printed, err = run_with_output(main, ["--config", tiny_world["config"], "--max_steps", 3, "--out", out,
                                                "--device", "cpu", "--gin_bindings", "get_args.evaluate_at_end = True"],
                                         capsys)
    assert code == 0, err[-5:]
    assert "concept_spread" in printed and f"metrics: {out / 'metrics' / 'metrics_00000003.json'}" in printed
    assert (out / "images" / "cells_00000003.png").is_file()
    assert json.loads((out / "run_args.json").read_text())["setting"] == pooled_setting
    assert "eval" in {row["split"] for row in map(json.loads, (out / "scalars.jsonl").read_text().splitlines())}

    run_id = json.loads((out / "run_args.json").read_text())["run_id"]
    provenance = json.loads((out / "metrics" / "metrics_00000003.json").read_text())["settings"]["provenance"]
    assert torch.__version__.startswith(provenance["versions"]["torch"].split("+")[0])
    assert {"numpy", "scikit-learn", "gin-config"} <= set(provenance["versions"])
    assert "VCT_Encoder.depth = 2" in provenance["operative_config"] and "git_commit" in provenance
    assert provenance["run_id"] == run_id and provenance["seed"] == 0 and provenance["device"] == "cpu"

    code, err = run_in_process(main, ["--resume", out, "--max_steps", 5], capsys)
    assert code == 0, err[-5:]
    assert sorted(read_scalars(out)) == [1, 2, 3, 4, 5]
    assert json.loads((out / "run_args.json").read_text())["run_id"] == run_id  # one run, resumed
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(out))["step"] == 5

    code, printed, err = run_with_output(evaluate.main, ["--checkpoint", out, "--device", "cpu"], capsys)
    assert code == 0, err[-5:]
    saved = json.loads((out / "metrics" / "evaluate_checkpoint_00000005.json").read_text())
    assert saved["results"] == json.loads((out / "metrics" / "metrics_00000005.json").read_text())["results"]
    assert saved["settings"]["setting"] == pooled_setting and "concept_spread" in printed

    # another setting's script refuses to resume this run, naming what it is
    code, err = run_in_process(vct_main, ["--resume", out, "--max_steps", 6], capsys)
    assert code == 2 and len(err) == 1 and pooled_setting in err[0]


def run_vq(tiny_world, tmp_path, capsys, *extra):
    return run_in_process(vct_main, ["--config", tiny_world["config"], "--out", tmp_path / "r", "--device", "cpu",
                                     "--max_steps", 1, *extra], capsys)


def test_a_binding_of_the_concept_count_stops_with_one_line_naming_the_knob(tiny_world, tmp_path, capsys):
    code, err = run_vq(tiny_world, tmp_path, capsys, "--gin_bindings", "VCT_Encoder.z_index_dim = 30")
    assert code == 2 and len(err) == 1, err
    assert "VCT_Encoder.z_index_dim = 30" in err[0] and "get_args.concepts_num" in err[0]


def test_a_decoder_width_disagreeing_with_the_encoder_stops_with_one_line(tiny_world, tmp_path, capsys):
    code, err = run_vq(tiny_world, tmp_path, capsys, "--gin_bindings", "VCT_Decoder.dim = 32")
    assert code == 2 and len(err) == 1, err
    assert "VCT_Decoder.dim = 32" in err[0] and "VCT_Encoder.latent_dim" in err[0] and "(here 16)" in err[0]


@pytest.mark.parametrize("binding, message", [
    ("VCT_Encoder.centre_concepts = 'yes'", "bad VCT_Encoder configuration: VCT_Encoder.centre_concepts = 'yes'"),
    ("VCT_Decoder.activation_checkpointing = 2", "bad VCT_Decoder configuration: VCT_Decoder.activation_checkpointing = 2"),
])
def test_a_value_the_model_refuses_stops_with_one_line(tiny_world, tmp_path, capsys, binding, message):
    code, err = run_vq(tiny_world, tmp_path, capsys, "--gin_bindings", binding)
    assert code == 2 and len(err) == 1, err
    assert message in err[0]


def test_an_agreeing_binding_is_accepted_and_a_disagreeing_one_is_not(tiny_world):
    from training.cli import load_gin
    load_gin([tiny_world["config"]], ["VCT_Encoder.z_index_dim = 4"])
    check_derived("VCT_Encoder", z_index_dim=(4, "get_args.concepts_num"), dim=(16, "get_args.hidden"))
    with pytest.raises(UserError, match="bind get_args.concepts_num instead"):
        check_derived("VCT_Encoder", z_index_dim=(5, "get_args.concepts_num"))


def test_flags_are_gin_bindings_recorded_in_the_run(tiny_world, tmp_path, capsys):
    code, err = run_vq(tiny_world, tmp_path, capsys, "--concepts_num", 3, "--batch_size", 4, "--wo_dis_loss")
    assert code == 0, err[-5:]
    run = tmp_path / "r"
    config = (run / "config.gin").read_text()
    for binding in ("get_args.concepts_num = 3", "get_args.batch_size = 4", "get_args.dis_loss = False",
                    "get_args.max_steps = 1"):
        assert binding in config
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(run))
    assert state["encoder_model_state_dict"]["latents"].shape[0] == 3
    assert "dis_loss" not in read_scalars(run)[1]
    operative = (run / "operative_config.gin").read_text()
    assert "VCT_Encoder.depth = 2" in operative and "get_args.concepts_num = 3" in operative
    rows = [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]
    assert all(isinstance(row["time"], float) and row["time"] > 1.7e9 for row in rows)
