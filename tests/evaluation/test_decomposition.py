import numpy as np
import pytest
import torch

from evaluation import EvaluationError
from evaluation.decomposition import evaluate_decomposition, kmeans_segments, single_segment

# A 4x4 scene: background (label 0) with two flat-coloured objects.
LABELS = torch.tensor([[0, 0, 1, 1],
                       [0, 0, 1, 1],
                       [2, 2, 0, 0],
                       [2, 2, 0, 0]])
COLOURS = torch.tensor([[-0.2, -0.2, -0.2], [0.9, -0.8, -0.8], [-0.8, -0.7, 0.9]])


class Scenes:
    """Scene dataset shape: items (image (3, H, W) in [-1, 1], masks bool (K, H, W))."""

    num_masks = 3

    def __init__(self, count=3, mask_side=4):
        self.count, self.mask_side = count, mask_side

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        image = COLOURS[LABELS].permute(2, 0, 1)
        masks = LABELS[None] == torch.arange(3)[:, None, None]
        if self.mask_side != 4:
            masks = masks.repeat_interleave(self.mask_side // 4, 1).repeat_interleave(self.mask_side // 4, 2)
        return image, masks


def test_single_segment_scores_zero_ari_on_multi_object_scenes():
    # One predicted cluster against three true ones: sum_ij C(n_ij, 2) = sum_i C(a_i, 2) = the
    # expected index, so the numerator of ARI (and of FG-ARI: two objects) is 0.
    scores = evaluate_decomposition(single_segment, Scenes(), batch_size=2)
    assert scores["ari"] == 0.0 and scores["fg_ari"] == 0.0
    # mBO: each object (4 of 16 pixels) overlaps the one segment with IoU 4/16.
    assert scores["mbo"] == pytest.approx(0.25) and scores["num_images"] == 3


def test_colour_kmeans_recovers_flat_coloured_objects():
    scores = evaluate_decomposition(lambda images: kmeans_segments(images, 3), Scenes())
    assert scores["ari"] == pytest.approx(1.0) and scores["fg_ari"] == pytest.approx(1.0)
    counted = evaluate_decomposition(kmeans_segments, Scenes(), pass_segment_counts=True)
    assert counted["ari"] == pytest.approx(1.0)


def test_kmeans_never_asks_for_more_clusters_than_colours():
    flat = torch.zeros(1, 3, 4, 4)
    assert kmeans_segments(flat, 5).unique().tolist() == [0]


def test_ground_truth_masks_as_prediction_score_one():
    scenes = Scenes()
    scores = evaluate_decomposition(lambda images: scenes[0][1][None].float().expand(len(images), -1, -1, -1),
                                    scenes, num_images=2)
    assert (scores["ari"], scores["fg_ari"], scores["mbo"], scores["num_images"]) == (1.0, 1.0, 1.0, 2)


def test_resolution_mismatches_are_clear_errors():
    with pytest.raises(EvaluationError, match="masks are 8x8 but the images are 4x4"):
        evaluate_decomposition(single_segment, Scenes(mask_side=8))
    with pytest.raises(EvaluationError, match="segmentation is 2x2 but the ground-truth masks are 4x4"):
        evaluate_decomposition(lambda images: torch.zeros(len(images), 2, 2, dtype=torch.long), Scenes())


def test_scenes_without_masks_are_a_clear_error():
    scenes = Scenes()
    scenes.num_masks = 0
    with pytest.raises(EvaluationError, match="no ground-truth instance masks"):
        evaluate_decomposition(single_segment, scenes)


def test_baselines_command_on_a_tiny_synthetic_world(tmp_path, capsys):
    import json
    from training.scene_baselines import main
    config = tmp_path / "scenes.gin"
    config.write_text(f"make_synthetic_scenes.size = 32\nmake_synthetic_scenes.num = 4\n"
                      f"make_synthetic_scenes.num_test = 3\nmake_synthetic_scenes.progress = False\n"
                      f"get_dataset.resolution = 32\nget_args.name = 'synthetic_scenes'\n"
                      f"get_args.data_dir = '{tmp_path / 'data'}'\nget_args.concepts_num = 4\n")
    main(["--config", str(config), "--out", str(tmp_path / "baselines.json")])
    results = json.loads((tmp_path / "baselines.json").read_text())["results"]
    assert set(results) == {"single_segment", "kmeans_k4", "kmeans_gt_count"}
    assert results["single_segment"]["ari"] == 0.0 and results["single_segment"]["num_images"] == 3
    assert 0 < results["kmeans_k4"]["fg_ari"] <= 1
    assert "single_segment" in capsys.readouterr().out
