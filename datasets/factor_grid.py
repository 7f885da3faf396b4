"""Mixed-radix factor grids: the row order of every ground-truth dataset file.

Row ``i`` of a Shapes3D / MPI3D / dSprites / Cars3D file holds the image whose
factor classes are the digits of ``i`` in the mixed radix ``factor_sizes``
(row-major: the last factor changes fastest).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import DatasetError


def factor_bases(factor_sizes: Sequence[int]) -> np.ndarray:
    """Place value of each factor: ``index = factors @ bases``."""
    sizes = np.asarray(factor_sizes, dtype=np.int64)
    bases = np.ones_like(sizes)
    # Reversed cumulative product: the last factor has place value 1.
    bases[:-1] = np.cumprod(sizes[::-1])[::-1][1:]
    return bases


def factors_to_index(factors: np.ndarray, factor_sizes: Sequence[int]) -> np.ndarray:
    """Row indices (int64, shape (n,)) of factor classes (n, num_factors)."""
    factors = np.asarray(factors)
    sizes = np.asarray(factor_sizes, dtype=np.int64)
    if factors.ndim != 2 or factors.shape[1] != sizes.size:
        raise DatasetError(
            f"factors must have shape (n, {sizes.size}), got {tuple(factors.shape)}")
    if not np.issubdtype(factors.dtype, np.integer):
        if not np.all(np.equal(np.mod(factors, 1), 0)):
            raise DatasetError("factors must be integer class indices")
        factors = factors.astype(np.int64)
    if np.any(factors < 0) or np.any(factors >= sizes[None, :]):
        raise DatasetError(
            f"factor classes out of range: each column i must lie in [0, {list(sizes)}[i])")
    return factors.astype(np.int64) @ factor_bases(sizes)


def index_to_factors(indices: np.ndarray, factor_sizes: Sequence[int]) -> np.ndarray:
    """Factor classes (n, num_factors) int64 of row indices."""
    indices = np.asarray(indices, dtype=np.int64)
    sizes = np.asarray(factor_sizes, dtype=np.int64)
    total = int(np.prod(sizes))
    if np.any(indices < 0) or np.any(indices >= total):
        raise DatasetError(f"row index out of range [0, {total})")
    return (indices[:, None] // factor_bases(sizes)[None, :]) % sizes[None, :]


def classes_from_labels(labels: np.ndarray, what: str) -> tuple[list[int], np.ndarray]:
    """Derive the factor grid from a file's per-row factor labels.

    Each column's classes are its sorted unique values, so a file holding a reduced
    grid (fewer values per factor) is as valid as the full one. Checks that the rows
    enumerate the whole grid exactly once in mixed-radix order.

    Returns (factor_sizes, classes) with classes int64 (N, num_factors).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DatasetError(f"{what}: labels must be 2-D (N, num_factors), got shape {labels.shape}")
    sizes, columns = [], []
    for column in labels.T:
        values = np.unique(column)
        sizes.append(int(values.size))
        columns.append(np.searchsorted(values, column))
    classes = np.stack(columns, axis=1).astype(np.int64)
    expected = int(np.prod(sizes))
    if labels.shape[0] != expected:
        raise DatasetError(
            f"{what}: {labels.shape[0]} rows but the labels span a grid of "
            f"{sizes} = {expected} factor combinations; every combination must appear once")
    if not np.array_equal(classes @ factor_bases(sizes), np.arange(expected)):
        raise DatasetError(
            f"{what}: rows are not in mixed-radix order (row i must hold the factor "
            f"combination whose digits are i in radix {sizes}, last factor fastest)")
    return sizes, classes
