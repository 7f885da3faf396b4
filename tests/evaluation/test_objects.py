import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from evaluation import EvaluationError, objects

# Hand-worked 4x4 example (labels; 0 is the background).
GT = torch.tensor([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 2, 2],
                   [2, 2, 2, 2]])
PRED = torch.tensor([[0, 0, 0, 1],
                     [0, 0, 0, 1],
                     [2, 2, 2, 2],
                     [2, 2, 2, 2]])


def one_hot(labels, num):
    """(H, W) labels -> (1, num, H, W) float masks."""
    return torch.nn.functional.one_hot(labels, num).permute(2, 0, 1).float().unsqueeze(0)


def test_hand_worked_4x4_example():
    # n_ij = [[4,0,0],[2,2,0],[0,0,8]]: sum C(n_ij,2) = 36, rows 40, cols 44, C(16,2) = 120
    # ARI = (36 - 40*44/120) / (42 - 40*44/120) = 32/41
    assert objects.adjusted_rand_index(PRED[None], GT[None]).item() == pytest.approx(32 / 41)
    # Foreground only (12 pixels): pairs 30, rows 34, cols 30, C(12,2) = 66 -> 80/91
    assert objects.fg_ari(PRED[None], GT[None]).item() == pytest.approx(80 / 91)
    # mBO: object 1 best IoU 2/4 (slot 1), object 2 IoU 8/8 -> 0.75
    assert objects.mean_best_overlap(PRED[None], GT[None]).item() == pytest.approx(0.75)


def test_mask_and_label_inputs_agree():
    soft_pred = one_hot(PRED, 3) * 0.8 + 0.05  # soft masks with the same argmax
    gt_masks = one_hot(GT, 3).bool()
    for pred in (PRED[None], soft_pred):
        for gt in (GT[None], gt_masks, gt_masks.float()):
            assert objects.adjusted_rand_index(pred, gt).item() == pytest.approx(32 / 41)
            assert objects.fg_ari(pred, gt).item() == pytest.approx(80 / 91)


def test_identical_partitions_score_one():
    labels = torch.randint(0, 5, (4, 8, 8), generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(objects.adjusted_rand_index(labels, labels).numpy(), 1.0)
    np.testing.assert_allclose(objects.fg_ari(labels, labels).numpy(), 1.0)
    np.testing.assert_allclose(objects.mean_best_overlap(labels, labels).numpy(), 1.0)


def test_label_permutation_invariance():
    generator = torch.Generator().manual_seed(1)
    gt = torch.randint(0, 4, (3, 6, 6), generator=generator)
    pred = torch.randint(0, 5, (3, 6, 6), generator=generator)
    permuted = torch.tensor([3, 0, 4, 1, 2])[pred]
    torch.testing.assert_close(objects.adjusted_rand_index(pred, gt),
                               objects.adjusted_rand_index(permuted, gt))
    torch.testing.assert_close(objects.fg_ari(pred, gt), objects.fg_ari(permuted, gt))
    # permuting the *predicted mask channels* is the same thing
    soft = torch.rand(3, 5, 6, 6, generator=generator)
    torch.testing.assert_close(objects.adjusted_rand_index(soft, gt),
                               objects.adjusted_rand_index(soft[:, [2, 0, 4, 1, 3]], gt))


def test_matches_sklearn_on_random_cases():
    rng = np.random.RandomState(0)
    for _ in range(30):
        batch, slots, objects_, height, width = 4, rng.randint(1, 7), rng.randint(1, 6), 5, 7
        pred = torch.tensor(rng.rand(batch, slots, height, width))
        gt = torch.tensor(rng.randint(0, objects_, size=(batch, height, width)))
        ari = objects.adjusted_rand_index(pred, gt)
        fg = objects.fg_ari(pred, gt)
        for b in range(batch):
            p = pred[b].argmax(0).flatten().numpy()
            g = gt[b].flatten().numpy()
            assert ari[b].item() == pytest.approx(adjusted_rand_score(g, p), abs=1e-12)
            keep = g != 0
            if keep.sum() >= 2:
                assert fg[b].item() == pytest.approx(adjusted_rand_score(g[keep], p[keep]), abs=1e-12)
            else:
                assert torch.isnan(fg[b])


def test_fg_ari_ignores_background_pixels():
    changed = PRED.clone()
    changed[:2, :2] = 3  # re-assign only background pixels
    assert objects.fg_ari(changed[None], GT[None]).item() == pytest.approx(80 / 91)
    assert objects.adjusted_rand_index(changed[None], GT[None]).item() != pytest.approx(32 / 41)
    # background given by another index
    shifted = (GT + 1) % 3  # background is now label 1
    assert objects.fg_ari(PRED[None], shifted[None], background_index=1).item() == pytest.approx(80 / 91)


def test_pixels_outside_every_gt_mask_are_ignored():
    masks = one_hot(GT, 3)
    masks[:, :, 0, 0] = 0  # pixel (0, 0) belongs to no mask
    expected = adjusted_rand_score(GT.flatten()[1:].numpy(), PRED.flatten()[1:].numpy())
    assert objects.adjusted_rand_index(PRED[None], masks).item() == pytest.approx(expected)


def test_degenerate_cases():
    ones = torch.zeros(1, 4, 4, dtype=torch.long)
    # both partitions a single cluster -> 1 (as the reference)
    assert objects.adjusted_rand_index(ones, ones).item() == 1.0
    # prediction one cluster, ground truth several -> 0
    assert objects.adjusted_rand_index(ones, GT[None]).item() == pytest.approx(0.0)
    # one foreground object put in a single slot, background in another -> FG-ARI 1
    gt = torch.tensor([[[0, 0], [1, 1]]])
    pred = torch.tensor([[[0, 0], [1, 1]]])
    assert objects.fg_ari(pred, gt).item() == 1.0
    # no foreground pixel: undefined, NaN, skipped by object_metrics
    empty = torch.zeros(1, 2, 2, dtype=torch.long)
    assert torch.isnan(objects.fg_ari(pred, empty)).all()
    assert torch.isnan(objects.mean_best_overlap(pred, empty)).all()
    both = objects.object_metrics(torch.cat([pred, pred]), torch.cat([gt, empty]))
    assert both["fg_ari"] == 1.0 and both["num_images_fg_ari"] == 1
    assert both["num_images"] == 2


def test_batched_results_equal_per_image_results():
    generator = torch.Generator().manual_seed(3)
    pred = torch.rand(5, 4, 8, 8, generator=generator)
    gt = torch.randint(0, 3, (5, 8, 8), generator=generator)
    batched = objects.adjusted_rand_index(pred, gt)
    for b in range(5):
        assert batched[b].item() == objects.adjusted_rand_index(pred[b:b + 1], gt[b:b + 1]).item()


def test_mean_best_overlap_counts_only_present_objects():
    gt = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 0, 0, 1], [0, 0, 0, 1]]])
    # gt one-hot with an absent object 2: it must not count as IoU 0
    masks = one_hot(gt[0], 3)
    assert objects.mean_best_overlap(pred, masks).item() == pytest.approx(0.5)
    # with the background counted as an object: (0.5 + 4/6) / 2
    assert objects.mean_best_overlap(pred, gt, background_index=None).item() == pytest.approx(
        (0.5 + 4 / 6) / 2)


def test_bad_shapes_raise():
    with pytest.raises(EvaluationError, match="ground-truth masks"):
        objects.adjusted_rand_index(PRED[None], torch.rand(4, 4))
    with pytest.raises(EvaluationError, match="different pixels"):
        objects.adjusted_rand_index(torch.zeros(1, 3, 3, dtype=torch.long), GT[None])
