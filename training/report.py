"""report.html of a run: one self-contained page of what the run's concepts learned.

``write_report(run_dir)`` reads only the run directory (run_args.json, config.gin,
scalars.jsonl, metrics/*.json, images/) and writes ``report.html`` with its pictures beside it
in ``report/`` (plain HTML and CSS: no network, no script). It shows the run's configuration,
its newest metrics, the training curves, the concept <-> factor heatmap (DCI importance and
MIG's normalised mutual information) with the matching it implies, the swap grid with its
columns labelled by that matching, the reconstructions, and the pictures that need the live
model (traversals, attention maps, mask decomposition), which the caller passes as
``figures`` (training/visualize_run.py makes them). Pictures passed once are listed in
``report/figures.json``, so a report rewritten later from the run directory alone keeps them.
"""
from __future__ import annotations

import dataclasses
import html
import json
import re
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from common.atomic import atomic_write_text
from training import figures as fig

REPORT_NAME = "report.html"
FIGURE_DIR = "report"
MANIFEST = "figures.json"
# Pictures of the live model, in the order the page shows them; other names follow.
LIVE_ORDER = ("traversals", "attention", "decomposition")
LIVE_TITLES = {"traversals": "Concept traversals", "attention": "Cross-attention maps",
               "decomposition": "Scene decomposition"}


@dataclasses.dataclass
class Picture:
    """A picture for the report: a matplotlib Figure or the path of a PNG, with a caption."""
    image: object
    caption: str = ""


@dataclasses.dataclass
class Section:
    title: str
    body: str


# ----------------------------------------------------------------------------- reading a run

def newest_file(folder: Path, pattern: str) -> Optional[Path]:
    """The file matching ``pattern`` with the highest step number in its name (the runner
    writes <name>_<step:08d>.<ext>), else None."""
    def step(path):
        numbers = re.findall(r"\d+", path.stem)
        return int(numbers[-1]) if numbers else -1
    files = sorted(Path(folder).glob(pattern), key=lambda p: (step(p), p.name))
    return files[-1] if files else None


def step_metrics_path(run_dir: Path, step: int) -> Path:
    """Where a run writes its evaluation of ``step``: metrics/metrics_<step>.json."""
    return Path(run_dir) / "metrics" / f"metrics_{step:08d}.json"


def newest_metrics(run_dir: Path) -> Optional[tuple]:
    """(path, payload) of the newest metrics/metrics_<step>.json (the run's own evaluations),
    else of the newest evaluate_*.json (evaluate.py's), else None."""
    folder = Path(run_dir) / "metrics"
    path = newest_file(folder, "metrics_*.json") or newest_file(folder, "evaluate_*.json")
    return (path, json.loads(path.read_text())) if path is not None else None


def read_series(run_dir: Path) -> dict:
    """{split: {name: (steps, values)}} of scalars.jsonl (empty when there is none)."""
    path = Path(run_dir) / "scalars.jsonl"
    series = {}
    if not path.is_file():
        return series
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        split, step = row.pop("split", "train"), row.pop("step")
        row.pop("time", None)
        for name, value in row.items():
            steps, values = series.setdefault(split, {}).setdefault(name, ([], []))
            steps.append(step)
            values.append(value)
    return series


def read_run_args(run_dir: Path) -> dict:
    path = Path(run_dir) / "run_args.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def config_bindings(config_text: str, prefix="get_args.") -> list:
    """(name, value) of the gin bindings starting with ``prefix`` (continuation lines of a
    long value joined)."""
    bindings, current = [], None
    for line in config_text.splitlines():
        if current is not None and line[:1].isspace() and line.strip():
            current[1] += " " + line.strip()
            continue
        current = None
        match = re.match(rf"({re.escape(prefix)}\w+)\s*=\s*(.*)$", line)
        if match:
            current = [match.group(1), match.group(2)]
            bindings.append(current)
    return [tuple(binding) for binding in bindings]


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) float in [0, 1]."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


# ----------------------------------------------------------------------------- HTML pieces

def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _image(src: str, alt: str, caption: str = "", grid_file: Optional[Path] = None) -> str:
    """A figure; a ``grid_file`` (a small image grid) is shown enlarged with sharp pixels."""
    figcaption = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    size = ""
    if grid_file is not None:
        with Image.open(grid_file) as image:
            size = f' class="grid" width="{min(3 * image.width, 1300)}"'
    return f'<figure><img src="{_e(src)}" alt="{_e(alt)}"{size}>{figcaption}</figure>'


def _table(header, rows, attributes=None) -> str:
    """An HTML table; ``attributes`` (one dict per row) become data-* attributes of its <tr>."""
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = []
    for index, row in enumerate(rows):
        data = "".join(f' data-{key}="{_e(value)}"' for key, value in (attributes[index] if attributes else {}).items())
        body.append(f"<tr{data}>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _format(value) -> str:
    if value is None:
        return "nan"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


# ----------------------------------------------------------------------------- sections

def config_section(run_dir: Path, step) -> Section:
    run_dir = Path(run_dir)
    args = read_run_args(run_dir)
    config_path = run_dir / "config.gin"
    config_text = config_path.read_text() if config_path.is_file() else ""
    rows = [("run directory", str(run_dir.resolve())), ("step", step if step is not None else "?")]
    rows += [(key, value) for key, value in args.items()]
    rows += config_bindings(config_text)
    details = (f"<details><summary>config.gin</summary><pre>{_e(config_text)}</pre></details>"
               if config_text else "")
    return Section("Configuration", _table(("", "value"), rows) + details)


def metric_rows(results: dict) -> list:
    """(metric, score, value) of every numeric score (None: a NaN score), as format_table."""
    rows = []
    for metric, scores in results.items():
        for score, value in (scores.items() if isinstance(scores, dict) else []):
            if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                rows.append((metric, score, value))
    return rows


def metrics_section(metrics) -> Section:
    if metrics is None:
        return Section("Metrics", "<p>No evaluation yet (metrics/ is empty).</p>")
    path, payload = metrics
    rows = metric_rows(payload.get("results", {}))
    attributes = [{"metric": m, "score": s, "value": json.dumps(v)} for m, s, v in rows]
    table = _table(("metric", "score", "value"), [(m, s, _format(v)) for m, s, v in rows], attributes)
    return Section("Metrics", f'<p class="note">{_e(path.name)}</p><div id="metrics">{table}</div>')


def curves_section(run_dir: Path, figure_dir: Path) -> Optional[Section]:
    series = read_series(run_dir)
    if not series:
        return None
    fig.save_png(fig.training_curves(series), figure_dir / "curves.png")
    return Section("Training curves", _image(f"{FIGURE_DIR}/curves.png", "training curves",
                                             "from scalars.jsonl (train and eval splits)"))


@dataclasses.dataclass
class Matching:
    """Which factor each concept took, per saved matrix. ``matches`` (the labels everywhere)
    come from DCI's importance when it was saved: DCI's disentanglement is computed from it."""
    matrices: dict        # {metric: (concepts, factors) matrix}
    by_metric: dict       # {metric: [ConceptMatch]}
    factor_names: list

    @property
    def matches(self):
        return next(iter(self.by_metric.values()))

    def labels(self):
        return fig.concept_labels(len(self.matches), self.matches, self.factor_names)


MATRIX_TITLES = {"dci": "DCI importance (concepts × factors)", "mig": "MIG: mutual information / factor entropy"}


def concept_matching(results: dict) -> Optional[Matching]:
    """The Matching of the DCI importance and MIG MI matrices in ``results``, or None."""
    matrices = {metric: fig.matrix_of(results, metric, key) for metric, key in
                (("dci", "importance_matrix"), ("mig", "mutual_information_matrix"))}
    matrices = {metric: matrix for metric, matrix in matrices.items() if matrix is not None}
    if not matrices:
        return None
    num_factors = next(iter(matrices.values())).shape[1]
    return Matching(matrices, {metric: fig.match_concepts(m) for metric, m in matrices.items()},
                    list(fig.factor_names_of(results, num_factors)))


def heatmap_section(matching: Optional[Matching], figure_dir: Path) -> Optional[Section]:
    if matching is None:
        return None
    names, matches = matching.factor_names, matching.matches
    titled = {MATRIX_TITLES[metric]: matrix for metric, matrix in matching.matrices.items()}
    fig.save_png(fig.factor_heatmap(titled, names, matches), figure_dir / "heatmap.png")
    metrics = list(matching.by_metric)
    ordered = [matches[j] for j in fig.concept_order(matches)]
    rows = [(f"c{m.concept}", *[fig.factor_label(matching.by_metric[k][m.concept], names) for k in metrics],
             f"{m.share:.3f}", f"{m.purity:.3f}") for m in ordered]
    note = (f"Each concept takes the factor of its largest entry (empty when that entry is under a fifth of "
            f"the matrix's largest; labels elsewhere follow {metrics[0].upper()}); share = its part of the "
            f"matrix's total, purity = its largest entry over its row's total (mixed below 0.5).")
    table = _table(("concept", *[f"factor ({k.upper()})" for k in metrics], "share", "purity"), rows,
                   [{"concept": m.concept, "factor": "" if m.empty else names[m.factor]} for m in ordered])
    body = _image(f"{FIGURE_DIR}/heatmap.png", "concept-factor heatmap") + f'<p class="note">{_e(note)}</p>'
    return Section("Concepts ↔ factors", body + f'<div id="matching">{table}</div>')


def swap_section(run_dir: Path, matching, figure_dir: Path) -> Optional[Section]:
    swap = newest_file(Path(run_dir) / "images", "swap_*.png")
    if swap is None:
        return None
    cells = _swap_cells(run_dir, read_image(swap), matching)
    if cells is None:  # cannot tell the columns apart: the grid as the runner saved it
        return copied_image_section(run_dir, figure_dir, swap.name, "Concept swaps", "unlabelled")
    num_concepts = cells.shape[1] - 2
    fits = matching is not None and len(matching.matches) == num_concepts
    picture = fig.labelled_swap_grid(cells, matching.labels() if fits else fig.concept_labels(num_concepts))
    fig.save_png(picture, figure_dir / "swaps.png")
    caption = (f"{swap.name}: row i is source image i; its columns are the source, the target, then one "
               f"image per concept j (the source's concepts with concept j taken from the target)")
    return Section("Concept swaps", _image(f"{FIGURE_DIR}/swaps.png", "labelled swap grid", caption))


def _swap_cells(run_dir: Path, grid, matching):
    """The swap grid's cells, with as many concepts as the metrics' matrix has rows, else as
    the image size the reconstruction grid (two rows of images) gives; None if neither fits."""
    candidates = [len(matching.matches)] if matching else []
    recon = newest_file(Path(run_dir) / "images", "recon_*.png")
    if recon is not None:
        with Image.open(recon) as image:
            side = (image.height - fig.GRID_PAD) // 2 - fig.GRID_PAD
        candidates.append((grid.shape[1] - fig.GRID_PAD) // max(side + fig.GRID_PAD, 1) - 2)
    for concepts in (c for c in candidates if c > 0):
        try:
            return fig.split_grid(grid, concepts + 2)
        except ValueError:
            continue
    return None


def copied_image_section(run_dir: Path, figure_dir: Path, pattern: str, title: str, caption: str):
    """A grid the runner saved in images/, copied beside the report (so --out DIR is whole)."""
    path = newest_file(Path(run_dir) / "images", pattern)
    if path is None:
        return None
    target = figure_dir / path.name
    for stale in figure_dir.glob(pattern):  # an earlier report's copy of an older grid
        if stale.name != target.name:
            stale.unlink()
    if path.resolve() != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return Section(title, _image(f"{FIGURE_DIR}/{path.name}", title, f"{path.name}: {caption}", grid_file=target))


def setting_grid_sections(run_dir: Path, figure_dir: Path) -> list:
    """The newest of every other grid the setting saved in images/ (e.g. the GAN settings'
    traversal grids), one section each."""
    known = {"swap", "recon", "masks"}
    names = sorted({match.group(1) for path in (Path(run_dir) / "images").glob("*.png")
                    if (match := re.fullmatch(r"(.+)_\d{8}", path.stem)) and match.group(1) not in known})
    return [copied_image_section(run_dir, figure_dir, f"{name}_*.png", f"{name.replace('_', ' ').capitalize()} grid",
                                 "an image grid of the setting (images/)") for name in names]


def live_sections(figures: Optional[dict], figure_dir: Path, step) -> list:
    """Sections of the live model's pictures: the ``figures`` given now (saved as PNGs and
    listed in the manifest with ``step``), else those an earlier call listed."""
    manifest_path = figure_dir / MANIFEST
    if figures:
        manifest = {name: _save_picture(name, picture, figure_dir, step) for name, picture in figures.items()}
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    elif manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    else:
        return []
    names = [n for n in LIVE_ORDER if n in manifest] + sorted(set(manifest) - set(LIVE_ORDER))
    sections = []
    for name in names:
        entry = manifest[name]
        if not (figure_dir / entry["file"]).is_file():
            continue
        caption = entry.get("caption", "") + (f" (step {entry['step']})" if entry.get("step") is not None else "")
        title = LIVE_TITLES.get(name, name.replace("_", " ").capitalize())
        sections.append(Section(title, _image(f"{FIGURE_DIR}/{entry['file']}", title, caption.strip())))
    return sections


def _save_picture(name: str, picture, figure_dir: Path, step) -> dict:
    """Save a Picture / Figure / PNG path as report/<name>.png; its manifest entry."""
    if not isinstance(picture, Picture):
        picture = Picture(picture)
    file = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    target = figure_dir / file
    if isinstance(picture.image, (str, Path)):
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(picture.image).resolve() != target.resolve():
            shutil.copyfile(picture.image, target)
    else:
        fig.save_png(picture.image, target)
    return {"file": file, "caption": picture.caption, "step": step}


STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
td, th { border: 1px solid #ddd; padding: .2em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td { font-family: monospace; }
figure { margin: .5em 0; } img { max-width: 100%; height: auto; } img.grid { image-rendering: pixelated; }
figcaption, .note { color: #555; font-size: .85em; } pre { font-size: .8em; background: #f7f7f7; padding: .5em; }
nav a { margin-right: 1em; }
"""


def page(title: str, sections: list) -> str:
    """The whole HTML document (inline CSS, no script)."""
    anchors = [re.sub(r"[^a-z0-9]+", "-", s.title.lower()).strip("-") for s in sections]
    nav = "".join(f'<a href="#{a}">{_e(s.title)}</a>' for a, s in zip(anchors, sections))
    body = "".join(f'<section id="{a}"><h2>{_e(s.title)}</h2>{s.body}</section>' for a, s in zip(anchors, sections))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1><nav>{nav}</nav>{body}</body></html>\n")


def write_report(run_dir, figures: Optional[dict] = None, out_dir=None, step=None) -> Path:
    """Write ``<out_dir>/report.html`` (default: in the run directory) and its pictures in
    ``<out_dir>/report/``; returns the page's path. ``figures`` ({name: Picture, Figure or PNG
    path}) are the live model's pictures of ``step``."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    figure_dir = out_dir / FIGURE_DIR
    figure_dir.mkdir(parents=True, exist_ok=True)
    metrics = newest_metrics(run_dir)
    if step is None and metrics is not None:
        step = metrics[1].get("settings", {}).get("step")
    matching = concept_matching(metrics[1].get("results", {})) if metrics is not None else None
    sections = [config_section(run_dir, step), metrics_section(metrics), curves_section(run_dir, figure_dir),
                heatmap_section(matching, figure_dir), swap_section(run_dir, matching, figure_dir),
                *live_sections(figures, figure_dir, step),
                copied_image_section(run_dir, figure_dir, "masks_*.png", "Decomposition grid",
                                     "image, reconstruction, each concept's masked RGB, argmax segmentation"),
                copied_image_section(run_dir, figure_dir, "recon_*.png", "Reconstructions",
                                     "top row: images; bottom row: their reconstructions"),
                *setting_grid_sections(run_dir, figure_dir)]
    setting = read_run_args(run_dir).get("setting", "")
    title = f"VCT run report: {run_dir.name}" + (f" ({setting} setting)" if setting else "")
    path = out_dir / REPORT_NAME
    atomic_write_text(path, page(title, [s for s in sections if s is not None]))
    return path
