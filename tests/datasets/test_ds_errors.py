"""Missing files, wrong keys, wrong shapes and truncated files: one clear line each."""
import gzip

import h5py
import numpy as np
import pytest
import scipy.io

from datasets import DatasetError, get_dataset
from .ds_fixtures import (assert_one_line_error, write_cars, write_clevr, write_dsprites, write_mpi3d,
                          write_multi_object, write_shapes3d)


def truncate(path, keep_fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


def error_of(name, data_dir, **options):
    with pytest.raises(DatasetError) as error:
        get_dataset(name, str(data_dir), **options)
    return error.value


# --- Shapes3D (h5) ---------------------------------------------------------------

def test_shapes3d_missing_file(tmp_path):
    error = error_of("shapes3d", tmp_path)
    assert_one_line_error(error, tmp_path / "shapes3d" / "3dshapes.h5", "'images' (N, H, W, 3) uint8", "'labels' (N, 6)")


def test_shapes3d_wrong_key(tmp_path):
    path = tmp_path / "shapes3d" / "3dshapes.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        f["imgs"] = np.zeros((2, 4, 4, 3), np.uint8)
        f["labels"] = np.zeros((2, 6))
    assert_one_line_error(error_of("shapes3d", tmp_path), path, "no dataset 'images'", "found: imgs, labels")


def test_shapes3d_wrong_shape(tmp_path):
    path = tmp_path / "shapes3d" / "3dshapes.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((2, 4, 4), np.uint8)
        f["labels"] = np.zeros((2, 6))
    assert_one_line_error(error_of("shapes3d", tmp_path), path, "(2, 4, 4)", "(N, H, W, 3) uint8")


def test_shapes3d_labels_not_a_full_grid(tmp_path):
    labels = np.zeros((144, 6))
    labels[:, 0] = np.arange(144) % 5  # a 5 x 1 x ... grid cannot hold 144 rows
    path, _ = write_shapes3d(tmp_path, labels=labels)
    assert_one_line_error(error_of("shapes3d", tmp_path), path, "144 rows", "[5, 1, 1, 1, 1, 1] = 5")


def test_shapes3d_truncated_file(tmp_path):
    path, _ = write_shapes3d(tmp_path, size=32)
    truncate(path)
    assert_one_line_error(error_of("shapes3d", tmp_path), path, "truncated")


# --- npz (dSprites, MPI3D) --------------------------------------------------------

def test_dsprites_missing_and_wrong_key(tmp_path):
    assert_one_line_error(error_of("dsprites", tmp_path),
                          tmp_path / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                          "'imgs' (N, 64, 64) uint8", "'latents_classes' (N, 6)")
    path, _ = write_dsprites(tmp_path)
    arrays = dict(np.load(path, allow_pickle=True))
    arrays["images"] = arrays.pop("imgs")
    np.savez(path, **arrays)
    assert_one_line_error(error_of("dsprites", tmp_path), path, "no array 'imgs'", "images")


def test_dsprites_wrong_shape(tmp_path):
    path, _ = write_dsprites(tmp_path)
    arrays = dict(np.load(path, allow_pickle=True))
    arrays["latents_classes"] = arrays["latents_classes"][:, :5]
    np.savez(path, **arrays)
    assert_one_line_error(error_of("dsprites", tmp_path), path, "'latents_classes' has shape (48, 5)")


@pytest.mark.parametrize("compressed", [True, False])
def test_mpi3d_truncated_npz(tmp_path, compressed):
    path, _ = write_mpi3d(tmp_path, 8, compressed=compressed)
    truncate(path, 0.6)
    error = error_of("mpi3d_toy", tmp_path, factor_sizes=[2, 2, 2, 1, 1, 1, 1])
    assert_one_line_error(error, path)
    assert "truncated" in str(error) or "not a readable .npz" in str(error)
    assert not list(path.parent.glob("*.npy")) and not list(path.parent.glob("*.tmp"))


def test_mpi3d_wrong_image_shape(tmp_path):
    path = tmp_path / "mpi3d_toy" / "mpi3d_toy.npz"
    path.parent.mkdir()
    np.savez(path, images=np.zeros((4, 64, 64), np.uint8))
    error = error_of("mpi3d_toy", tmp_path, factor_sizes=[4, 1, 1, 1, 1, 1, 1])
    assert_one_line_error(error, path, "(4, 64, 64)", "'images' (N, 64, 64, 3) uint8")


# --- Cars3D (.mat) ---------------------------------------------------------------

def test_cars3d_missing_folder(tmp_path):
    assert_one_line_error(error_of("cars3d", tmp_path), tmp_path / "cars3d", "'im' of shape (H, W, 3, azimuths, elevations)")


def test_cars3d_wrong_key_and_truncated(tmp_path):
    folder = write_cars(tmp_path, objects=2, azimuths=2, elevations=1, size=8)
    scipy.io.savemat(folder / "car_002_mesh.mat", {"image": np.zeros((8, 8, 3, 2, 1), np.uint8)})
    assert_one_line_error(error_of("cars3d", tmp_path), folder / "car_002_mesh.mat", "no variable 'im'", "image")
    write_cars(tmp_path, objects=2, azimuths=2, elevations=1, size=8)
    truncate(folder / "car_002_mesh.mat", 0.5)
    assert_one_line_error(error_of("cars3d", tmp_path), folder / "car_002_mesh.mat", "truncated")
    assert not (folder / "cars3d_64x64.npy").exists()


# --- scenes ------------------------------------------------------------------------

def test_clevr_missing_and_mismatched_masks(tmp_path):
    assert_one_line_error(error_of("clevr", tmp_path, split="test"), tmp_path / "clevr" / "clevr_test/images",
                          "masks.npz with 'masks' (N, K, H, W) bool")
    write_clevr(tmp_path, n=3)
    np.savez_compressed(tmp_path / "clevr" / "clevr_test" / "masks.npz", masks=np.zeros((2, 4, 16, 16), bool))
    assert_one_line_error(error_of("clevr", tmp_path, split="test"), "2 mask sets for 3 PNGs")


def test_tfrecord_missing_truncated_and_wrong_shape(tmp_path):
    name, file_name = "objects_room", "objects_room_train.tfrecords"
    assert_one_line_error(error_of(name, tmp_path), tmp_path / name / file_name,
                          "'image' (64, 64, 3) uint8", "'mask' (7, 64, 64, 1)")
    path, _, _ = write_multi_object(tmp_path, name, file_name, n=3, k=7, h=64, w=64)
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) - 100]))  # last record cut short
    assert_one_line_error(error_of(name, tmp_path), path, "truncated")
    path.write_bytes(path.read_bytes()[:200])  # the gzip stream itself cut short
    assert_one_line_error(error_of(name, tmp_path), path)
    assert not list(path.parent.glob("*.npy")) and not list(path.parent.glob("*.tmp"))
    write_multi_object(tmp_path, name, file_name, n=2, k=7, h=32, w=32)
    assert_one_line_error(error_of(name, tmp_path), path, "'image' holds 3072 bytes, expected 12288")
