import math

import numpy as np
import pytest

from evaluation.swap_effects import single_factor_concepts, swap_effects, swap_transfer

# 4 pairs, factors 0-2 and a 4th that never differs
SOURCE = np.array([[0, 0, 0, 5], [1, 1, 1, 5], [0, 1, 0, 5], [2, 0, 1, 5]])
TARGET = np.array([[1, 0, 1, 5], [0, 1, 0, 5], [1, 0, 0, 5], [2, 1, 1, 5]])


def swapped_taking(factors, pairs=None):
    """The sources with ``factors`` taken from the targets (in ``pairs`` only, if given)."""
    out = SOURCE.copy()
    rows = np.arange(len(SOURCE)) if pairs is None else np.array(pairs)
    for f in factors:
        out[rows, f] = TARGET[rows, f]
    return out


def test_transfer_by_hand():
    swapped = np.stack([swapped_taking([0]),          # concept 0 carries factor 0
                        swapped_taking([1, 2]),       # concept 1 carries factors 1 and 2
                        SOURCE.copy(),                # concept 2 changes nothing
                        swapped_taking([0], [0])])    # concept 3 carries factor 0 in one of 3 pairs
    transfer = swap_transfer(SOURCE, TARGET, swapped)
    expected = np.array([[1, 0, 0, math.nan], [0, 1, 1, math.nan], [0, 0, 0, math.nan],
                         [1 / 3, 0, 0, math.nan]])
    np.testing.assert_allclose(transfer, expected)
    assert single_factor_concepts(transfer) == {0: 0}
    result = swap_effects(SOURCE, TARGET, swapped, ["a", "b", "c", "d"])
    assert result["single_factor_concepts"] == {"0": "a"} and result["distinct_factors"] == 1
    assert result["transfer"][0][3] is None


def test_a_perfectly_disentangled_set_carries_every_factor_once():
    swapped = np.stack([swapped_taking([f]) for f in range(3)] + [SOURCE.copy()])
    result = swap_effects(SOURCE, TARGET, swapped)
    assert result["single_factor_concepts"] == {"0": "factor_0", "1": "factor_1", "2": "factor_2"}
    assert result["distinct_factors"] == 3


def test_two_concepts_on_one_factor_count_it_once():
    swapped = np.stack([swapped_taking([1]), swapped_taking([1])])
    assert swap_effects(SOURCE, TARGET, swapped)["distinct_factors"] == 1


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="swapped"):
        swap_transfer(SOURCE, TARGET, SOURCE)
