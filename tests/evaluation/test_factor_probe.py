"""The linear factor probe on representations whose answer is known."""
import numpy as np
import pytest

from evaluation.factor_probe import factor_probe


def _factors(n=600, sizes=(3, 4), seed=0):
    rng = np.random.RandomState(seed)
    return np.stack([rng.randint(0, s, n) for s in sizes], axis=1)


def test_one_hot_factors_are_read_perfectly():
    factors = _factors()
    features = np.concatenate([np.eye(s)[factors[:, j]] for j, s in enumerate((3, 4))], axis=1)
    result = factor_probe(features, factors, ["a", "b"])
    assert result["accuracy"] == {"a": 1.0, "b": 1.0}
    assert result["min_accuracy"] == 1.0
    assert (result["num_train"], result["num_test"]) == (480, 120)


def test_a_missing_factor_stays_near_chance():
    factors = _factors(n=2000)
    features = np.eye(3)[factors[:, 0]] + 0.01 * np.random.RandomState(1).randn(2000, 3)  # only factor 0
    result = factor_probe(features, factors, ["kept", "missing"])
    assert result["accuracy"]["kept"] == 1.0
    assert result["accuracy"]["missing"] < result["chance"]["missing"] + 0.08
    assert result["min_accuracy"] == result["accuracy"]["missing"]


def test_constant_features_and_factors_stay_finite():
    factors = np.zeros((50, 1), dtype=int)
    result = factor_probe(np.ones((50, 4)), factors)
    assert result["accuracy"] == {"factor_0": 1.0}


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="factors must be"):
        factor_probe(np.ones((10, 2)), np.zeros((9, 1), dtype=int))
    with pytest.raises(ValueError, match="train_fraction"):
        factor_probe(np.ones((10, 2)), np.zeros((10, 1), dtype=int), train_fraction=1.5)
