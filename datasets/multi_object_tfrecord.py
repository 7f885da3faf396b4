"""DeepMind multi-object datasets (clevr_with_masks, objects_room) read without TensorFlow.

A .tfrecords file is a sequence of records: uint64 length, uint32 masked CRC,
payload, uint32 masked CRC; these files are GZIP-compressed. Each payload is a
serialized tf.train.Example, decoded here straight from the protobuf wire format
(no TensorFlow, no generated classes needed). 'image' is (H, W, 3) uint8 and 'mask' (K, H, W, 1) uint8,
each stored as a bytes_list: the published readers declare them as
FixedLenFeature(shape, tf.string) and decode_raw every element, i.e. one byte
per element; a single element holding all the bytes is accepted too.

A gzip stream cannot be indexed, so the first use converts the file once into
two readable .npy caches beside it: images (N, H, W, 3) and a per-pixel entity
label map (N, H, W) (masks are one-hot across entities, so the label map is
exact and K times smaller; a pixel in no mask is labelled 0, the background).
"""
from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .array_cache import NpyStreamWriter, is_fresh
from .errors import DatasetError
from .row_readers import NpyRows
from .scenes import SceneDataset, resize_image, resize_masks


@dataclass(frozen=True)
class TFRecordLayout:
    name: str
    file_name: str
    image_size: tuple[int, int]
    num_masks: int

    def describe(self) -> str:
        h, w = self.image_size
        return (f"<data_dir>/{self.name}/{self.file_name}: GZIP TFRecord of tf.train.Example with "
                f"'image' ({h}, {w}, 3) uint8 and 'mask' ({self.num_masks}, {h}, {w}, 1) uint8 bytes")


LAYOUTS = {
    "clevr_with_masks": TFRecordLayout("clevr_with_masks", "clevr_with_masks_train.tfrecords", (240, 320), 11),
    "objects_room": TFRecordLayout("objects_room", "objects_room_train.tfrecords", (64, 64), 7),
}


def iter_records(path: str | Path, layout: str, compressed: bool = True) -> Iterator[bytes]:
    """Payloads of a (GZIP) TFRecord file; a short read is reported as truncation."""
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            position = 0
            while True:
                head = stream.read(12)
                if not head:
                    return
                if len(head) < 12:
                    raise DatasetError(f"{path} is truncated (partial record header at record "
                                       f"{position}); expected {layout}")
                (length,) = struct.unpack("<Q", head[:8])
                payload = stream.read(length)
                footer = stream.read(4)
                if len(payload) != length or len(footer) != 4:
                    raise DatasetError(f"{path} is truncated (record {position} is incomplete); "
                                       f"expected {layout}")
                yield payload
                position += 1
    except FileNotFoundError:
        raise DatasetError(f"file not found: {path}; expected {layout}") from None
    except (OSError, EOFError, zlib.error):
        raise DatasetError(f"{path} is not a readable GZIP TFRecord file (truncated or "
                           f"corrupt?); expected {layout}") from None


class _WireError(Exception):
    """Malformed protobuf wire data (reported to users as a DatasetError)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise _WireError
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _length_fields(buf: bytes, start: int, end: int):
    """(field number, start, end) of each length-delimited field in buf[start:end]."""
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        field, wire_type = tag >> 3, tag & 7
        if wire_type == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _WireError
            yield field, pos, pos + length
            pos += length
        elif wire_type == 0:
            _, pos = _varint(buf, pos)
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
        else:
            raise _WireError


def _bytes_list(buf: bytes, start: int, end: int) -> np.ndarray:
    """Concatenated elements of a BytesList message occupying buf[start:end]."""
    body = np.frombuffer(buf, dtype=np.uint8, count=end - start, offset=start)
    # Fast path for the published files: one byte per element, encoded as 0x0A 0x01 <byte>.
    if body.size % 3 == 0 and np.all(body[0::3] == 0x0A) and np.all(body[1::3] == 0x01):
        return body[2::3]
    parts = [np.frombuffer(buf, np.uint8, count=e - s, offset=s)
             for field, s, e in _length_fields(buf, start, end) if field == 1]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


def bytes_features(payload: bytes) -> dict[str, np.ndarray]:
    """The bytes_list features of a serialized tf.train.Example, as uint8 arrays.

    Walks the protobuf wire format directly (Example.features -> map entries ->
    Feature.bytes_list) instead of building a million one-byte Python objects
    per scene through the protobuf classes.
    """
    features = {}
    for field, start, end in _length_fields(payload, 0, len(payload)):
        if field != 1:  # Example.features
            continue
        for entry_field, entry_start, entry_end in _length_fields(payload, start, end):
            if entry_field != 1:  # Features.feature map entry
                continue
            key, value = None, None
            for part, s, e in _length_fields(payload, entry_start, entry_end):
                if part == 1:
                    key = payload[s:e].decode("utf-8", "replace")
                elif part == 2:
                    value = (s, e)
            if key is None or value is None:
                continue
            for kind, s, e in _length_fields(payload, *value):
                if kind == 1:  # Feature.bytes_list
                    features[key] = _bytes_list(payload, s, e)
    return features


def parse_scene(payload: bytes, layout: TFRecordLayout, where: str):
    """(image (H, W, 3) uint8, label map (H, W) uint8) of one serialized Example."""
    try:
        features = bytes_features(payload)
    except _WireError:
        raise DatasetError(f"{where} is not a tf.train.Example; expected {layout.describe()}") from None
    h, w = layout.image_size
    k = layout.num_masks
    arrays = {}
    for key, expected in (("image", h * w * 3), ("mask", k * h * w)):
        if key not in features:
            raise DatasetError(f"{where} has no bytes feature '{key}' (found: "
                               f"{', '.join(sorted(features)) or 'none'}); expected {layout.describe()}")
        if features[key].size != expected:
            raise DatasetError(f"{where}: feature '{key}' holds {features[key].size} bytes, expected "
                               f"{expected}; expected {layout.describe()}")
        arrays[key] = features[key]
    image = arrays["image"].reshape(h, w, 3)
    masks = arrays["mask"].reshape(k, h, w) != 0
    if np.any(masks.sum(axis=0) > 1):
        raise DatasetError(f"{where}: masks overlap (a pixel belongs to two entities); "
                           f"expected one-hot entity masks; {layout.describe()}")
    return image, np.argmax(masks, axis=0).astype(np.uint8)


def cache_paths(path: Path, max_scenes: int | None = None) -> tuple[Path, Path]:
    """Cache files beside the TFRecord; a partial conversion gets its own names."""
    stem = path.name if max_scenes is None else f"{path.name}.first{max_scenes}"
    return path.with_name(stem + ".images.npy"), path.with_name(stem + ".labels.npy")


def convert(path: Path, layout: TFRecordLayout, max_scenes: int | None = None) -> None:
    """Decode the records once into the two .npy caches (progress bar, atomic rename)."""
    from tqdm import tqdm
    images_cache, labels_cache = cache_paths(path, max_scenes)
    h, w = layout.image_size
    with NpyStreamWriter(images_cache, np.uint8, (h, w, 3)) as images, \
            NpyStreamWriter(labels_cache, np.uint8, (h, w)) as labels:
        records = iter_records(path, layout.describe())
        for number, payload in enumerate(tqdm(records, total=max_scenes, unit="scene",
                                              desc=f"caching {path.name}")):
            if max_scenes is not None and number >= max_scenes:
                break
            image, label_map = parse_scene(payload, layout, f"{path} record {number}")
            images.write_rows(image[None])
            labels.write_rows(label_map[None])
    if not NpyRows(images_cache, layout.describe()).shape[0]:
        raise DatasetError(f"{path} holds no records; expected {layout.describe()}")


class TFRecordScenes(SceneDataset):
    """Scenes of a DeepMind multi-object TFRecord file (via the one-time cache)."""

    def __init__(self, path: str | Path, layout: TFRecordLayout, resolution: int | None = 64,
                 max_scenes: int | None = None):
        path = Path(path)
        self.name = layout.name
        if not path.is_file():
            raise DatasetError(f"file not found: {path}; expected {layout.describe()}")
        images_cache, labels_cache = cache_paths(path, max_scenes)
        if not (is_fresh(images_cache, [path]) and is_fresh(labels_cache, [path])):
            convert(path, layout, max_scenes)
        self.images = NpyRows(images_cache, layout.describe())
        self.labels = NpyRows(labels_cache, layout.describe())
        if self.images.shape[0] != self.labels.shape[0]:
            raise DatasetError(f"caches of {path} disagree; delete {images_cache} and {labels_cache}")
        self.num_masks = layout.num_masks
        self.resolution = resolution

    def __len__(self) -> int:
        return self.images.shape[0]

    def image_uint8(self, index: int) -> np.ndarray:
        return resize_image(self.images.read([index])[0], self.resolution)

    def masks_bool(self, index: int) -> np.ndarray:
        label_map = self.labels.read([index])[0]
        masks = label_map[None] == np.arange(self.num_masks, dtype=np.uint8)[:, None, None]
        return resize_masks(masks, self.resolution)


def load(data_dir: str | Path, name: str, resolution: int | None = 64,
         max_scenes: int | None = None) -> TFRecordScenes:
    layout = LAYOUTS[name]
    return TFRecordScenes(Path(data_dir) / name / layout.file_name, layout, resolution, max_scenes)
