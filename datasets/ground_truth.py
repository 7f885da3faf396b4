"""GroundTruthData: the interface the disentanglement metrics sample from.

Mirrors google-research/disentanglement_lib so that metric values are comparable:
``sample_factors`` draws one ``random_state.randint`` per factor, in factor order,
and ``sample`` draws the factors first and then their observations.
"""
from __future__ import annotations

import abc
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from . import factor_grid
from .errors import DatasetError


class GroundTruthData(abc.ABC):
    """A dataset whose every image is indexed by discrete ground-truth factors."""

    factor_names: tuple[str, ...] = ()

    @property
    @abc.abstractmethod
    def factors_num_values(self) -> list[int]:
        """Number of classes of each factor, in factor order."""

    @property
    @abc.abstractmethod
    def observation_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one observation."""

    @abc.abstractmethod
    def sample_observations_from_factors(self, factors: np.ndarray,
                                         random_state: np.random.RandomState) -> np.ndarray:
        """Observations float32 (num, H, W, C) in [0, 1] for factor classes (num, num_factors)."""

    @property
    def num_factors(self) -> int:
        return len(self.factors_num_values)

    @property
    def num_observations(self) -> int:
        """Size of the full factor grid (= rows of the file)."""
        return int(np.prod(self.factors_num_values))

    def sample_factors(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
        """int64 (num, num_factors); same random draws as disentanglement_lib."""
        factors = np.zeros((num, self.num_factors), dtype=np.int64)
        for i, size in enumerate(self.factors_num_values):
            factors[:, i] = random_state.randint(size, size=num)
        return factors

    def sample(self, num: int, random_state: np.random.RandomState):
        """(factors, observations): factors first, then the observations from them."""
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def sample_observations(self, num: int, random_state: np.random.RandomState) -> np.ndarray:
        return self.sample(num, random_state)[1]

    def factors_to_index(self, factors: np.ndarray) -> np.ndarray:
        """Row index (mixed radix, last factor fastest) of each factor combination."""
        return factor_grid.factors_to_index(factors, self.factors_num_values)

    def index_to_factors(self, indices: np.ndarray) -> np.ndarray:
        return factor_grid.index_to_factors(indices, self.factors_num_values)

    def as_torch_dataset(self) -> Dataset:
        """Item i = (image float32 CHW in [-1, 1], factor classes int64 (num_factors,))."""
        return GroundTruthTorchDataset(self)


class GroundTruthTorchDataset(Dataset):
    """Training view of a GroundTruthData: one item per factor combination."""

    def __init__(self, data: GroundTruthData):
        self.data = data

    def __len__(self) -> int:
        return self.data.num_observations

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        factors = self.data.index_to_factors(np.array([index]))
        # All factors are given, so no randomness is consumed; the state is a formality.
        image = self.data.sample_observations_from_factors(factors, np.random.RandomState(0))[0]
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return image * 2.0 - 1.0, torch.from_numpy(factors[0])


class IndexedGroundTruthData(GroundTruthData):
    """A ground-truth dataset stored as uint8 images in mixed-radix row order.

    Subclasses (one per file format) hand over the factor grid and a reader with
    ``read(indices) -> uint8 (n, H, W, C)``; sampling and indexing live here once.
    """

    def __init__(self, factor_sizes: Sequence[int], factor_names: Sequence[str],
                 images, observation_shape: Sequence[int], pixel_max: float = 255.0):
        if len(factor_sizes) != len(factor_names):
            raise DatasetError(f"{len(factor_sizes)} factor sizes but {len(factor_names)} names")
        self._factor_sizes = [int(s) for s in factor_sizes]
        self.factor_names = tuple(factor_names)
        self.images = images
        self._observation_shape = tuple(int(s) for s in observation_shape)
        # Divide (not multiply by 1/255) so values equal disentanglement_lib's bit for bit.
        self._pixel_max = np.float32(pixel_max)

    @property
    def factors_num_values(self) -> list[int]:
        return list(self._factor_sizes)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return self._observation_shape

    @property
    def pixel_max(self) -> np.float32:
        """The stored value of a white pixel (observations are stored / pixel_max)."""
        return self._pixel_max

    def stored_rows(self):
        """How many rows the file holds, and their dtype (uint8 rows can be held resident)."""
        return self.images.shape[0], np.dtype(self.images.dtype)

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Stored rows ``start`` to ``stop`` as (n, H, W, C), unconverted: a whole file is loaded
        in such blocks (one contiguous read each where the reader can)."""
        if hasattr(self.images, "read_block"):
            raw = self.images.read_block(start, stop)
        else:
            raw = self.images.read(np.arange(start, stop))
        return raw.reshape((stop - start,) + self._observation_shape)

    def sample_observations_from_factors(self, factors, random_state):
        indices = self.factors_to_index(factors)
        raw = self.images.read(indices)
        return raw.reshape((len(indices),) + self._observation_shape).astype(np.float32) / self._pixel_max

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(factors={dict(zip(self.factor_names, self._factor_sizes))}, "
                f"observation_shape={self._observation_shape})")

