"""GroundTruthData sampling order, factor-grid helpers and the torch view."""
import numpy as np
import pytest
import torch

from datasets import DatasetError, GroundTruthData
from datasets.factor_grid import classes_from_labels, factor_bases, factors_to_index, index_to_factors
from .ds_fixtures import assert_one_line_error, grid


class TinyData(GroundTruthData):
    """Observation = the factor classes painted into a 2x2 image (readable in tests)."""

    factor_names = ("a", "b", "c")

    @property
    def factors_num_values(self):
        return [3, 1, 4]

    @property
    def observation_shape(self):
        return (2, 2, 3)

    def sample_observations_from_factors(self, factors, random_state):
        obs = np.zeros((len(factors), 2, 2, 3), np.float32)
        obs[:] = (factors[:, None, None, :] / 10.0)
        return obs


def test_sample_factors_draws_one_randint_per_factor_in_order():
    data = TinyData()
    expected_state = np.random.RandomState(7)
    expected = np.stack([expected_state.randint(3, size=5), expected_state.randint(1, size=5),
                         expected_state.randint(4, size=5)], axis=1)
    factors = data.sample_factors(5, np.random.RandomState(7))
    assert factors.dtype == np.int64 and factors.shape == (5, 3)
    np.testing.assert_array_equal(factors, expected)


def test_sample_is_factors_then_observations_from_them():
    data = TinyData()
    factors, observations = data.sample(6, np.random.RandomState(3))
    np.testing.assert_array_equal(factors, data.sample_factors(6, np.random.RandomState(3)))
    np.testing.assert_allclose(observations[:, 0, 0], factors / 10.0)
    # sample_observations consumes the state exactly as sample does
    np.testing.assert_array_equal(data.sample_observations(6, np.random.RandomState(3)), observations)


def test_mixed_radix_index_last_factor_fastest():
    sizes = [3, 1, 4]
    np.testing.assert_array_equal(factor_bases(sizes), [4, 4, 1])
    all_factors = grid(sizes)
    np.testing.assert_array_equal(factors_to_index(all_factors, sizes), np.arange(12))
    np.testing.assert_array_equal(index_to_factors(np.arange(12), sizes), all_factors)
    assert factors_to_index(np.array([[2, 0, 3]]), sizes)[0] == 11


def test_out_of_range_factors_are_a_clear_error():
    with pytest.raises(DatasetError) as error:
        TinyData().factors_to_index(np.array([[3, 0, 0]]))
    assert_one_line_error(error.value, "out of range")


def test_torch_view_item_is_image_in_minus_one_one_and_factor_classes():
    view = TinyData().as_torch_dataset()
    assert len(view) == 12
    image, factors = view[11]
    assert image.shape == (3, 2, 2) and image.dtype == torch.float32
    assert factors.dtype == torch.int64 and factors.tolist() == [2, 0, 3]
    torch.testing.assert_close(image[:, 0, 0], torch.tensor([0.2, 0.0, 0.3]) * 2 - 1)
    with pytest.raises(IndexError):
        view[12]


def test_grid_derived_from_float_labels():
    sizes = [2, 3, 2]
    values = [np.array([0.1, 0.7]), np.array([-30.0, 0.0, 30.0]), np.array([0.75, 1.25])]
    labels = np.stack([values[i][grid(sizes)[:, i]] for i in range(3)], axis=1)
    derived, classes = classes_from_labels(labels, "x.h5")
    assert derived == sizes
    np.testing.assert_array_equal(classes, grid(sizes))


def test_labels_with_missing_rows_or_wrong_order_are_rejected():
    labels = grid([2, 3]).astype(float)
    with pytest.raises(DatasetError) as error:
        classes_from_labels(labels[:-1], "x.h5")
    assert_one_line_error(error.value, "x.h5", "5 rows", "[2, 3] = 6")
    with pytest.raises(DatasetError) as error:
        classes_from_labels(labels[::-1], "x.h5")
    assert_one_line_error(error.value, "x.h5", "mixed-radix order")
