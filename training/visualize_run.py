"""The report's pictures that need the live model, and visualize.py's work.

- ``concept_figures(ctx, objective, step)``: per-concept traversals (every setting) and
  cross-attention maps (settings whose image tokens lie on the image grid); a setting's
  ``report_figures`` returns them (and its own, e.g. ``scene_figures`` for mask runs).
- ``visualize_saved_run(args)``: rebuild a saved run's setting from its checkpoint, as
  evaluate.py does (training/evaluate_run.py), make its pictures and write its report.

Traversals move one concept along the direction of the evaluation's PCA (the projection the
metrics' codes come from: eval_cache/ of the step, when the run evaluated then), across the
range of that concept's codes over the dataset; without a saved projection, the PCA is fitted
here on a sample of training images, and the caption says so.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from evaluation.representation import ConceptPCA, fit_pca_per_concept
from training import checkpoint as ckpt
from training import figures as fig
from training.data import fixed_batch
from training.objectives import VCTObjective
from training.report import Picture, concept_matching, newest_metrics, write_report

TRAVERSAL_STEPS = 7
FIT_IMAGES = 512      # images the fallback PCA is fitted on
RANGE_PERCENTILES = (1, 99)  # the codes' range, without the odd outlier image
DECODE_CHUNK = 32
SWAP_GRID_IMAGES = 8  # training/tokenizers/vq.py concept_grids' count: the same fixed images


def unit_images(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> (B, H, W, 3) numpy in [0, 1] (grey images to RGB)."""
    images = ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.permute(0, 2, 3, 1).numpy()


# ----------------------------------------------------------------------------- traversals

def traverse_tokens(tokens: torch.Tensor, mean, components, values) -> torch.Tensor:
    """Concept sets (C, steps, C, D) from one set of tokens (C, D): in row c, concept c is
    moved along its PCA direction ``components[c]`` (unit) so that its code becomes
    ``values[c, s]``; every other concept is left exactly as it was."""
    mean = torch.as_tensor(np.asarray(mean), dtype=torch.float64, device=tokens.device)
    components = torch.as_tensor(np.asarray(components), dtype=torch.float64, device=tokens.device)
    values = torch.as_tensor(np.asarray(values), dtype=torch.float64, device=tokens.device)
    num_concepts, steps = values.shape
    codes = ((tokens.double() - mean) * components).sum(dim=-1)                 # (C,)
    shift = (values - codes[:, None])[..., None] * components[:, None, :]       # (C, steps, D)
    sets = tokens.expand(num_concepts, steps, *tokens.shape).clone()
    index = torch.arange(num_concepts, device=tokens.device)
    sets[index, :, index] = (tokens.double()[:, None, :] + shift).to(tokens.dtype)
    return sets


def traversal_values(codes: np.ndarray, steps=TRAVERSAL_STEPS) -> np.ndarray:
    """(C, steps) code values spanning each concept's observed range (percentiles)."""
    low, high = np.percentile(codes, RANGE_PERCENTILES, axis=0)
    return np.linspace(low, high, steps, axis=1)


@torch.no_grad()
def decode_sets(objective, sets: torch.Tensor) -> np.ndarray:
    """Concept sets (..., C, D) -> decoded images (..., H, W, 3) in [0, 1]."""
    flat = sets.reshape(-1, *sets.shape[-2:])
    images = unit_images(torch.cat([objective.decode_concepts(part) for part in flat.split(DECODE_CHUNK)]))
    return images.reshape(*sets.shape[:-2], *images.shape[1:])


def cache_keys(objective, step) -> list:
    """The keys an evaluation of these weights may have cached its codes under: the digest of
    the weights (training.checkpoint.weights_key) and, for runs from before it, the step."""
    return [ckpt.weights_key(objective)] + ([f"step{int(step)}"] if step is not None else [])


def saved_projection(run_dir, objective, step):
    """(ConceptPCA, codes) an evaluation of these weights saved in eval_cache/, or None."""
    if run_dir is None:
        return None
    for key in cache_keys(objective, step):
        pattern = re.compile(rf"(^|[-_]){re.escape(key)}-pca-[0-9a-f]{{16}}\.npz$")
        for path in sorted((Path(run_dir) / "eval_cache").glob("*-pca-*.npz")):
            if pattern.search(path.name):
                with np.load(path, allow_pickle=False) as stored:
                    return ConceptPCA.from_state(stored), np.asarray(stored["codes"])
    return None


@torch.no_grad()
def fitted_projection(ctx, objective, count=FIT_IMAGES):
    """(ConceptPCA, codes) fitted here on ``count`` fixed training images."""
    images = fixed_batch(ctx.batches, min(count, len(ctx.batches)), ctx.seed)
    tokens = torch.cat([objective.encode_images(part.to(ctx.device)).float().cpu()
                        for part in images.split(64)]).numpy()
    projector = fit_pca_per_concept(tokens)
    return projector, projector.transform(tokens)


def projection_for(ctx, objective, step):
    """(ConceptPCA, codes, where they come from) for the traversals."""
    saved = saved_projection(ctx.run_dir, objective, step)
    if saved is not None:
        return (*saved, "the evaluation's PCA of these weights over every dataset image")
    projector, codes = fitted_projection(ctx, objective)
    return projector, codes, f"a PCA fitted on {len(codes)} training images (no saved evaluation of this step)"


@torch.no_grad()
def traversal_picture(ctx, objective, source, labels, step) -> Picture:
    """Picture of every concept of ``source`` (one image (C, H, W)) traversed in turn."""
    projector, codes, origin = projection_for(ctx, objective, step)
    values = traversal_values(codes)
    tokens = objective.encode_images(source[None].to(ctx.device))[0]
    images = decode_sets(objective, traverse_tokens(tokens, projector.mean_, projector.components_, values))
    picture = fig.traversal_figure(unit_images(source[None])[0], decode_sets(objective, tokens[None])[0], images,
                                   values, labels)
    low, high = RANGE_PERCENTILES
    return Picture(picture, f"Row j: the first image's concepts with concept j moved to {TRAVERSAL_STEPS} codes "
                            f"from percentile {low} to {high} of its codes (range in brackets), along {origin}.")


# ----------------------------------------------------------------------------- attention

@torch.no_grad()
def attention_maps(objective, images: torch.Tensor) -> np.ndarray:
    """(n, concepts, H, W): each concept's last-layer cross-attention over the image tokens,
    upsampled onto the image pixels; every map non-negative and summing to 1."""
    tokens = objective.tokenizer.tokenize(images)[0]
    weights = objective.encoder.cross_attention_maps(tokens).float().cpu().numpy()   # (n, C, N)
    side = math.isqrt(weights.shape[-1])
    grids = weights.reshape(*weights.shape[:2], side, side)
    return np.stack([fig.upsample_maps(maps, images.shape[-2:]) for maps in grids])


def attention_picture(objective, images, labels) -> Picture:
    maps = attention_maps(objective, images)
    return Picture(fig.attention_figure(unit_images(images), maps, labels),
                   "Each concept's attention over the image tokens in the encoder's last cross-attention "
                   "layer (softmax(qk^T), heads averaged), upsampled onto the image; each map is scaled "
                   "to its own maximum.")


# ----------------------------------------------------------------------------- per setting

def run_labels(run_dir, num_concepts) -> list:
    """'c3 → floor_hue' labels from the run's newest metrics (plain 'c3' without them)."""
    metrics = newest_metrics(run_dir) if run_dir is not None else None
    matching = concept_matching(metrics[1].get("results", {})) if metrics is not None else None
    if matching is None or len(matching.matches) != num_concepts:
        return fig.concept_labels(num_concepts)
    return matching.labels()


def concept_figures(ctx, objective, step=None, attention=True, count=4) -> dict:
    """{'traversals', 'attention'} Pictures of the swap grid's first ``count`` source images
    (the traversals of the first). ``attention=False`` for tokens that are not image
    positions (CLIP's)."""
    sources = fixed_batch(ctx.batches, min(SWAP_GRID_IMAGES, len(ctx.batches)), ctx.seed)
    images = sources[:count].to(ctx.device)
    num_concepts = objective.encode_images(images[:1]).shape[1]
    labels = run_labels(ctx.run_dir, num_concepts)
    pictures = {"traversals": traversal_picture(ctx, objective, images[0], labels, step)}
    if attention:
        pictures["attention"] = attention_picture(objective, images, labels)
    return pictures


@torch.no_grad()
def scene_figures(ctx, objective, scenes, count=6) -> dict:
    """{'decomposition'}: the mask decomposition of the first ``count`` held-out scenes next
    to their ground-truth segmentation."""
    items = [scenes[i] for i in range(min(count, len(scenes)))]
    images = torch.stack([image for image, _ in items]).to(ctx.device)
    truth = np.stack([masks.numpy() for _, masks in items])
    output = objective.decompose(images)
    rgb = output.rgb.float()
    picture = fig.mask_decomposition_figure(
        unit_images(images), unit_images(output.image), unit_images(rgb.flatten(0, 1)).reshape(
            *rgb.shape[:2], *images.shape[-2:], 3), output.masks.float().cpu().numpy(), truth)
    return {"decomposition": Picture(picture, "Held-out scenes: the image, the reconstruction, each concept's "
                                              "RGB where its mask is, the argmax segmentation, the ground-truth "
                                              "segmentation (grey: background) and the segmentation over the image.")}


def report_figures(setting, ctx, objective, step=None) -> dict:
    """The setting's pictures of the live model: its own ``report_figures`` when it defines one
    (training/setting.py), else, for a VCTObjective, the traversals and attention maps of
    ``concept_figures``."""
    own = getattr(setting, "report_figures", None)
    if own is not None:
        return own(ctx, objective, step)
    if not isinstance(objective, VCTObjective):
        return {}
    return concept_figures(ctx, objective, step, attention=setting.name != "clip")


# ----------------------------------------------------------------------------- visualize.py

def visualize_saved_run(args) -> Path:
    """Write the pictures and report.html of a saved run (``args.out``: another folder than
    the run directory); returns the report's path."""
    from training.evaluate_run import load_saved_run
    setting, ctx, objective, _, state = load_saved_run(args.checkpoint, args.config, args.gin_bindings, args.device)
    step = state.get("step")
    figures = report_figures(setting, ctx, objective, step)
    return write_report(ctx.run_dir, figures, out_dir=args.out, step=step)
