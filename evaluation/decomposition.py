"""Scene decomposition scored on a dataset with ground-truth instance masks.

``evaluate_decomposition(segment, scenes)`` runs a segmenter over the first images of a scene
dataset (items ``(image (3, H, W) in [-1, 1], masks bool (K, H, W))``, mask 0 the background)
and scores it with ``evaluation.objects.object_metrics`` (ARI, FG-ARI, mBO). The model's
per-concept masks, and the trivial baselines below, are scored by this same function:

- ``single_segment``: every pixel in one segment (ARI and FG-ARI 0 whenever the image has more
  than one ground-truth segment);
- ``kmeans_segments``: k-means on the pixel colours of each image.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import EvaluationError
from .objects import object_metrics
from .progress import progress_bar


def _heldout_batch(scenes, start, stop):
    items = [scenes[i] for i in range(start, stop)]
    images = torch.stack([image for image, _ in items])
    masks = torch.stack([masks for _, masks in items])
    if masks.shape[-2:] != images.shape[-2:]:
        raise EvaluationError(f"ground-truth masks are {masks.shape[-2]}x{masks.shape[-1]} but the "
                              f"images are {images.shape[-2]}x{images.shape[-1]}: the scene dataset's "
                              f"masks do not match its images")
    return images, masks


def check_scenes_have_masks(scenes, what="scene dataset"):
    if getattr(scenes, "num_masks", 0) == 0 or len(scenes) == 0:
        raise EvaluationError(f"the {what} has no ground-truth instance masks (masks.npz); "
                              f"ARI / FG-ARI / mBO need them")


def evaluate_decomposition(segment, scenes, num_images=None, batch_size=64, device="cpu",
                           pass_segment_counts=False, progress=False) -> dict:
    """ARI, FG-ARI and mBO (batch means, NaN-skipping; see ``object_metrics``) of ``segment``
    on the first ``num_images`` scenes (all when None).

    segment(images (B, 3, H, W) in [-1, 1] on ``device``) -> (B, K, H, W) soft or hard masks
    (each pixel goes to its argmax) or (B, H, W) integer segment ids. With
    ``pass_segment_counts`` it is called as ``segment(images, counts)``, ``counts`` (B,) the
    number of non-empty ground-truth masks of each image (an oracle, for baselines only).
    """
    check_scenes_have_masks(scenes)
    count = len(scenes) if num_images is None else min(int(num_images), len(scenes))
    labels, truths = [], []
    starts = range(0, count, batch_size)
    for start in progress_bar(starts, progress, desc="scene decomposition", unit="batch"):
        images, masks = _heldout_batch(scenes, start, min(start + batch_size, count))
        with torch.no_grad():
            if pass_segment_counts:
                pred = segment(images.to(device), masks.flatten(2).any(dim=2).sum(dim=1))
            else:
                pred = segment(images.to(device))
        if pred.shape[-2:] != masks.shape[-2:]:
            raise EvaluationError(f"the segmentation is {pred.shape[-2]}x{pred.shape[-1]} but the "
                                  f"ground-truth masks are {masks.shape[-2]}x{masks.shape[-1]}")
        # argmax here (ties to the lowest index, as object_metrics does) keeps memory at one
        # label map per image instead of K float masks.
        labels.append((pred.argmax(dim=1) if pred.dim() == 4 else pred).long().cpu())
        truths.append(masks)
    return object_metrics(torch.cat(labels), torch.cat(truths))


def single_segment(images):
    """Baseline: every pixel in segment 0."""
    return torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.long, device=images.device)


def kmeans_segments(images, num_segments, seed=0, n_init=4):
    """Baseline: per image, k-means (sklearn) of the pixels' RGB values into ``num_segments``
    clusters (an int, or one per image). Returns (B, H, W) segment ids."""
    from sklearn.cluster import KMeans
    batch, _, height, width = images.shape
    counts = np.broadcast_to(np.asarray(num_segments.cpu() if torch.is_tensor(num_segments)
                                        else num_segments), (batch,))
    pixels = images.float().permute(0, 2, 3, 1).reshape(batch, height * width, -1).cpu().numpy()
    out = np.zeros((batch, height * width), dtype=np.int64)
    for i in range(batch):
        distinct = len(np.unique(pixels[i], axis=0))
        clusters = int(max(1, min(int(counts[i]), distinct)))
        if clusters > 1:
            out[i] = KMeans(n_clusters=clusters, n_init=n_init, random_state=seed).fit_predict(pixels[i])
    return torch.from_numpy(out).view(batch, height, width)
