"""Scene-decomposition metrics: ARI, FG-ARI and mean best overlap (mBO).

Masks:
- predicted: (B, K, H, W) soft or hard masks (each pixel goes to its argmax
  slot; ties go to the lowest slot index, like tf.argmax / torch.argmax), or
  (B, H, W) integer slot ids;
- ground truth: (B, Kg, H, W) one-hot / boolean instance masks (a pixel's label
  is the index of its mask; a pixel in no mask is ignored), or (B, H, W)
  integer labels (negative labels are ignored).
The background is label / mask index ``background_index`` (0 by default).

ARI is the adjusted Rand index of the contingency table between the two
partitions of the (non-ignored) pixels, as in DeepMind's multi_object_datasets
``adjusted_rand_index`` (used by Slot Attention and VCT):
    ARI = (sum_ij C(n_ij, 2) - E) / (0.5 (sum_i C(a_i, 2) + sum_j C(b_j, 2)) - E),
    E = sum_i C(a_i, 2) sum_j C(b_j, 2) / C(n, 2).
FG-ARI is the same over the pixels whose ground-truth label is not background.

Degenerate cases. The formula is 0/0 exactly when both partitions put all
pixels in one cluster or both put every pixel in its own cluster; the
partitions are then identical and the ARI is 1.0. The reference returns 1.0
when both partitions are a single cluster (and raises for the one-cluster-per-
pixel case); sklearn's adjusted_rand_score returns 1.0 for both. Here the
single-cluster test is made on the pixels that are scored, so FG-ARI of an
image with one foreground object that the model puts in one slot is 1.0 (the
reference, which tests all pixels including the ignored background, gives NaN
when the background is in a different slot). An image with fewer than two
scored pixels (e.g. FG-ARI of an image without objects) has no pairs: NaN, and
the batch means below skip NaNs.

mBO: for every ground-truth object other than the background, the best IoU
with any predicted (hard) mask, over the non-ignored pixels; averaged over
the objects of an image (NaN without objects), then over images.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import EvaluationError

__all__ = ["adjusted_rand_index", "fg_ari", "mean_best_overlap", "object_metrics",
           "contingency_tables"]


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _pred_labels(pred_masks) -> torch.Tensor:
    pred = _as_tensor(pred_masks)
    if pred.dim() == 4:
        return pred.argmax(dim=1).flatten(1).long()
    if pred.dim() == 3 and not pred.is_floating_point():
        labels = pred.flatten(1).long()
        if (labels < 0).any():
            raise EvaluationError("predicted slot ids must be >= 0")
        return labels
    raise EvaluationError(
        f"predicted masks must be (B, K, H, W) masks or (B, H, W) integer slot ids, got shape "
        f"{tuple(pred.shape)} dtype {pred.dtype}")


def _gt_labels(gt_masks) -> torch.Tensor:
    """(B, N) long labels, -1 for ignored pixels."""
    gt = _as_tensor(gt_masks)
    if gt.dim() == 4:
        values = gt.float() if gt.dtype == torch.bool else gt
        best, labels = values.max(dim=1)
        labels = torch.where(best > 0, labels, torch.full_like(labels, -1))
        return labels.flatten(1).long()
    if gt.dim() == 3 and not gt.is_floating_point():
        labels = gt.flatten(1).long()
        return torch.where(labels < 0, torch.full_like(labels, -1), labels)
    raise EvaluationError(
        f"ground-truth masks must be (B, Kg, H, W) instance masks or (B, H, W) integer labels, "
        f"got shape {tuple(gt.shape)} dtype {gt.dtype}")


def contingency_tables(true_labels: torch.Tensor, pred_labels: torch.Tensor,
                       valid: torch.Tensor) -> torch.Tensor:
    """int64 (B, Kt, Kp): n_ij = #valid pixels with true label i and predicted label j."""
    if true_labels.shape != pred_labels.shape:
        raise EvaluationError(
            f"predicted and ground-truth masks cover different pixels: "
            f"{tuple(pred_labels.shape)} vs {tuple(true_labels.shape)} (batch, H*W)")
    batch = true_labels.shape[0]
    num_true = int(true_labels.max().clamp(min=0)) + 1
    num_pred = int(pred_labels.max().clamp(min=0)) + 1
    offsets = torch.arange(batch, device=true_labels.device).unsqueeze(1) * (num_true * num_pred)
    flat = offsets + true_labels.clamp(min=0) * num_pred + pred_labels
    counts = torch.bincount(flat[valid], minlength=batch * num_true * num_pred)
    return counts.view(batch, num_true, num_pred)


def _ari_from_tables(tables: torch.Tensor) -> torch.Tensor:
    n_ij = tables.to(torch.float64)
    a = n_ij.sum(dim=2)
    b = n_ij.sum(dim=1)
    n = a.sum(dim=1)
    r_index = (n_ij * (n_ij - 1)).sum(dim=(1, 2))
    a_index = (a * (a - 1)).sum(dim=1)
    b_index = (b * (b - 1)).sum(dim=1)
    pairs = n * (n - 1)
    expected = a_index * b_index / pairs
    maximum = (a_index + b_index) / 2
    ari = (r_index - expected) / (maximum - expected)
    # 0/0 exactly when both partitions are one cluster or both all singletons.
    identical = ((a_index == 0) & (b_index == 0)) | ((a_index == pairs) & (b_index == pairs))
    ari = torch.where(identical, torch.ones_like(ari), ari)
    return torch.where(n < 2, torch.full_like(ari, float("nan")), ari)


def adjusted_rand_index(pred_masks, gt_masks, exclude_background: bool = False,
                        background_index: int = 0) -> torch.Tensor:
    """Per-image ARI, float64 (B,); with ``exclude_background`` it is FG-ARI."""
    true_labels = _gt_labels(gt_masks)
    pred_labels = _pred_labels(pred_masks).to(true_labels.device)
    valid = true_labels >= 0
    if exclude_background:
        valid &= true_labels != background_index
    return _ari_from_tables(contingency_tables(true_labels, pred_labels, valid))


def fg_ari(pred_masks, gt_masks, background_index: int = 0) -> torch.Tensor:
    """Per-image foreground ARI (background pixels excluded), float64 (B,)."""
    return adjusted_rand_index(pred_masks, gt_masks, exclude_background=True,
                               background_index=background_index)


def mean_best_overlap(pred_masks, gt_masks, background_index: int | None = 0) -> torch.Tensor:
    """Per-image mBO, float64 (B,): mean over gt objects of the best IoU with a predicted mask.

    ``background_index=None`` counts the background as an object too.
    """
    true_labels = _gt_labels(gt_masks)
    pred_labels = _pred_labels(pred_masks).to(true_labels.device)
    tables = contingency_tables(true_labels, pred_labels, true_labels >= 0).to(torch.float64)
    true_area = tables.sum(dim=2, keepdim=True)     # (B, Kt, 1)
    pred_area = tables.sum(dim=1, keepdim=True)     # (B, 1, Kp)
    union = true_area + pred_area - tables
    iou = torch.where(union > 0, tables / union.clamp(min=1), torch.zeros_like(tables))
    best = iou.max(dim=2).values                    # (B, Kt)
    present = true_area.squeeze(2) > 0
    if background_index is not None and 0 <= background_index < present.shape[1]:
        present[:, background_index] = False
    count = present.sum(dim=1)
    total = torch.where(present, best, torch.zeros_like(best)).sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


def object_metrics(pred_masks, gt_masks, background_index: int = 0) -> dict:
    """Batch means (NaN-skipping) of ARI, FG-ARI and mBO, plus how many images counted."""
    ari = adjusted_rand_index(pred_masks, gt_masks, background_index=background_index)
    fg = fg_ari(pred_masks, gt_masks, background_index=background_index)
    mbo = mean_best_overlap(pred_masks, gt_masks, background_index=background_index)

    def mean(values):
        kept = values[~torch.isnan(values)]
        return (float(kept.mean()) if kept.numel() else float("nan")), int(kept.numel())

    (ari_mean, ari_n), (fg_mean, fg_n), (mbo_mean, mbo_n) = mean(ari), mean(fg), mean(mbo)
    return {"ari": ari_mean, "fg_ari": fg_mean, "mbo": mbo_mean,
            "num_images": int(ari.numel()), "num_images_ari": ari_n,
            "num_images_fg_ari": fg_n, "num_images_mbo": mbo_n}
