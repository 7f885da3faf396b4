"""Run several metrics the way disentanglement_lib's evaluation does, and save them.

``run_metrics`` gives every metric its own fresh ``np.random.RandomState(seed)``
(disentanglement_lib's ``evaluation.random_seed``), so each metric's numbers do
not depend on which other metrics ran before it.

Typical use (the top-level evaluate.py and training's periodic evaluation)::

    results = run_metrics(data, representation_function)           # VCT protocol
    print(format_table(results))
    write_results_json(f"{run_dir}/metrics/{step}.json", results,
                       settings={"step": step, "checkpoint": path})
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import numbers
import os
import subprocess
import time
import warnings
from typing import Iterable, Mapping

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from common.atomic import atomic_write

from .metrics import METRICS, VCT_PROTOCOL
from .errors import EvaluationError
from .metrics.utils import CheckedRepresentation, check_ground_truth_data

logger = logging.getLogger(__name__)

__all__ = ["METRICS", "VCT_PROTOCOL", "run_metrics", "format_table", "write_results_json",
           "git_commit", "to_jsonable"]


def run_metrics(ground_truth_data, representation_function,
                metrics: Iterable[str] = VCT_PROTOCOL, random_state_seed: int = 0,
                timings: dict | None = None, **overrides) -> dict:
    """Compute the named metrics; returns ``{metric name: {score name: value}}``.

    A metric during which sklearn warned that a fit did not converge also gets
    ``"warnings": ["ConvergenceWarning: <first line>", ...]``; nothing is printed for them.

    Args:
      ground_truth_data: object with the ground-truth interface (num_factors,
        factors_num_values, sample_factors, sample_observations_from_factors, sample).
      representation_function: observations (B, H, W, C) -> codes (B, D).
      metrics: names from ``METRICS`` (default: beta_vae, factor_vae, mig, dci).
      random_state_seed: each metric gets ``np.random.RandomState(random_state_seed)``.
      timings: if a dict is given, it receives the wall time (s) of each metric.
      **overrides: per-metric keyword arguments, e.g. ``mig={"num_train": 2000}``,
        ``dci={"n_jobs": 1}``. Arguments not given come from gin bindings, then
        from the defaults (the VCT protocol).

    Raises GroundTruthDataError before any work if the dataset has no factors,
    ValueError for an unknown metric name or override.
    """
    metrics = list(metrics)
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise EvaluationError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)}")
    stray = [name for name in overrides if name not in metrics]
    if stray:
        raise EvaluationError(f"overrides given for metric(s) {stray} that are not being run "
                         f"(running {metrics})")
    for name, settings in overrides.items():
        if not isinstance(settings, Mapping):
            raise EvaluationError(f"overrides for {name!r} must be a dict of keyword arguments, "
                             f"got {type(settings).__name__}")
    check_ground_truth_data(ground_truth_data)
    representation_function = CheckedRepresentation(representation_function)

    results = {}
    for name in metrics:
        start = time.perf_counter()
        random_state = np.random.RandomState(random_state_seed)
        with _convergence_notes() as notes:
            scores = METRICS[name](ground_truth_data, representation_function, random_state,
                                   **dict(overrides.get(name, {})))
        elapsed = time.perf_counter() - start
        if timings is not None:
            timings[name] = elapsed
        logger.info("%s (%.1f s): %s", name, elapsed, scores)
        results[name] = to_jsonable(scores)
        if notes:
            results[name]["warnings"] = notes
    return results


@contextlib.contextmanager
def _convergence_notes():
    """Collect sklearn's ConvergenceWarnings as one-line notes instead of printing them.

    They come from the metrics' logistic regressions at every evaluation, 8 lines each, and
    would bury the training log; the first line of each distinct one is kept for the results.
    The warning filters in force still apply (an "ignore" or "error" filter for them wins);
    other warnings are shown as usual.
    """
    notes = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield notes
    finally:
        for warning in caught:
            if issubclass(warning.category, ConvergenceWarning):
                lines = str(warning.message).strip().splitlines() or [""]
                note = f"{warning.category.__name__}: {lines[0]}"
                if note not in notes:
                    notes.append(note)
            else:
                warnings.showwarning(warning.message, warning.category, warning.filename,
                                     warning.lineno, warning.file, warning.line)


def _format_value(value) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.4f}"
    return str(value)


def _is_score(value) -> bool:
    """Numbers (and None, a NaN score after to_jsonable) go in the table; notes and
    per-factor lists do not."""
    return value is None or isinstance(value, (numbers.Number, np.bool_))


def format_table(results: Mapping[str, Mapping[str, object]]) -> str:
    """Aligned plain-text table: one row per (metric, numeric score)."""
    rows = [("metric", "score", "value")]
    for metric, scores in results.items():
        if isinstance(scores, Mapping):
            for score, value in scores.items():
                if _is_score(value):
                    rows.append((str(metric), str(score), _format_value(value)))
        else:
            rows.append((str(metric), "", _format_value(scores)))
    widths = [max(len(row[col]) for row in rows) for col in range(3)]
    lines = []
    for index, (metric, score, value) in enumerate(rows):
        lines.append(f"{metric:<{widths[0]}}  {score:<{widths[1]}}  {value:>{widths[2]}}".rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def to_jsonable(value):
    """numpy scalars/arrays and nested containers -> plain JSON types (NaN/inf -> None)."""
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def git_commit(path: str | None = None) -> str | None:
    """HEAD commit of the git checkout holding ``path`` (this package by default), or None."""
    path = path or os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit or None


def write_results_json(path: str, results: Mapping, settings: Mapping | None = None) -> dict:
    """Write ``{"results", "settings", "git_commit", "created"}`` to ``path`` atomically
    (fsynced before the rename: a reader never sees a half-written file, even after a crash).
    Returns the written payload.
    """
    payload = {
        "results": to_jsonable(results),
        "settings": to_jsonable(dict(settings or {})),
        "git_commit": git_commit(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_write(path, "w", fsync=True) as file:
        json.dump(payload, file, indent=2, sort_keys=False, allow_nan=False)
        file.write("\n")
    return payload
