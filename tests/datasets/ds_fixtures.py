"""Writers of tiny, format-exact dataset files for the datasets tests.

Each writer returns the arrays it wrote, so tests compare loader output with the
file contents rather than with the loader's own logic.
"""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image


def grid(factor_sizes):
    """All factor combinations (N, F) in mixed-radix row order (last factor fastest)."""
    return np.array(np.unravel_index(np.arange(int(np.prod(factor_sizes))), factor_sizes)).T


def write_shapes3d(data_dir, factor_sizes=(2, 3, 2, 2, 2, 3), size=8, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    n = int(np.prod(factor_sizes))
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    if labels is None:
        # Published value scales: hues k/n, scale 0.75..1.25, shape 0..3, orientation -30..30.
        values = [np.arange(s) / s for s in factor_sizes[:3]] + [
            np.linspace(0.75, 1.25, factor_sizes[3]), np.arange(factor_sizes[4], dtype=float),
            np.linspace(-30, 30, factor_sizes[5])]
        classes = grid(factor_sizes)
        labels = np.stack([values[i][classes[:, i]] for i in range(6)], axis=1)
    path = Path(data_dir) / "shapes3d" / "3dshapes.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("labels", data=labels)
    return path, images


def write_dsprites(data_dir, factor_sizes=(1, 3, 2, 2, 2, 2), seed=0, with_metadata=True):
    rng = np.random.default_rng(seed)
    n = int(np.prod(factor_sizes))
    imgs = rng.integers(0, 2, (n, 64, 64), dtype=np.uint8)
    classes = grid(factor_sizes)
    values = classes.astype(np.float64) * 0.5 + 0.1
    arrays = {"imgs": imgs, "latents_classes": classes, "latents_values": values}
    if with_metadata:  # the published file carries a pickled dict that must never be loaded
        arrays["metadata"] = np.array({"latents_sizes": np.array(factor_sizes)}, dtype=object)
    path = Path(data_dir) / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path, imgs


def write_mpi3d(data_dir, n, folder="mpi3d_toy", variant="mpi3d_toy", seed=0, compressed=True):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    path = Path(data_dir) / folder / f"{variant}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, images=images)
    return path, images


def car_colour(obj, azimuth, elevation):
    """The constant colour of each tiny car view: encodes its three factors."""
    return np.array([obj * 40 + 10, azimuth * 50 + 5, elevation * 100 + 20], dtype=np.uint8)


def write_cars(data_dir, objects=3, azimuths=4, elevations=2, size=16, subfolder=""):
    folder = Path(data_dir) / "cars3d" / subfolder
    folder.mkdir(parents=True, exist_ok=True)
    for obj in range(objects):
        im = np.zeros((size, size, 3, azimuths, elevations), dtype=np.uint8)
        for a in range(azimuths):
            for e in range(elevations):
                im[:, :, :, a, e] = car_colour(obj, a, e)
        scipy.io.savemat(folder / f"car_{obj + 1:03d}_mesh.mat", {"im": im})
    return folder


def random_label_maps(rng, n, k, h, w):
    return rng.integers(0, k, (n, h, w))


def write_clevr(data_dir, n=5, k=4, size=16, split_folder="clevr_test", seed=0, under_clevr=True):
    """Published test layout: <split>/images/*.png + <split>/masks.npz ('masks' (N, K, H, W) bool)."""
    rng = np.random.default_rng(seed)
    root = Path(data_dir) / "clevr" if under_clevr else Path(data_dir)
    image_folder = root / split_folder / "images" if split_folder == "clevr_test" else root / split_folder
    image_folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = random_label_maps(rng, n, k, size, size)
    masks = labels[:, None] == np.arange(k)[None, :, None, None]
    for i in range(n):
        Image.fromarray(images[i]).save(image_folder / f"CLEVR_{i:06d}.png")
    masks_path = (root / split_folder / "masks.npz") if split_folder == "clevr_test" else image_folder / "masks.npz"
    np.savez_compressed(masks_path, masks=masks)
    return image_folder, images, masks


def tf_example(features: dict) -> bytes:
    """Serialize a tf.train.Example with the tfrecord package (independent of our reader)."""
    from tfrecord.writer import TFRecordWriter
    return TFRecordWriter.serialize_tf_example(features)


def framed(payloads) -> bytes:
    """TFRecord framing (length, masked CRC, payload, masked CRC) of serialized records."""
    import struct
    from tfrecord.writer import TFRecordWriter
    out = io.BytesIO()
    for payload in payloads:
        length = struct.pack("<Q", len(payload))
        out.write(length + TFRecordWriter.masked_crc(length) + payload + TFRecordWriter.masked_crc(payload))
    return out.getvalue()


def write_multi_object(data_dir, name, file_name, n, k, h, w, seed=0, one_byte_elements=True):
    """A GZIP TFRecord in the DeepMind layout: 'image' (H,W,3), 'mask' (K,H,W,1) uint8 bytes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    labels = random_label_maps(rng, n, k, h, w)
    payloads = []
    for i in range(n):
        masks = (labels[i][None] == np.arange(k)[:, None, None]).astype(np.uint8) * 255
        if one_byte_elements:  # as the published readers imply: one byte per bytes_list element
            image_value = [bytes([b]) for b in images[i].ravel()]
            mask_value = [bytes([b]) for b in masks[..., None].ravel()]
        else:
            image_value, mask_value = images[i].tobytes(), masks.tobytes()
        payloads.append(tf_example({
            "image": (image_value, "byte"), "mask": (mask_value, "byte"),
            "visibility": (np.ones(k, np.float32), "float"),
            "color": ([bytes([3])] * k, "byte"),
        }))
    path = Path(data_dir) / name / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(framed(payloads))
    return path, images, labels


def assert_one_line_error(error, *fragments):
    """A user-facing error: one line, no chained traceback, naming the given fragments."""
    message = str(error)
    assert "\n" not in message, message
    assert error.__cause__ is None and (error.__suppress_context__ or error.__context__ is None), \
        f"error chains a lower-level traceback: {error.__context__!r}"
    for fragment in fragments:
        assert str(fragment) in message, f"{fragment!r} not in {message!r}"


def assert_single_factor_changes_show(renderer, factor_sizes, bases=8, min_change=8):
    """From ``bases`` random grid points, sweeping any one factor gives images that differ
    pairwise by at least ``min_change`` grey levels somewhere (every factor is visible)."""
    points = np.random.RandomState(0).randint(factor_sizes, size=(bases, len(factor_sizes)))
    for factor, count in enumerate(factor_sizes):
        for base in points:
            sweep = np.repeat(base[None], count, axis=0)
            sweep[:, factor] = np.arange(count)
            images = renderer.render(sweep).astype(np.int16).reshape(count, -1)
            difference = np.abs(images[:, None] - images[None]).max(-1)
            difference[np.arange(count), np.arange(count)] = 255
            assert difference.min() >= min_change, (factor, base)
