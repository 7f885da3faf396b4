"""The scene-decomposition setting (main_vct_mask.py) and main_vct.py on scene data, on a tiny
synthetic scene world made once per module."""
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from models.mask_decoder import compose
from tests.training.conftest import TINY_SCENES, build_setting, make_world, run_in_process, run_with_output
from training.data import SceneBatches
from training.run_log import read_scalars
from training.runner import vct_main
from training.setting import get_setting
from training.visualize import mask_grid


@pytest.fixture(scope="module")
def scene_world(tmp_path_factory):
    """24 + 6 synthetic scenes at 32 px and a 16-step VQ-VAE."""
    return make_world(tmp_path_factory, "tiny_scenes", TINY_SCENES, "synthetic_scenes")


def mask_main(argv):
    return vct_main(argv, setting="mask")


def tiny_mask_objective(scene_world, *bindings):
    objective, ctx = build_setting("mask", scene_world["config"], bindings)
    return objective, ctx.data, ctx.cfg


def test_concept_masks_sum_to_one_and_composite_is_the_reconstruction(scene_world):
    objective, data, cfg = tiny_mask_objective(scene_world)
    images = SceneBatches(data)[np.arange(4)][0]
    objective.eval()
    out = objective.decompose(images)
    assert out.masks.shape == (4, cfg.concepts_num, 32, 32)
    torch.testing.assert_close(out.masks.sum(dim=1), torch.ones(4, 32, 32))
    torch.testing.assert_close(objective.decode_concepts(objective.encode_images(images)), out.image)


def test_mask_grid_rows_hold_image_reconstruction_concepts_and_segmentation(scene_world):
    objective, data, cfg = tiny_mask_objective(scene_world)
    images = SceneBatches(data)[np.arange(3)][0]
    objective.eval()
    grid = mask_grid(images, objective.decompose(images), pad=2)
    assert grid.shape == (3, 3 * (32 + 2) + 2, (cfg.concepts_num + 3) * (32 + 2) + 2)
    assert 0 <= grid.min() and grid.max() <= 1
    torch.testing.assert_close(grid[:, 2:34, 2:34], (images[0] + 1) / 2)


def test_one_training_step_lowers_the_loss(scene_world):
    torch.manual_seed(0)
    objective, data, _ = tiny_mask_objective(scene_world, "get_args.swap_min_change = 0.0")
    images = SceneBatches(data)[np.arange(8)][0]
    optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=1e-3)
    loss, logs = objective(images, torch.Generator().manual_seed(0))
    assert {"im_loss", "dis_loss", "loss"} <= set(logs) and logs["swaps_kept"] > 0
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    after, _ = objective(images, torch.Generator().manual_seed(0))
    assert after.item() < loss.item()
    assert loss.item() == pytest.approx((logs["im_loss"] + logs["dis_loss"]).item(), rel=1e-6)


class GroundTruthOracle(nn.Module):
    """Stands in for encoder + mask decoder: the 'concepts' of an image are its ground-truth
    masks (looked up by the image's pixels), decoded into masks equal to them."""

    def __init__(self, *datasets):
        super().__init__()
        self.table = {image.numpy().tobytes(): masks for scenes in datasets
                      for image, masks in (scenes[i] for i in range(len(scenes)))}

    def encode_images(self, images):
        return torch.stack([self.table[image.numpy().tobytes()] for image in images]).flatten(2).float()

    def forward(self, concepts):
        logits = (concepts - 0.5).unflatten(2, (32, 32)) * 50
        return compose(torch.zeros(*logits.shape[:2], 3, 32, 32), logits)


def test_ground_truth_masks_score_one_through_the_setting(scene_world, tmp_path):
    from datasets import get_dataset
    setting = get_setting("mask")  # keeps its held-out scenes when it builds
    objective, ctx = build_setting(setting, scene_world["config"], run_dir=tmp_path)
    data, cfg = ctx.data, ctx.cfg
    oracle = GroundTruthOracle(data, get_dataset("clevr", cfg.data_dir, split="test", resolution=32))
    objective.decoder, objective.encode_images = oracle, oracle.encode_images
    evaluation = setting.evaluate(ctx, objective, cache_key="step7")
    scores = evaluation.results["scene_decomposition"]
    assert scores["ari"] == 1.0 and scores["fg_ari"] == 1.0 and scores["mbo"] == 1.0
    assert scores["num_images"] == 6 and evaluation.settings["split"] == "test"
    assert {evaluation.scalars()[f"scene_decomposition/{name}"] for name in ("ari", "fg_ari", "mbo")} == {1.0}
    grids = setting.image_grids(ctx, objective)
    assert set(grids) == {"swap", "recon", "masks"}
    assert grids["masks"].shape[1] == 2 * (32 + 2) + 2  # scene_evaluation.grid_images rows


def test_main_vct_mask_end_to_end_then_resume(scene_world, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_in_process(mask_main, ["--config", scene_world["config"], "--max_steps", 2,
                                           "--device", "cpu", "--out", out], capsys)
    assert code == 0, err[-5:]
    assert (out / "checkpoints" / "checkpoint_00000002.pt").is_file()
    metrics = json.loads((out / "metrics" / "metrics_00000002.json").read_text())
    assert {"ari", "fg_ari", "mbo"} <= set(metrics["results"]["scene_decomposition"])
    for grid in ("masks", "swap", "recon"):
        assert (out / "images" / f"{grid}_00000002.png").is_file()
    assert {"scene_decomposition/ari", "scene_decomposition/fg_ari", "scene_decomposition/mbo"} <= \
        set(read_scalars(out, split="eval")[2])
    state = torch.load(out / "checkpoints" / "checkpoint_00000002.pt", weights_only=True)
    assert "query_decoder.latents" in state["decoder_model_state_dict"]

    code, err = run_in_process(mask_main, ["--resume", out, "--max_steps", 3], capsys)
    assert code == 0, err[-5:]
    assert sorted(read_scalars(out)) == [1, 2, 3]
    assert (out / "metrics" / "metrics_00000003.json").is_file()

    # evaluate.py rebuilds the mask setting from the run directory alone (no --config)
    import evaluate
    code, printed, err = run_with_output(evaluate.main, ["--checkpoint", out, "--device", "cpu"], capsys)
    assert code == 0, err[-5:]
    assert all(name in printed for name in ("ari", "fg_ari", "mbo")), printed
    saved = json.loads((out / "metrics" / "evaluate_checkpoint_00000003.json").read_text())
    assert saved["settings"]["setting"] == "mask"
    assert saved["results"] == json.loads((out / "metrics" / "metrics_00000003.json").read_text())["results"]


def test_main_vct_runs_on_scene_data(scene_world, tmp_path, capsys):
    out = tmp_path / "vq"
    code, err = run_in_process(vct_main, ["--config", scene_world["config"], "--max_steps", 2,
                                          "--device", "cpu", "--out", out], capsys)
    assert code == 0, err[-5:]
    assert (out / "checkpoints" / "checkpoint_00000002.pt").is_file()
    assert (out / "images" / "swap_00000002.png").is_file()


def corrupt_masks_file(path):
    path.write_bytes(path.read_bytes()[:100])


def halve_masks_resolution(path):
    with np.load(path) as archive:
        masks = archive["masks"]
    np.savez_compressed(path, masks=masks[:, :, ::2, ::2])


@pytest.mark.parametrize("damage, expected", [
    (corrupt_masks_file, ["masks.npz", "corrupt"]),
    (lambda path: path.unlink(), ["no ground-truth instance masks"]),
    (halve_masks_resolution, ["masks are 16x16", "are 32x32"]),
], ids=["corrupt", "missing", "other_resolution"])
def test_bad_heldout_masks_are_one_clear_line(scene_world, tmp_path, capsys, damage, expected):
    data = tmp_path / "data"
    shutil.copytree(scene_world["data"], data)
    damage(data / "clevr" / "clevr_test" / "masks.npz")
    code, err = run_in_process(mask_main, ["--config", scene_world["config"], "--max_steps", 1, "--device", "cpu",
                                           "--out", tmp_path / "run", "--gin_bindings",
                                           f"get_args.data_dir = '{data}'"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert all(text in err[0] for text in expected), err[0]


def test_soft_retokens_leave_the_mask_settings_input_tokens_quantised(scene_world):
    objective, data, _ = tiny_mask_objective(scene_world, "get_args.dis_soft_retokens = True")
    images = SceneBatches(data)[np.arange(4)][0]
    tokens, targets = objective.tokenizer.tokenize(images)
    quantised, _ = objective.tokenizer.vqvae.tokenize(images)
    torch.testing.assert_close(tokens, quantised)
    torch.testing.assert_close(targets, images)
    soft = objective.tokenizer.retokenize(images)
    assert soft.shape == quantised.shape and not torch.allclose(soft, quantised)


def test_the_focal_code_loss_is_refused_as_the_mask_setting_reconstructs_pixels(scene_world, tmp_path, capsys):
    code, err = run_in_process(mask_main, ["--config", scene_world["config"], "--max_steps", 1, "--device", "cpu",
                                           "--out", tmp_path / "run", "--gin_bindings",
                                           "get_args.recon_focal_gamma = 1.5"], capsys)
    assert code == 2 and len(err) == 1 and "get_args.recon_focal_gamma = 1.5" in err[0] and "MSE" in err[0], err
    assert not (tmp_path / "run" / "checkpoints").exists()
