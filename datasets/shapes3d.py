"""Shapes3D (DeepMind 3dshapes.h5), read lazily: the 5.9 GB file never enters RAM."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DatasetError
from .factor_grid import classes_from_labels
from .ground_truth import IndexedGroundTruthData
from .row_readers import H5Rows

FILE_NAME = "3dshapes.h5"
FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
LAYOUT = (f"<data_dir>/shapes3d/{FILE_NAME} with datasets 'images' (N, H, W, 3) uint8 and "
          "'labels' (N, 6) factor values, rows in mixed-radix order (orientation fastest)")


class Shapes3D(IndexedGroundTruthData):
    """Factors: floor hue, wall hue, object hue, scale, shape, orientation.

    The factor grid is derived from the 'labels' column values, so a file with a
    reduced grid (e.g. the synthetic one) loads the same way as the published one.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise DatasetError(f"Shapes3D file not found: {path}; expected {LAYOUT}")
        images = H5Rows(path, "images", LAYOUT)
        labels_reader = H5Rows(path, "labels", LAYOUT)
        if len(images.shape) != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise DatasetError(f"{path}: 'images' has shape {images.shape} dtype {images.dtype}; "
                               f"expected {LAYOUT}")
        if len(labels_reader.shape) != 2 or labels_reader.shape[1] != len(FACTOR_NAMES):
            raise DatasetError(f"{path}: 'labels' has shape {labels_reader.shape}; expected {LAYOUT}")
        if labels_reader.shape[0] != images.shape[0]:
            raise DatasetError(f"{path}: {images.shape[0]} images but {labels_reader.shape[0]} "
                               f"label rows; expected {LAYOUT}")
        # Labels are small (N x 6 floats); read them whole to derive the grid.
        labels = labels_reader.read(np.arange(labels_reader.shape[0]))
        sizes, _ = classes_from_labels(labels, f"{path}")
        self.path = path
        super().__init__(sizes, FACTOR_NAMES, images, images.shape[1:])


def load(data_dir: str | Path) -> Shapes3D:
    return Shapes3D(Path(data_dir) / "shapes3d" / FILE_NAME)
