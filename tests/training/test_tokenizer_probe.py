"""python -m training.tokenizer_probe on a saved run: the probe of its frozen tokenizer's tokens."""
import json

import numpy as np
import pytest
import torch

from tests.training.conftest import run_with_output
from training import tokenizer_probe
from training.runner import vct_main


class OneHotCodes(torch.nn.Module):
    """A tokenizer whose code targets are the image's first pixel quantised to 4 levels."""
    num_codes = 4

    def tokenize(self, images):
        codes = ((images[:, 0, :1, :2].flatten(1) + 1) * 1.999).long()  # (B, 2) in 0..3
        return codes.float()[..., None], codes


def test_discrete_targets_become_one_hot_features():
    images = torch.tensor([[-1.0, 1.0], [0.0, -1.0]]).view(2, 1, 1, 2).expand(2, 3, 1, 2)
    features = tokenizer_probe.token_features(OneHotCodes(), images)
    assert features.shape == (2, 2 * 4)
    assert features.tolist() == [[1, 0, 0, 0, 0, 0, 0, 1], [0, 1, 0, 0, 1, 0, 0, 0]]


@pytest.fixture(scope="module")
def saved_run(tiny_world, tmp_path_factory):
    """One step of a tiny VCT run, saved; both probes read it."""
    run = tmp_path_factory.mktemp("probed") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as one_cpu_thread, which a module fixture cannot use
    try:
        vct_main(["--config", str(tiny_world["config"]), "--max_steps", "1", "--out", str(run), "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    return run


def run_probe(main, run, tmp_path, capsys):
    """(the JSON result, stdout) of a probe CLI ``main`` on ``run`` with 32 images."""
    code, out, _ = run_with_output(main, ["--checkpoint", str(run), "--images", "32",
                                          "--out", str(tmp_path / "result.json")], capsys)
    assert code == 0
    return json.loads((tmp_path / "result.json").read_text()), out


def test_the_probe_of_a_saved_run_names_every_factor(saved_run, tmp_path, capsys, one_cpu_thread):
    result, out = run_probe(tokenizer_probe.main, saved_run, tmp_path, capsys)
    names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert tuple(result["accuracy"]) == names
    assert all(f"{name}:" in out for name in names)
    assert (result["num_train"], result["num_test"]) == (26, 6)
    assert all(0.0 <= value <= 1.0 for value in result["accuracy"].values())
    assert result["accuracy"]["scale"] == 1.0  # the tiny grid has one scale: trivially read


def test_the_concept_probe_of_a_saved_run_reads_all_three_ways(saved_run, tmp_path, capsys, one_cpu_thread):
    from training import concept_probe
    result, out = run_probe(concept_probe.main, saved_run, tmp_path, capsys)
    names = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    assert list(result["all"]) == names
    for name in names:
        for readout in ("best_token", "best_component"):
            accuracy, token = result[readout][name]
            assert 0.0 <= accuracy <= 1.0 and token in range(-1, 4)  # the tiny config's 4 concepts
        assert name in out
    assert result["all"]["scale"] == 1.0  # one scale in the tiny grid


def test_the_swap_probe_of_a_saved_run_labels_every_swap(saved_run, tmp_path, capsys, one_cpu_thread):
    from training import swap_probe
    result, out = run_probe(swap_probe.main, saved_run, tmp_path, capsys)
    names = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    assert result["factor_names"] == names and list(result["decoded_accuracy"]) == names
    transfer = result["transfer"]
    assert len(transfer) == 4 and all(len(row) == 6 for row in transfer)  # 4 concepts x 6 factors
    assert all(row[3] is None for row in transfer)  # one scale in the tiny grid: no pair differs in it
    assert all(v is None or 0.0 <= v <= 1.0 for row in transfer for v in row)
    assert result["distinct_factors"] == len(set(result["single_factor_concepts"].values()))
    assert "distinct factors:" in out and "c3" in out


def test_swapped_labels_put_each_concept_of_the_target_in_the_source():
    """With a decoder that shows concept j's first value as factor j, swapping concept j
    carries exactly factor j."""
    from training.swap_probe import swapped_labels

    class Identity:
        def encode_images(self, images):
            return images.flatten(1)[:, :3, None]           # 3 concepts of one value each

        def decode_concepts(self, concepts):
            return concepts[..., 0]                          # "images" = the concept values

    sources, targets = torch.zeros(5, 3), torch.ones(5, 3)
    src, tgt, swapped = swapped_labels(Identity(), lambda images: images.numpy().round(), sources, targets)
    assert (src == 0).all() and (tgt == 1).all() and swapped.shape == (3, 5, 3)
    for j in range(3):
        assert (swapped[j][:, j] == 1).all() and (np.delete(swapped[j], j, axis=1) == 0).all()
