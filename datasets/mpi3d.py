"""MPI3D (toy / realistic / real): 'images' in an .npz, cached once as a readable .npy.

The npz carries no labels, so the factor grid is fixed by the variant
([6, 6, 2, 3, 3, 40, 40], 1,036,800 images); a file holding a reduced grid can be
loaded by passing ``factor_sizes`` explicitly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .array_cache import cached_npz_member
from .errors import DatasetError
from .ground_truth import IndexedGroundTruthData
from .row_readers import NpyRows

FACTOR_SIZES = (6, 6, 2, 3, 3, 40, 40)
FACTOR_NAMES = ("object_color", "object_shape", "object_size", "camera_height",
                "background_color", "horizontal_axis", "vertical_axis")
VARIANTS = ("mpi3d_toy", "mpi3d_realistic", "mpi3d_real")
# Folders searched under data_dir: ours / disentanglement_lib's first, then the published VCT ones.
_FOLDERS = {
    "mpi3d_toy": ("mpi3d_toy", "mpi_toy", "mpi3d"),
    "mpi3d_realistic": ("mpi3d_realistic", "mpi_mid", "mpi3d"),
    "mpi3d_real": ("mpi3d_real", "mpi_real", "mpi3d"),
}


def _layout(variant: str) -> str:
    return (f"<data_dir>/{variant}/{variant}.npz (or <data_dir>/{_FOLDERS[variant][1]}/) with array "
            f"'images' (N, 64, 64, 3) uint8, N = product of the factor sizes, rows in mixed-radix order")


class MPI3D(IndexedGroundTruthData):
    def __init__(self, npz_path: str | Path, variant: str = "mpi3d_toy",
                 factor_sizes: Sequence[int] | None = None):
        layout = _layout(variant)
        npz_path = Path(npz_path)
        if not npz_path.is_file():
            raise DatasetError(f"MPI3D file not found: {npz_path}; expected {layout}")
        sizes = list(FACTOR_SIZES if factor_sizes is None else factor_sizes)
        if len(sizes) != len(FACTOR_NAMES):
            raise DatasetError(f"MPI3D has {len(FACTOR_NAMES)} factors, got factor_sizes {sizes}")
        cache = cached_npz_member(npz_path, "images", layout, expected_dtype=np.uint8)
        images = NpyRows(cache, layout)
        if len(images.shape) != 4 or images.shape[3] != 3:
            raise DatasetError(f"{npz_path}: 'images' has shape {images.shape}; expected {layout}")
        if images.shape[0] != int(np.prod(sizes)):
            raise DatasetError(f"{npz_path}: {images.shape[0]} images but factor sizes {sizes} "
                               f"give {int(np.prod(sizes))}; pass factor_sizes for a reduced grid; "
                               f"expected {layout}")
        self.path, self.variant = npz_path, variant
        super().__init__(sizes, FACTOR_NAMES, images, images.shape[1:])


def find_file(data_dir: str | Path, variant: str) -> Path:
    """The first existing candidate; the canonical path if none exists (for the error)."""
    candidates = [Path(data_dir) / folder / f"{variant}.npz" for folder in _FOLDERS[variant]]
    return next((c for c in candidates if c.is_file()), candidates[0])


def load(data_dir: str | Path, variant: str = "mpi3d_toy",
         factor_sizes: Sequence[int] | None = None) -> MPI3D:
    if variant not in VARIANTS:
        raise DatasetError(f"unknown MPI3D variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    return MPI3D(find_file(data_dir, variant), variant, factor_sizes)
