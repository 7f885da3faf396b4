"""Scene datasets: CLEVR PNG layout and DeepMind TFRecords read without TensorFlow."""
import numpy as np
import pytest
import torch

from datasets import DatasetError, GroundTruthData, SceneDataset, get_dataset
from datasets.multi_object_tfrecord import cache_paths
from .ds_fixtures import assert_one_line_error, write_clevr, write_multi_object


def as_uint8(image):
    return np.round((image.numpy().transpose(1, 2, 0) + 1) * 127.5).astype(np.uint8)


def test_clevr_test_split_images_and_masks_match_files(tmp_path):
    _, images, masks = write_clevr(tmp_path, n=4, k=5, size=16)
    scenes = get_dataset("clevr", str(tmp_path), split="test", resolution=None)
    assert isinstance(scenes, SceneDataset) and not isinstance(scenes, GroundTruthData)
    assert len(scenes) == 4 and scenes.num_masks == 5
    for i in range(4):
        image, got_masks = scenes[i]
        assert image.dtype == torch.float32 and image.shape == (3, 16, 16)
        assert -1.0 <= image.min() and image.max() <= 1.0
        np.testing.assert_array_equal(as_uint8(image), images[i])
        assert got_masks.dtype == torch.bool
        np.testing.assert_array_equal(got_masks.numpy(), masks[i])


def test_clevr_resized_masks_stay_exact_labels(tmp_path):
    _, _, masks = write_clevr(tmp_path, n=2, k=3, size=16)
    scenes = get_dataset("clevr", str(tmp_path), split="test", resolution=8)
    image, got = scenes[1]
    assert image.shape == (3, 8, 8) and got.shape == (3, 8, 8)
    np.testing.assert_array_equal(got.numpy(), masks[1][:, 1::2, 1::2])  # nearest: centre pixels
    assert torch.all(got.sum(0) == 1)


def test_clevr_published_layout_directly_under_data_dir(tmp_path):
    write_clevr(tmp_path, n=2, k=3, size=16, under_clevr=False)
    assert len(get_dataset("clever", str(tmp_path), split="test")) == 2  # published misspelling


def test_scenes_have_no_factors(tmp_path):
    write_clevr(tmp_path, n=2, k=3, size=16)
    scenes = get_dataset("clevr", str(tmp_path), split="test")
    for ask in (lambda: scenes.sample_factors(2, np.random.RandomState(0)),
                lambda: scenes.factors_num_values,
                lambda: scenes.sample_observations_from_factors(np.zeros((1, 1)), None)):
        with pytest.raises(DatasetError) as error:
            ask()
        assert_one_line_error(error.value, "clevr", "no ground-truth factors")


@pytest.mark.parametrize("one_byte_elements", [True, False])
def test_objects_room_tfrecord_read_without_tensorflow(tmp_path, one_byte_elements):
    path, images, labels = write_multi_object(tmp_path, "objects_room", "objects_room_train.tfrecords",
                                              n=3, k=7, h=64, w=64, one_byte_elements=one_byte_elements)
    scenes = get_dataset("objects_room", str(tmp_path), resolution=None)
    assert len(scenes) == 3 and scenes.num_masks == 7
    for i in range(3):
        image, masks = scenes[i]
        np.testing.assert_array_equal(as_uint8(image), images[i])
        np.testing.assert_array_equal(masks.numpy(), labels[i][None] == np.arange(7)[:, None, None])
    assert all(p.is_file() for p in cache_paths(path))


def test_clevr_with_masks_tfrecord_crop_and_partial_conversion(tmp_path):
    # Real files are 240 x 320 with 11 masks; the loader centre-crops to a square.
    path, images, labels = write_multi_object(tmp_path, "clevr_with_masks", "clevr_with_masks_train.tfrecords",
                                              n=3, k=11, h=240, w=320)
    scenes = get_dataset("clevr_with_masks", str(tmp_path), resolution=None, max_scenes=2)
    assert len(scenes) == 2 and scenes.num_masks == 11
    image, masks = scenes[1]
    assert image.shape == (3, 240, 240) and masks.shape == (11, 240, 240)
    np.testing.assert_array_equal(as_uint8(image), images[1][:, 40:280])
    np.testing.assert_array_equal(masks.numpy(), labels[1][None, :, 40:280] == np.arange(11)[:, None, None])
    assert all(p.is_file() for p in cache_paths(path, 2))
