"""Multi-object scene datasets (CLEVR-like): images with instance masks, no factors.

Item i is ``(image, masks)``: image float32 (3, R, R) in [-1, 1] and masks bool
(num_masks, R, R), one per entity, mask 0 the background. Scenes have no
ground-truth factor grid, so asking one for factors raises a DatasetError.
"""
from __future__ import annotations

import abc
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .array_cache import cached_npz_member, npz_member_names
from .errors import DatasetError
from .row_readers import NpyRows


def center_square(height: int, width: int) -> tuple[slice, slice]:
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return slice(top, top + side), slice(left, left + side)


def resize_image(image: np.ndarray, resolution: int | None) -> np.ndarray:
    """Center-square-crop and resize an (H, W, 3) uint8 image (bilinear)."""
    rows, cols = center_square(*image.shape[:2])
    image = image[rows, cols]
    if resolution is None or image.shape[0] == resolution:
        return image
    return np.asarray(Image.fromarray(np.ascontiguousarray(image))
                      .resize((resolution, resolution), Image.Resampling.BILINEAR))


def resize_masks(masks: np.ndarray, resolution: int | None) -> np.ndarray:
    """Center-square-crop and nearest-resize (K, H, W) masks, so they stay exact labels."""
    rows, cols = center_square(*masks.shape[1:])
    masks = masks[:, rows, cols]
    side = masks.shape[1]
    if resolution is None or side == resolution:
        return masks
    picks = ((np.arange(resolution) + 0.5) * side / resolution).astype(np.int64)
    return masks[:, picks][:, :, picks]


def to_model_range(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> float32 (3, H, W) in [-1, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
    return tensor / 127.5 - 1.0


class SceneDataset(Dataset, abc.ABC):
    """Base of the scene datasets: (image, masks) items and no factors."""

    name = "scenes"
    num_masks: int = 0

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def image_uint8(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 at the output resolution."""

    @abc.abstractmethod
    def masks_bool(self, index: int) -> np.ndarray:
        """(num_masks, H, W) bool at the output resolution."""

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} scenes")
        return to_model_range(self.image_uint8(index)), torch.from_numpy(self.masks_bool(index))

    def as_torch_dataset(self) -> Dataset:
        return self

    def _no_factors(self, *_args, **_kwargs):
        raise DatasetError(f"{self.name} is a multi-object scene dataset: it has instance masks "
                           f"but no ground-truth factors; use a factor dataset (shapes3d, mpi3d_toy, "
                           f"dsprites, cars3d) for the disentanglement metrics")

    factor_names = property(_no_factors)
    factors_num_values = property(_no_factors)
    num_factors = property(_no_factors)
    sample_factors = _no_factors
    sample_observations_from_factors = _no_factors
    sample = _no_factors
    sample_observations = _no_factors


# --- CLEVR in the published VCT layout -------------------------------------------------

CLEVR_LAYOUT = ("<data_dir>/clevr/images_clevr/*.png (train; optional masks.npz) and "
                "<data_dir>/clevr/clevr_test/images/*.png + clevr_test/masks.npz with 'masks' "
                "(N, K, H, W) bool, one mask per entity, mask 0 the background "
                "(the published code also accepts these two folders directly under <data_dir>)")
CLEVR_SPLITS = {"train": "images_clevr", "test": "clevr_test/images"}


def find_clevr_images(data_dir: str | Path, split: str) -> Path:
    if split not in CLEVR_SPLITS:
        raise DatasetError(f"unknown clevr split '{split}'; choose train or test")
    candidates = [Path(data_dir) / "clevr" / CLEVR_SPLITS[split], Path(data_dir) / CLEVR_SPLITS[split]]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.png")):
            return folder
    raise DatasetError(f"no clevr {split} PNGs in {candidates[0]} (nor {candidates[1]}); "
                       f"expected {CLEVR_LAYOUT}")


class ClevrScenes(SceneDataset):
    """PNG scenes sorted by file name; masks from masks.npz beside them (or the split folder).

    The published code resized the PNGs to 64 px; ``resolution`` does the same
    (center-square crop first, so non-square renders keep their aspect ratio).
    A split without masks.npz yields ``num_masks = 0`` (empty mask stacks).
    """

    name = "clevr"

    def __init__(self, image_folder: str | Path, resolution: int | None = 64):
        self.image_folder = Path(image_folder)
        self.paths = sorted(self.image_folder.glob("*.png"))
        if not self.paths:
            raise DatasetError(f"no PNG images in {self.image_folder}; expected {CLEVR_LAYOUT}")
        self.resolution = resolution
        self.masks = None
        masks_file = self._masks_file()
        if masks_file is not None:
            cache = cached_npz_member(masks_file, "masks", CLEVR_LAYOUT)
            self.masks = NpyRows(cache, CLEVR_LAYOUT)
            if len(self.masks.shape) != 4:
                raise DatasetError(f"{masks_file}: 'masks' has shape {self.masks.shape}; expected {CLEVR_LAYOUT}")
            if self.masks.shape[0] != len(self.paths):
                raise DatasetError(f"{masks_file}: {self.masks.shape[0]} mask sets for {len(self.paths)} "
                                   f"PNGs in {self.image_folder}; expected {CLEVR_LAYOUT}")
            self._check_mask_size(masks_file)
            self.num_masks = self.masks.shape[1]

    def _check_mask_size(self, masks_file: Path) -> None:
        """Masks must cover the PNGs pixel for pixel (both are then cropped and resized alike)."""
        try:
            with Image.open(self.paths[0]) as png:
                width, height = png.size
        except OSError:
            raise DatasetError(f"cannot read image {self.paths[0]}; expected {CLEVR_LAYOUT}") from None
        if tuple(self.masks.shape[2:4]) != (height, width):
            raise DatasetError(f"{masks_file}: masks are {self.masks.shape[2]}x{self.masks.shape[3]} but the "
                               f"PNGs in {self.image_folder} are {height}x{width}; the masks must have the "
                               f"images' resolution")

    def _masks_file(self) -> Path | None:
        # Published test split: clevr_test/images/*.png with clevr_test/masks.npz.
        for candidate in (self.image_folder / "masks.npz", self.image_folder.parent / "masks.npz"):
            if candidate.is_file():
                return candidate
        return None

    def __len__(self) -> int:
        return len(self.paths)

    def image_uint8(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:
            with Image.open(path) as png:
                image = np.asarray(png.convert("RGB"))
        except OSError:
            raise DatasetError(f"cannot read image {path}; expected {CLEVR_LAYOUT}") from None
        return resize_image(image, self.resolution)

    def masks_bool(self, index: int) -> np.ndarray:
        if self.masks is None:
            side = self.resolution or self.image_uint8(index).shape[0]
            return np.zeros((0, side, side), dtype=bool)
        return resize_masks(self.masks.read([index])[0].astype(bool), self.resolution)


def load_clevr(data_dir: str | Path, split: str = "train", resolution: int | None = 64) -> ClevrScenes:
    return ClevrScenes(find_clevr_images(data_dir, split), resolution)


# --- Objects Room as the published npz (VCT's object_room_npz) --------------------------

OBJECTS_ROOM_NPZ_LAYOUT = ("<data_dir>/objects_room/data.npz with 'images' (N, 64, 64, 3) uint8 "
                           "and optionally 'masks' (N, K, 64, 64[, 1]) uint8/bool")


class NpzScenes(SceneDataset):
    """Scenes in one .npz ('images', optional 'masks'), cached to readable .npy once."""

    name = "objects_room_npz"

    def __init__(self, npz_path: str | Path, resolution: int | None = None,
                 layout: str = OBJECTS_ROOM_NPZ_LAYOUT):
        npz_path = Path(npz_path)
        if not npz_path.is_file():
            raise DatasetError(f"scene file not found: {npz_path}; expected {layout}")
        self.resolution = resolution
        self.images = NpyRows(cached_npz_member(npz_path, "images", layout, expected_dtype=np.uint8), layout)
        if len(self.images.shape) != 4 or self.images.shape[3] != 3:
            raise DatasetError(f"{npz_path}: 'images' has shape {self.images.shape}; expected {layout}")
        self.masks = None
        if "masks" in npz_member_names(npz_path, layout):
            self.masks = NpyRows(cached_npz_member(npz_path, "masks", layout), layout)
            shape = self.masks.shape
            if shape[0] != self.images.shape[0] or len(shape) not in (4, 5) or shape[2:4] != self.images.shape[1:3]:
                raise DatasetError(f"{npz_path}: 'masks' has shape {shape} for images "
                                   f"{self.images.shape}; expected {layout}")
            self.num_masks = shape[1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def image_uint8(self, index: int) -> np.ndarray:
        return resize_image(self.images.read([index])[0], self.resolution)

    def masks_bool(self, index: int) -> np.ndarray:
        if self.masks is None:
            side = self.resolution or min(self.images.shape[1:3])
            return np.zeros((0, side, side), dtype=bool)
        masks = self.masks.read([index])[0]
        masks = masks.reshape(masks.shape[:3]) != 0
        return resize_masks(masks, self.resolution)


def load_objects_room_npz(data_dir: str | Path, resolution: int | None = None) -> NpzScenes:
    return NpzScenes(Path(data_dir) / "objects_room" / "data.npz", resolution)
