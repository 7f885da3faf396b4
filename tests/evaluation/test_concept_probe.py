import numpy as np
import pytest

from evaluation.concept_probe import concept_probe, first_component


def test_a_factor_in_a_low_variance_direction_is_lost_by_the_first_component():
    rng = np.random.RandomState(0)
    n = 1200
    factors = rng.randint(0, 3, size=(n, 3))
    concepts = rng.normal(0, 0.05, size=(n, 2, 4))
    concepts[:, 0, 0] += 10.0 * factors[:, 0]  # token 0: factor a, large variance
    concepts[:, 0, 1] += 0.5 * factors[:, 1]   # ... and factor b, small variance
    concepts[:, 1, 2] += 1.0 * factors[:, 2]   # token 1: factor c alone
    result = concept_probe(concepts, factors, ["a", "b", "c"])
    assert all(result["all"][name] > 0.95 for name in "abc")
    assert result["best_token"]["a"][1] == 0 and result["best_token"]["a"][0] > 0.95
    assert result["best_token"]["b"][1] == 0 and result["best_token"]["b"][0] > 0.95
    assert result["best_component"]["a"][0] > 0.95
    assert result["best_component"]["c"][1] == 1 and result["best_component"]["c"][0] > 0.95
    assert result["best_component"]["b"][0] < 0.5  # chance is ~1/3: the component is a's


def test_first_component_is_the_largest_variance_direction():
    rng = np.random.RandomState(1)
    token = np.stack([rng.normal(0, 3, 500), rng.normal(0, 0.1, 500)], axis=1)
    projected = first_component(token)
    assert abs(np.corrcoef(projected, token[:, 0])[0, 1]) > 0.999


def test_concepts_must_be_three_dimensional():
    with pytest.raises(ValueError, match=r"\(N, C, D\)"):
        concept_probe(np.zeros((10, 4)), np.zeros((10, 1), dtype=int))
