"""Shared fixtures for the evaluation tests: toy ground-truth data and representations.

The "reference" representations and datasets below are the ones the golden
numbers in the test files were computed with, by running disentanglement_lib
1.5 (from PyPI, metric modules loaded with a gin shim instead of TensorFlow)
on exactly the same inputs and np.random.RandomState(0). Do not change them
without recomputing those numbers.
"""
import numpy as np
import pytest

from evaluation import toy_data

_MIX = np.random.RandomState(123).randn(3, 8).astype(np.float32)


def reference_rep32(observations):
    """8-dim float32 code: tanh of a fixed random mix of 3 factors, first 3 dims boosted."""
    factors = observations.reshape(len(observations), -1)
    code = factors @ _MIX
    code[:, :3] += 2 * factors
    return np.tanh(code).astype(np.float32)


def reference_rep64(observations):
    """float64 variant of reference_rep32 with a small nonlinear perturbation."""
    return (reference_rep32(observations).astype(np.float64)
            + 0.01 * np.sin(37 * observations.reshape(len(observations), -1).sum(1, keepdims=True)))


@pytest.fixture
def reference_cases():
    """(name, dataset, representation) pairs used for the disentanglement_lib golden values."""
    return [("identity", toy_data.IdentityObservations((4, 6, 5)), reference_rep32),
            ("noisy", toy_data.NoisyObservations((4, 6, 5), 0.05), reference_rep64)]


@pytest.fixture
def identity_data():
    return toy_data.IdentityObservations((10, 10, 10))


def identity_rep(observations):
    """The ground-truth factors themselves (perfectly disentangled)."""
    return toy_data.flat(observations)


def rotated_rep(observations):
    """Factors 0 and 1 mixed into two codes (f0 + f1, f0 - f1); factor 2 kept alone."""
    f = toy_data.flat(observations)
    return np.stack([f[:, 0] + f[:, 1], f[:, 0] - f[:, 1], f[:, 2]], axis=1)


def duplicated_rep(observations):
    f = toy_data.flat(observations)
    return np.hstack([f, f])


class RandomRep:
    """Codes independent of the observation (its own RandomState)."""

    def __init__(self, dims=3, seed=7):
        self.random_state = np.random.RandomState(seed)
        self.dims = dims

    def __call__(self, observations):
        return self.random_state.randn(len(observations), self.dims)


@pytest.fixture
def reps():
    return {"identity": identity_rep, "rotated": rotated_rep, "duplicated": duplicated_rep,
            "random": RandomRep()}
