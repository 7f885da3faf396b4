"""Diagnostic pictures of what the concepts learned, one function per picture, each from plain
arrays (numpy, images (H, W, 3) in [0, 1]) to a matplotlib Figure; ``save_png`` writes one.

Figures are made with ``matplotlib.figure.Figure`` directly, never through pyplot: pyplot keeps
every figure in a process-wide registry and picks a GUI backend, while a bare Figure is rendered
by the Agg canvas and freed like any object, so nothing leaks into the training process.

- ``match_concepts``: which factor each concept took, from a (concepts, factors) matrix (DCI's
  importance matrix or MIG's normalised mutual information), with empty and mixed concepts.
- ``factor_heatmap``: those matrices, factors as rows (named), concepts as columns ordered by
  the factor they took.
- ``labelled_swap_grid``: the training swap grid with its columns named "concept j -> factor".
- ``traversal_figure``: one row per concept moved along its PCA direction.
- ``attention_figure``: per-concept cross-attention maps over the images.
- ``mask_decomposition_figure``: scene decomposition with the ground-truth segmentation and an
  overlay.
- ``training_curves``: losses, swap statistics and evaluation scores over the steps.
"""
from __future__ import annotations

import colorsys
import dataclasses
import io
from typing import Optional, Sequence

import numpy as np
import scipy.ndimage
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.atomic import atomic_write

DPI = 100
GRID_PAD = 2  # training/visualize.py's grids: 2 px of white between cells


# ----------------------------------------------------------------------------- concept matching

@dataclasses.dataclass(frozen=True)
class ConceptMatch:
    """What one concept took: ``factor`` (None when the concept carries almost nothing), its
    largest entry (``strength``), its ``share`` of the whole matrix's mass and its ``purity``
    (largest entry / row total)."""
    concept: int
    factor: Optional[int]
    strength: float
    share: float
    purity: float
    mixed: bool

    @property
    def empty(self) -> bool:
        return self.factor is None


def match_concepts(matrix, empty_ratio=0.2, mixed_purity=0.5) -> list:
    """One ConceptMatch per row of a non-negative (concepts, factors) matrix. A concept takes the
    factor of its largest entry; it is empty when that entry is under ``empty_ratio`` of the
    matrix's largest (a code with no factor still gets a little importance or, through the
    histogram's bias, mutual information), and mixed when its largest entry is under
    ``mixed_purity`` of its row's total. Several concepts may take one factor: that is what a
    run that split a factor over two tokens looks like, so the matching is not one-to-one."""
    matrix = np.clip(np.nan_to_num(np.asarray(matrix, dtype=np.float64)), 0.0, None)
    rows, peak = matrix.sum(axis=1), matrix.max(initial=0.0)
    total = rows.sum()
    matches = []
    for concept, row in enumerate(matrix):
        share = float(rows[concept] / total) if total > 0 else 0.0
        purity = float(row.max() / rows[concept]) if rows[concept] > 0 else 0.0
        empty = peak == 0 or row.max() < empty_ratio * peak
        factor = None if empty else int(row.argmax())
        matches.append(ConceptMatch(concept, factor, float(row.max()), share, purity,
                                    not empty and purity < mixed_purity))
    return matches


def concept_order(matches) -> list:
    """Concept indices ordered by the factor they took (strongest first within a factor),
    empty concepts last."""
    def key(match):
        return (match.factor if match.factor is not None else np.inf, -match.strength, match.concept)
    return [match.concept for match in sorted(matches, key=key)]


def factor_label(match, factor_names) -> str:
    """'floor_hue', 'floor_hue (mixed)' or '(empty)'."""
    if match.empty:
        return "(empty)"
    name = factor_names[match.factor]
    return f"{name} (mixed)" if match.mixed else name


def concept_labels(num_concepts, matches=None, factor_names=None) -> list:
    """'c3 → floor_hue' per concept from a matching; plain 'c3' without one."""
    if matches is None:
        return [f"c{j}" for j in range(num_concepts)]
    return [f"c{m.concept} → {factor_label(m, factor_names)}" for m in matches]


def default_factor_names(num_factors, names=None) -> list:
    names = list(names or ())
    return names if len(names) == num_factors else [f"factor {i}" for i in range(num_factors)]


# ----------------------------------------------------------------------------- helpers

def save_png(figure, path):
    """Write ``figure`` as a PNG at ``path`` atomically (a reader never sees half a file)."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    with atomic_write(path, "wb") as file:
        file.write(buffer.getvalue())
    return path


def _new_figure(width_px, height_px):
    figure = Figure(figsize=(max(width_px, 200) / DPI, max(height_px, 120) / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _mosaic(cells, pad=GRID_PAD):
    """(rows, columns, h, w, 3) cells -> one image with white gaps, and the pixel centres of
    its columns and rows."""
    rows, columns, height, width, _ = cells.shape
    out = np.ones((rows * (height + pad) + pad, columns * (width + pad) + pad, 3))
    for r in range(rows):
        for c in range(columns):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            out[top:top + height, left:left + width] = cells[r, c]
    col_centres = pad + np.arange(columns) * (width + pad) + width / 2 - 0.5
    row_centres = pad + np.arange(rows) * (height + pad) + height / 2 - 0.5
    return out, col_centres, row_centres


def _labelled_mosaic(cells, column_labels, row_labels=None, title=None, scale=None):
    """A Figure of the cells as one mosaic, column labels on top (rotated when long)."""
    mosaic, col_centres, row_centres = _mosaic(np.clip(cells, 0.0, 1.0))
    height, width = mosaic.shape[:2]
    scale = scale or float(np.clip(1100 / width, 1.0, 5.0))
    longest = max((len(label) for label in column_labels), default=0)
    top_px = 50 + (6.5 * longest if longest > 6 else 0)
    left_px = 20 + (6.5 * max((len(label) for label in row_labels), default=0) if row_labels else 0)
    figure = _new_figure(width * scale + left_px + 20, height * scale + top_px + 20)
    fw, fh = figure.get_size_inches() * DPI
    axes = figure.add_axes([left_px / fw, 20 / fh, width * scale / fw, height * scale / fh])
    axes.imshow(mosaic, interpolation="nearest")
    axes.xaxis.tick_top()
    axes.set_xticks(col_centres, column_labels, rotation=60 if longest > 6 else 0,
                    ha="left" if longest > 6 else "center", fontsize=8)
    axes.set_yticks(row_centres, row_labels or [""] * len(row_centres), fontsize=8)
    axes.tick_params(length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=10, y=1 - 8 / fh, va="top")
    return figure


def split_grid(grid, columns, pad=GRID_PAD):
    """Cells (rows, columns, h, w, 3) of a training/visualize.py grid image (H, W, 3) with
    ``columns`` square cells per row and ``pad`` px between them."""
    grid = np.asarray(grid, dtype=np.float64)
    width = (grid.shape[1] - pad) // columns - pad
    rows = (grid.shape[0] - pad) // (width + pad)
    if width < 1 or rows < 1 or rows * (width + pad) + pad != grid.shape[0] \
            or columns * (width + pad) + pad != grid.shape[1]:
        raise ValueError(f"a {grid.shape[1]}x{grid.shape[0]} image is not a grid of {columns} "
                         f"square cells per row with {pad} px padding")
    cells = np.empty((rows, columns, width, width, 3))
    for r in range(rows):
        for c in range(columns):
            top, left = pad + r * (width + pad), pad + c * (width + pad)
            cells[r, c] = grid[top:top + width, left:left + width, :3]
    return cells


def palette(count, saturation=0.75, value=0.95):
    """``count`` evenly spaced hues, (count, 3) in [0, 1] (training/visualize.py's colours)."""
    return np.array([colorsys.hsv_to_rgb(i / max(count, 1), saturation, value) for i in range(count)])


# ----------------------------------------------------------------------------- pictures

def factor_heatmap(matrices, factor_names, matches):
    """Heatmaps of (concepts, factors) matrices ({title: matrix}, e.g. DCI importance and MIG's
    normalised MI) with factors as named rows and concepts as columns, ordered by the factor
    they took in ``matches`` (so a disentangled run shows a staircase)."""
    order = concept_order(matches)
    by_concept = {m.concept: m for m in matches}
    ticks = [f"c{j}" + ("\n(empty)" if by_concept[j].empty else "\n(mixed)" if by_concept[j].mixed else "")
             for j in order]
    num_factors = len(factor_names)
    cell = 44 if len(order) <= 20 else 26
    left = 20 + 7 * max(len(name) for name in factor_names)
    panel_h = num_factors * cell + 90
    figure = _new_figure(left + len(order) * cell + 110, panel_h * len(matrices) + 10)
    fw, fh = figure.get_size_inches() * DPI
    for index, (title, matrix) in enumerate(matrices.items()):
        shown = np.asarray(matrix, dtype=np.float64)[order].T      # (factors, ordered concepts)
        bottom = fh - (index + 1) * panel_h + 50
        axes = figure.add_axes([left / fw, bottom / fh, len(order) * cell / fw, num_factors * cell / fh])
        image = axes.imshow(np.nan_to_num(shown), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        axes.set_xticks(range(len(order)), ticks, fontsize=8)
        axes.set_yticks(range(num_factors), factor_names, fontsize=8)
        axes.set_title(title, fontsize=10)
        if shown.size <= 600:
            _annotate(axes, shown)
        colorbar_axes = figure.add_axes([(left + len(order) * cell + 12) / fw, bottom / fh, 12 / fw,
                                         num_factors * cell / fh])
        figure.colorbar(image, cax=colorbar_axes)
    return figure


def _annotate(axes, values):
    for (row, column), value in np.ndenumerate(values):
        text = "–" if not np.isfinite(value) else f"{value:.2f}"
        axes.text(column, row, text, ha="center", va="center", fontsize=6.5,
                  color="black" if np.nan_to_num(value) > 0.6 else "white")


def labelled_swap_grid(cells, labels):
    """The swap grid (cells (rows, 2 + concepts, h, w, 3)) with its columns named: 'source',
    'target', then ``labels[j]`` (e.g. 'c3 → floor_hue') over concept j's column."""
    if cells.shape[1] != len(labels) + 2:
        raise ValueError(f"a swap grid of {cells.shape[1]} columns has {cells.shape[1] - 2} concepts, "
                         f"got {len(labels)} labels")
    return _labelled_mosaic(cells, ["source", "target", *labels],
                            title="concept swaps: source with concept j taken from the target")


def traversal_figure(source, reconstruction, images, values, labels):
    """One row per concept: the source image, its reconstruction, then the decodings of the
    source's concepts with that concept moved along its PCA direction to ``values[row]``
    (images (rows, steps, h, w, 3), values (rows, steps))."""
    rows, steps = images.shape[:2]
    fixed = np.broadcast_to(np.stack([source, reconstruction]), (rows, 2, *source.shape))
    cells = np.concatenate([fixed, images], axis=1)
    row_labels = [f"{label}  [{v[0]:.2g} … {v[-1]:.2g}]" for label, v in zip(labels, values)]
    columns = ["source", "recon"] + [("low" if i == 0 else "high" if i == steps - 1 else "") for i in range(steps)]
    return _labelled_mosaic(cells, columns, row_labels,
                            title="traversals: one concept moved along its PCA direction over its range")


def upsample_maps(maps, size):
    """(C, h, w) attention over a token grid -> (C, H, W) over the image pixels (bilinear),
    each map still non-negative and summing to 1."""
    maps = np.asarray(maps, dtype=np.float64)
    zoom = (1.0, size[0] / maps.shape[1], size[1] / maps.shape[2])
    upsampled = np.clip(scipy.ndimage.zoom(maps, zoom, order=1, mode="nearest", grid_mode=True), 0.0, None)
    totals = upsampled.sum(axis=(1, 2), keepdims=True)
    return upsampled / np.where(totals > 0, totals, 1.0)


def attention_figure(images, maps, labels):
    """Rows = images (n, H, W, 3); columns = the image, then each concept's attention map
    (maps (n, C, H, W)) over the grey image, scaled to its own maximum for display."""
    grey = np.broadcast_to(images.mean(axis=-1, keepdims=True), images.shape)[:, None]
    heat = np.clip(maps / np.maximum(maps.max(axis=(2, 3), keepdims=True), 1e-12), 0.0, 1.0)
    colours = colormaps["inferno"](heat)[..., :3]                     # (n, C, H, W, 3)
    alpha = 0.9 * heat[..., None] ** 0.6  # the image shows through where the concept does not look
    overlay = (1 - alpha) * (0.25 + 0.5 * grey) + alpha * colours
    cells = np.concatenate([images[:, None], overlay], axis=1)
    return _labelled_mosaic(cells, ["image", *labels],
                            title="cross-attention of each concept (last encoder layer)")


def segmentation_image(masks, colours, background=None):
    """(K, H, W) masks -> (H, W, 3): every pixel in the colour of its argmax mask; pixels of
    mask 0 in ``background`` when given (ground truth: mask 0 is the background)."""
    labels = np.asarray(masks).argmax(axis=0)
    image = colours[labels % len(colours)]
    if background is not None:
        image[labels == 0] = background
    return image


def mask_decomposition_figure(images, reconstructions, rgb, masks, gt_masks):
    """Scene decomposition, one row per image: the image, the reconstruction, every concept's
    RGB where its mask is (white elsewhere), the predicted segmentation (argmax concept), the
    ground-truth segmentation and an overlay of the prediction on the image. images and
    reconstructions (n, H, W, 3), rgb (n, C, H, W, 3), masks (n, C, H, W) summing to 1 over
    concepts, gt_masks (n, K, H, W) with mask 0 the background."""
    num_concepts = masks.shape[1]
    concept_colours = palette(num_concepts)
    object_colours = palette(max(gt_masks.shape[1] - 1, 1), saturation=0.55, value=0.9)
    masked = masks[..., None] * rgb + (1 - masks[..., None])
    predicted = np.stack([segmentation_image(m, concept_colours) for m in masks])
    truth = np.stack([segmentation_image(m, np.vstack([[0.5, 0.5, 0.5], object_colours]), [0.5] * 3)
                      for m in gt_masks])
    overlay = 0.5 * images + 0.5 * predicted
    cells = np.concatenate([images[:, None], reconstructions[:, None], masked,
                            predicted[:, None], truth[:, None], overlay[:, None]], axis=1)
    columns = ["image", "recon", *[f"c{j}" for j in range(num_concepts)], "concepts", "truth", "overlay"]
    return _labelled_mosaic(cells, columns, title="scene decomposition: concept masks against the truth")


def training_curves(series):
    """Panels of ``series`` ({split: {name: (steps, values)}}, scalars.jsonl's splits): the
    training losses (log scale), the swap statistics, and the evaluation scores."""
    train = series.get("train", {})
    panels = [("training losses", {n: s for n, s in train.items() if n.endswith("loss")}, True),
              ("swap accuracy (largest re-encoded distance at the swapped concept); swaps unseen "
               "(identical re-tokenisation)", {n: s for n, s in train.items()
                                              if "accuracy" in n or n == "swaps_unseen"}, False),
              ("concept swaps kept", {n: s for n, s in train.items() if n == "swaps_kept"}, False),
              ("evaluation", {n: s for n, s in series.get("eval", {}).items() if "/num_" not in n}, False)]
    panels = [panel for panel in panels if panel[1]]
    figure = _new_figure(1000, 240 * max(len(panels), 1))
    for index, (title, curves, log) in enumerate(panels):
        axes = figure.add_subplot(len(panels), 1, index + 1)
        for name, (steps, values) in sorted(curves.items()):
            axes.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3, label=name)
        positive = all(np.all(np.asarray(v) > 0) for _, v in curves.values())
        if log and positive:
            axes.set_yscale("log")
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("step", fontsize=8)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    if not panels:
        figure.text(0.5, 0.5, "no scalars logged yet", ha="center")
    figure.subplots_adjust(left=0.07, right=0.75, hspace=0.5, top=0.93, bottom=0.08)
    return figure


def matrix_of(results: dict, metric: str, key: str) -> Optional[np.ndarray]:
    """The (concepts, factors) matrix a metric saved (JSON null -> nan), or None."""
    matrix = results.get(metric, {}).get(key)
    if matrix is None:
        return None
    return np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=np.float64)


def factor_names_of(results: dict, num_factors: int) -> Sequence[str]:
    """The factor names the metrics saved, else 'factor i'."""
    for scores in results.values():
        if isinstance(scores, dict) and scores.get("factor_names"):
            return default_factor_names(num_factors, scores["factor_names"])
    return default_factor_names(num_factors)
