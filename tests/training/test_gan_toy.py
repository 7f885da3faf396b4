"""The CPU toy of the GAN setting: its generator and factor probe are trained once and saved
weights-only, and a run scores its directions against the world's factors."""
import json

import pytest
import torch

from tests.training.conftest import run_with_output
from training import checkpoint as ckpt
from training.gan_toy_eval import direction_scores, random_pair_rate


pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # tests/conftest.py


def toy_argv(tmp_path, *extra):
    bindings = [f"get_args.data_dir = '{tmp_path / 'data'}'",
                "make_synthetic_shapes3d.factor_sizes = [2, 2, 2, 1, 2, 2]",
                "get_args.batch_size = 8", "get_args.max_steps = 2", "get_args.concepts_num = 3",
                f"gan_args.generator_weights = '{tmp_path / 'toy' / 'generator.pt'}'",
                f"gan_args.probe_path = '{tmp_path / 'toy' / 'probe.pt'}'", "gan_args.toy_steps = 3",
                "gan_args.toy_mapping_steps = 3", "gan_args.probe_steps = 3", "gan_args.toy_batch_size = 8",
                "gan_args.eval_latents = 4", *extra]
    argv = ["--config", "toy_gan_ce.gin", "--device", "cpu"]
    for binding in bindings:
        argv += ["--gin_bindings", binding]
    return argv


def test_the_toy_trains_its_generator_once_and_scores_directions_against_factors(tmp_path, capsys):
    from training.cli import vct_entry
    code, printed, err = run_with_output(vct_entry("gan"), [*toy_argv(tmp_path), "--out", tmp_path / "run"], capsys)
    assert code == 0, err[-5:]
    assert "toy generator" in printed and "not found: training it" in printed
    generator = tmp_path / "toy" / "generator.pt"
    state = torch.load(generator, weights_only=True)
    assert "style.1.weight" in state and "noises.noise_0" in state  # a plain Generator state_dict
    probe = torch.load(tmp_path / "toy" / "probe.pt", weights_only=True)
    assert probe["factor_sizes"] == [2, 2, 2, 1, 2, 2] and len(probe["heldout_accuracy"]["real"]) == 6
    metrics = json.loads((tmp_path / "run" / "metrics" / "metrics_00000002.json").read_text())["results"]
    scores = metrics["direction_factor"]
    assert len(scores["matrix"]) == 3 and len(scores["matrix"][0]) == 6 and 0 <= scores["score"] <= 1
    assert "direction_factor_random" in metrics and scores["factor_names"][0] == "floor_hue"
    assert "direction_factor" in printed  # the metrics table

    stamp = generator.stat().st_mtime_ns
    code, printed, err = run_with_output(vct_entry("gan"), [*toy_argv(tmp_path), "--out", tmp_path / "run2"], capsys)
    assert code == 0, err[-5:]
    assert generator.stat().st_mtime_ns == stamp and "not found: training it" not in printed  # saved once
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "run2"))["step"] == 2


def test_direction_scores_of_perfect_and_mixed_directions():
    base = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 0]])  # two balanced binary factors
    assert random_pair_rate(base, [2, 2]).tolist() == pytest.approx([0.5, 0.5])
    perfect = torch.zeros(2, 4, 2)
    perfect[0, :, 0] = 1.0   # direction 0 always changes factor 0 only
    perfect[1, :, 1] = 0.5   # direction 1 changes factor 1 only, on half the alphas
    scores = direction_scores(base, perfect, [2, 2])
    assert scores["score"] == 1.0 and scores["factors_covered"] == 2 and scores["active_directions"] == 2
    assert scores["matrix"] == [[2.0, 0.0], [0.0, 1.0]] and scores["votes"] == [[4, 0], [0, 4]]
    mixed = torch.zeros(1, 4, 2)
    mixed[0, :2, 0] = 1.0
    mixed[0, 2:, 1] = 1.0    # half the traversals change factor 0, half factor 1
    assert direction_scores(base, mixed, [2, 2])["score"] == 0.5
    assert direction_scores(base, torch.zeros(1, 4, 2), [2, 2])["score"] == 0.0  # nothing ever changes
