"""What swapping one concept changes in the decoded image, factor by factor.

A factor classifier (fitted on real images) labels the decoded source, the decoded target and
the decoded source-with-concept-j-from-the-target. For concept j and factor f, ``transfer[j, f]``
is how often the swap carries the target's value of f into the image, over the pairs whose
decoded source and target differ in f. A concept that carries one factor moves that factor
and keeps the rest: the swap grid's "one concept, one visible attribute", as numbers.
"""
from __future__ import annotations

import numpy as np


def swap_transfer(source: np.ndarray, target: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """``source``, ``target``: (N, F) factor labels of the decoded sources and targets;
    ``swapped``: (C, N, F) labels of the sources decoded with concept j from the target.
    Returns (C, F) transfer rates (NaN for a factor no pair differs in)."""
    source, target, swapped = np.asarray(source), np.asarray(target), np.asarray(swapped)
    if source.shape != target.shape or source.ndim != 2 or swapped.shape[1:] != source.shape:
        raise ValueError(f"expected source and target (N, F) and swapped (C, N, F), got {source.shape}, "
                         f"{target.shape}, {swapped.shape}")
    differ = source != target                                 # (N, F)
    carried = (swapped == target[None]) & differ[None]         # (C, N, F)
    counts = differ.sum(axis=0)                                # (F,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, carried.sum(axis=1) / counts, np.nan)


def single_factor_concepts(transfer: np.ndarray, carry: float = 0.5, leak: float = 0.2) -> dict:
    """{concept: factor} for every concept that carries one factor (transfer >= ``carry``) and
    no other (every other transfer < ``leak``)."""
    found = {}
    for concept, row in enumerate(np.nan_to_num(np.asarray(transfer, dtype=float))):
        best = int(np.argmax(row))
        others = np.delete(row, best)
        if row[best] >= carry and (others.size == 0 or others.max() < leak):
            found[concept] = best
    return found


def swap_effects(source, target, swapped, factor_names=None, carry=0.5, leak=0.2) -> dict:
    """The transfer matrix, the single-factor concepts and the number of distinct factors they
    carry (what a swap grid would show as distinct attributes), as a JSON-able dict."""
    transfer = swap_transfer(source, target, swapped)
    names = list(factor_names) if factor_names is not None else [f"factor_{f}" for f in range(transfer.shape[1])]
    single = single_factor_concepts(transfer, carry, leak)
    return {"transfer": [[None if np.isnan(v) else float(v) for v in row] for row in transfer],
            "factor_names": names,
            "single_factor_concepts": {str(c): names[f] for c, f in single.items()},
            "distinct_factors": len(set(single.values())),
            "thresholds": {"carry": carry, "leak": leak}}
