"""Real-format loaders against tiny files: images, factor classes and row order."""
import os

import numpy as np
import pytest
import torch

from datasets import DatasetError, get_dataset
from .ds_fixtures import (assert_one_line_error, car_colour, grid, write_cars, write_dsprites,
                          write_mpi3d, write_shapes3d)


def check_against_file(data, images, pixel_max=255):
    """Every row i of the file is the observation of the factors whose mixed radix is i."""
    factors = grid(data.factors_num_values)
    observations = data.sample_observations_from_factors(factors, np.random.RandomState(0))
    assert observations.dtype == np.float32
    np.testing.assert_array_equal(observations, images.reshape(observations.shape).astype(np.float32) / np.float32(pixel_max))
    # random, repeated and unsorted requests come back in request order
    picks = np.array([5, 1, 5, len(factors) - 1, 0, 1])
    again = data.sample_observations_from_factors(factors[picks], np.random.RandomState(0))
    np.testing.assert_array_equal(again, observations[picks])


def test_shapes3d_reads_h5_lazily_with_grid_from_labels(tmp_path):
    _, images = write_shapes3d(tmp_path, factor_sizes=(2, 3, 2, 2, 2, 3), size=8)
    data = get_dataset("shapes3d", str(tmp_path))
    assert data.factors_num_values == [2, 3, 2, 2, 2, 3]
    assert data.factor_names[0] == "floor_hue" and data.observation_shape == (8, 8, 3)
    check_against_file(data, images)
    image, factors = data.as_torch_dataset()[37]
    assert factors.tolist() == list(grid(data.factors_num_values)[37])
    torch.testing.assert_close(image, torch.from_numpy(images[37].transpose(2, 0, 1)).float() / 255 * 2 - 1)


def test_shapes3d_sample_uses_random_state_like_disentanglement_lib(tmp_path):
    _, images = write_shapes3d(tmp_path)
    data = get_dataset("shapes3d", str(tmp_path))
    state = np.random.RandomState(0)
    expected = np.stack([state.randint(s, size=4) for s in data.factors_num_values], axis=1)
    factors, observations = data.sample(4, np.random.RandomState(0))
    np.testing.assert_array_equal(factors, expected)
    np.testing.assert_array_equal(observations, images[expected @ [72, 24, 12, 6, 3, 1]] / np.float32(255))


def test_dsprites_one_channel_zero_one_and_pickled_metadata_untouched(tmp_path):
    _, imgs = write_dsprites(tmp_path, factor_sizes=(1, 3, 2, 2, 2, 2))
    data = get_dataset("dsprites", str(tmp_path))
    assert data.factors_num_values == [1, 3, 2, 2, 2, 2]
    assert data.observation_shape == (64, 64, 1)
    check_against_file(data, imgs[..., None], pixel_max=1)
    image, _ = data.as_torch_dataset()[3]
    assert image.shape == (1, 64, 64) and set(image.unique().tolist()) <= {-1.0, 1.0}


def test_npz_cache_is_made_once_and_reused(tmp_path):
    path, images = write_mpi3d(tmp_path, 6 * 1 * 2 * 1 * 1 * 1 * 2)
    sizes = [6, 1, 2, 1, 1, 1, 2]
    first = get_dataset("mpi3d_toy", str(tmp_path), factor_sizes=sizes)
    cache = path.with_name("mpi3d_toy.images.npy")
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    second = get_dataset("mpi3d_toy", str(tmp_path), factor_sizes=sizes)
    assert cache.stat().st_mtime_ns == stamp
    check_against_file(second, images)
    assert first.factor_names[-1] == "vertical_axis"


def test_mpi3d_published_folder_and_fixed_grid(tmp_path):
    write_mpi3d(tmp_path, 10, folder="mpi_toy")  # the published VCT folder name
    with pytest.raises(DatasetError) as error:
        get_dataset("mpi_toy", str(tmp_path))
    assert_one_line_error(error.value, "10 images", "[6, 6, 2, 3, 3, 40, 40]", "factor_sizes")
    data = get_dataset("mpi_toy", str(tmp_path), factor_sizes=[5, 1, 2, 1, 1, 1, 1])
    assert data.num_observations == 10


def test_cars3d_factors_elevation_azimuth_object_from_mat_files(tmp_path):
    write_cars(tmp_path, objects=3, azimuths=4, elevations=2, size=16)
    data = get_dataset("cars3d", str(tmp_path))
    assert data.factors_num_values == [2, 4, 3] and data.observation_shape == (64, 64, 3)
    factors = grid([2, 4, 3])
    observations = data.sample_observations_from_factors(factors, np.random.RandomState(0))
    for (elevation, azimuth, obj), image in zip(factors, observations):
        # each view was a constant colour encoding its factors; resizing keeps it
        expected = car_colour(obj, azimuth, elevation) / np.float32(255)
        np.testing.assert_allclose(image, np.broadcast_to(expected, image.shape), atol=1 / 255)


def test_cars3d_cache_rebuilt_when_a_car_is_added(tmp_path):
    folder = write_cars(tmp_path, objects=2, azimuths=2, elevations=1, size=8, subfolder="data")
    assert get_dataset("cars3d", str(tmp_path)).factors_num_values == [1, 2, 2]
    write_cars(tmp_path, objects=3, azimuths=2, elevations=1, size=8, subfolder="data")
    os.utime(folder / "car_003_mesh.mat", (2e9, 2e9))  # newer than the cache
    assert get_dataset("cars3d", str(tmp_path)).factors_num_values == [1, 2, 3]


def test_torch_view_works_in_dataloader_workers(tmp_path):
    _, images = write_shapes3d(tmp_path)
    view = get_dataset("shapes3d", str(tmp_path)).as_torch_dataset()
    loader = torch.utils.data.DataLoader(view, batch_size=16, num_workers=2)
    batches = [image for image, _ in loader]
    got = torch.cat(batches)
    expected = torch.from_numpy(images.transpose(0, 3, 1, 2)).float() / 255 * 2 - 1
    torch.testing.assert_close(got, expected)


def test_unknown_name_and_option_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError) as error:
        get_dataset("shapes4d", str(tmp_path))
    assert_one_line_error(error.value, "shapes4d", "shapes3d")
    write_shapes3d(tmp_path)
    with pytest.raises(DatasetError) as error:
        get_dataset("shapes3d", str(tmp_path), factor_sizes=[1])
    assert_one_line_error(error.value, "factor_sizes")
    with pytest.raises(DatasetError) as error:
        get_dataset("shapes3d", str(tmp_path / "nowhere"))
    assert_one_line_error(error.value, "nowhere", "does not exist")


def test_gin_bindings_supply_name_and_data_dir(tmp_path):
    import gin
    write_shapes3d(tmp_path)
    gin.clear_config()
    try:
        gin.parse_config(["get_dataset.name = 'shapes3d'", f"get_dataset.data_dir = '{tmp_path}'"])
        assert get_dataset().factors_num_values == [2, 3, 2, 2, 2, 3]
    finally:
        gin.clear_config()
