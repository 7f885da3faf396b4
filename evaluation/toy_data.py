"""Tiny in-memory ground-truth datasets for tests and smoke runs of the metrics.

They follow the ground-truth interface the metrics duck-type (see
``evaluation.metrics.utils.GROUND_TRUTH_ATTRIBUTES``) and draw factors the way
``datasets.ground_truth.GroundTruthData`` and disentanglement_lib do: one
``random_state.randint(size, size=num)`` per factor, in factor order.
Observations are small float vectors shaped (num, 1, 1, C), so a
representation function can be any function of the factors.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class ToyGroundTruthData:
    """Base: discrete factors with the given sizes; subclasses define observations."""

    def __init__(self, factor_sizes: Sequence[int] = (10, 10, 10)):
        self.factors_num_values = [int(size) for size in factor_sizes]
        self.factor_names = tuple(f"factor_{i}" for i in range(len(self.factors_num_values)))

    @property
    def num_factors(self) -> int:
        return len(self.factors_num_values)

    @property
    def observation_shape(self):
        return (1, 1, self.num_factors)

    def sample_factors(self, num, random_state):
        factors = np.zeros((num, self.num_factors), dtype=np.int64)
        for i, size in enumerate(self.factors_num_values):
            factors[:, i] = random_state.randint(size, size=num)
        return factors

    def sample_observations_from_factors(self, factors, random_state):
        raise NotImplementedError

    def sample(self, num, random_state):
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def sample_observations(self, num, random_state):
        return self.sample(num, random_state)[1]


class IdentityObservations(ToyGroundTruthData):
    """Observation = the factor classes scaled to [0, 1] (float32, shape (num, 1, 1, F))."""

    def sample_observations_from_factors(self, factors, random_state):
        scale = np.maximum(np.asarray(self.factors_num_values, dtype=np.float32) - 1, 1)
        values = np.asarray(factors, dtype=np.float32) / scale
        return values.reshape(len(factors), 1, 1, self.num_factors)


class NoisyObservations(IdentityObservations):
    """Identity observations plus Gaussian noise drawn from the metric's RandomState.

    Like disentanglement_lib's noisy datasets, sampling observations consumes
    random numbers, which tests that metrics pass the random state through.
    """

    def __init__(self, factor_sizes: Sequence[int] = (10, 10, 10), noise: float = 0.01):
        super().__init__(factor_sizes)
        self.noise = float(noise)

    def sample_observations_from_factors(self, factors, random_state):
        clean = super().sample_observations_from_factors(factors, random_state)
        return (clean + self.noise * random_state.randn(*clean.shape)).astype(np.float32)


def flat(observations) -> np.ndarray:
    """(num, ...) observations -> (num, features) float64 rows."""
    observations = np.asarray(observations)
    return observations.reshape(len(observations), -1).astype(np.float64)


class NoGroundTruthFactors:
    """Stands for a multi-object scene dataset: images and masks, no factors."""

    observation_shape = (8, 8, 3)

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return np.zeros(self.observation_shape, np.float32), np.zeros((2, 8, 8), bool)
