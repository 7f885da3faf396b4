"""dSprites (the published DeepMind npz): 1-channel 0/1 images, factor grid from latents_classes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .array_cache import cached_npz_member, npz_member_header, read_small_npz_array
from .errors import DatasetError
from .factor_grid import classes_from_labels
from .ground_truth import IndexedGroundTruthData
from .row_readers import NpyRows

FILE_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
FACTOR_NAMES = ("color", "shape", "scale", "orientation", "position_x", "position_y")
LAYOUT = (f"<data_dir>/dsprites/{FILE_NAME} with arrays 'imgs' (N, 64, 64) uint8 in {{0, 1}}, "
          "'latents_classes' (N, 6) int and 'latents_values' (N, 6), rows in mixed-radix order")


class DSprites(IndexedGroundTruthData):
    """Factors [1, 3, 6, 40, 32, 32] (color, shape, scale, orientation, x, y), as in VCT.

    Pixels are 0/1, so observations are the raw values (no division by 255).
    """

    def __init__(self, npz_path: str | Path):
        npz_path = Path(npz_path)
        if not npz_path.is_file():
            raise DatasetError(f"dSprites file not found: {npz_path}; expected {LAYOUT}")
        shape, _ = npz_member_header(npz_path, "imgs", LAYOUT)
        if len(shape) != 3:
            raise DatasetError(f"{npz_path}: 'imgs' has shape {shape}; expected {LAYOUT}")
        classes = read_small_npz_array(npz_path, "latents_classes", LAYOUT)
        if classes.ndim != 2 or classes.shape[1] != len(FACTOR_NAMES) or classes.shape[0] != shape[0]:
            raise DatasetError(f"{npz_path}: 'latents_classes' has shape {classes.shape} for "
                               f"{shape[0]} images; expected {LAYOUT}")
        sizes, _ = classes_from_labels(classes, str(npz_path))
        cache = cached_npz_member(npz_path, "imgs", LAYOUT, expected_dtype=np.uint8)
        images = NpyRows(cache, LAYOUT)
        self.path = npz_path
        super().__init__(sizes, FACTOR_NAMES, images, images.shape[1:] + (1,), pixel_max=1.0)


def load(data_dir: str | Path) -> DSprites:
    return DSprites(Path(data_dir) / "dsprites" / FILE_NAME)
