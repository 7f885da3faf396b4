"""Cars3D: the .mat files of the 2015 visual-analogy data release, resized once to 64x64.

Each file holds one car: 'im' of shape (128, 128, 3, azimuths=24, elevations=4) uint8.
Factors are (elevation, azimuth, object) = [4, 24, 183]; files are taken in sorted
name order (the published loaders used directory-listing order, which is not stable).
The resized images are cached in one .npy in mixed-radix row order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from common.atomic import atomic_write

from .array_cache import is_fresh
from .errors import DatasetError
from .ground_truth import IndexedGroundTruthData
from .row_readers import NpyRows

FACTOR_NAMES = ("elevation", "azimuth", "object")
IMAGE_SIZE = 64
CACHE_NAME = f"cars3d_{IMAGE_SIZE}x{IMAGE_SIZE}.npy"
LAYOUT = ("<data_dir>/cars3d/*.mat (also accepted: cars3d/data/, cars3d/cars/, cars3d/data/cars/), "
          "one file per car with 'im' of shape (H, W, 3, azimuths, elevations) uint8")
_SUBFOLDERS = ("", "data", "cars", "data/cars")


def find_folder(data_dir: str | Path) -> Path:
    root = Path(data_dir) / "cars3d"
    for sub in _SUBFOLDERS:
        folder = root / sub
        if folder.is_dir() and any(folder.glob("*.mat")):
            return folder
    raise DatasetError(f"no Cars3D .mat files found under {root}; expected {LAYOUT}")


def _load_car(path: Path) -> np.ndarray:
    """One car as (elevation, azimuth, H, W, 3) uint8."""
    from scipy.io import loadmat
    try:
        contents = loadmat(str(path))
    except Exception:  # scipy raises many types for malformed files
        raise DatasetError(f"cannot read {path} (truncated or not a MATLAB v5 file); "
                           f"expected {LAYOUT}") from None
    if "im" not in contents:
        found = ", ".join(k for k in contents if not k.startswith("__"))
        raise DatasetError(f"{path} has no variable 'im' (found: {found or 'nothing'}); expected {LAYOUT}")
    im = contents["im"]
    if im.ndim != 5 or im.shape[2] != 3:
        raise DatasetError(f"{path}: 'im' has shape {im.shape}; expected {LAYOUT}")
    return np.transpose(im, (4, 3, 0, 1, 2))


def _resize(image: np.ndarray) -> np.ndarray:
    if image.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE):
        return image
    # Lanczos, as PIL's ANTIALIAS thumbnail in the published loaders.
    return np.asarray(Image.fromarray(np.ascontiguousarray(image.astype(np.uint8)))
                      .resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS))


class Cars3D(IndexedGroundTruthData):
    def __init__(self, folder: str | Path):
        folder = Path(folder)
        files = sorted(folder.glob("*.mat"))
        if not files:
            raise DatasetError(f"no .mat files in {folder}; expected {LAYOUT}")
        cache = folder / CACHE_NAME
        if not (is_fresh(cache, files) and _cached_objects(cache) == len(files)):
            _build_cache(files, cache)
        # The cache's leading axes are the factors, so its flat row i is grid row i.
        images = NpyRows(cache, LAYOUT, leading_axes=3)
        self.path = folder
        super().__init__(images.array_shape[:3], FACTOR_NAMES, images, images.shape[1:])


def _cached_objects(cache: Path) -> int:
    try:
        return NpyRows(cache, LAYOUT, leading_axes=3).array_shape[2]
    except DatasetError:
        return -1


def _build_cache(files, cache: Path) -> None:
    """Resize every car into a (elevation, azimuth, object, 64, 64, 3) .npy, one car at a time."""
    first = _load_car(files[0])
    elevations, azimuths = first.shape[:2]
    shape = (elevations, azimuths, len(files), IMAGE_SIZE, IMAGE_SIZE, 3)
    # What np.lib.format.open_memmap does, on the temporary file object: header, then a memmap.
    with atomic_write(cache, "w+b") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                   "fortran_order": False, "shape": shape})
        file.flush()
        out = np.memmap(file, dtype=np.uint8, mode="r+", offset=file.tell(), shape=shape)
        for obj, path in enumerate(tqdm(files, desc=f"caching Cars3D ({len(files)} cars)", unit="car")):
            car = first if obj == 0 else _load_car(path)
            if car.shape[:2] != (elevations, azimuths):
                raise DatasetError(f"{path}: {car.shape[1]} azimuths x {car.shape[0]} elevations, but "
                                   f"{files[0].name} has {azimuths} x {elevations}; expected {LAYOUT}")
            for e in range(elevations):
                for a in range(azimuths):
                    out[e, a, obj] = _resize(car[e, a])
        out.flush()
        del out  # unmap before the rename


def load(data_dir: str | Path) -> Cars3D:
    return Cars3D(find_folder(data_dir))
