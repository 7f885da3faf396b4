"""The on-disk cache of the CLIP features of dataset images, so that after the first epoch
only the re-tokenised images of the disentangling loss run the ViT."""
import hashlib
import json
import os
import uuid
import zlib
from pathlib import Path

import numpy as np
import torch

from common.atomic import atomic_write
from models.clip_tokenizer import CLIPImageTokenizer
from training.errors import UserError, first_line


def image_fingerprints(images) -> np.ndarray:
    """A 64-bit content hash per image (B,) uint64, of the image quantised to 16 bits per value
    (so the same dataset image read through another code path hashes the same)."""
    levels = ((images.detach().float().clamp(-1, 1) + 1) * 32767.5).round().to(torch.int32)
    levels = levels.cpu().numpy().astype(np.uint16)
    return np.array([int.from_bytes(hashlib.blake2b(image.tobytes(), digest_size=8).digest(), "little")
                     for image in levels], dtype=np.uint64)


def _row_check(feature):
    """Non-zero checksum of one cached feature row (0 marks an empty row)."""
    return zlib.crc32(feature.tobytes()) | (1 << 32)


def _private_tmp(path: Path):
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def _open_shared_array(path: Path, shape, dtype):
    """A .npy memory map shared by every process that opens it; created once (atomically: a
    process never opens a file another is still creating)."""
    if not path.exists():
        tmp = _private_tmp(path)
        np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape).flush()
        try:
            os.link(tmp, path)  # fails if another process created it meanwhile: keep that one
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links
            if not path.exists():
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    try:
        array = np.load(path, mmap_mode="r+", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot open CLIP feature cache {path}: {first_line(err)}; delete {path.parent} "
                        f"to rebuild it") from None
    if array.shape != tuple(shape) or array.dtype != dtype:
        raise UserError(f"CLIP feature cache {path} holds {array.shape} {array.dtype}, not {tuple(shape)} "
                        f"{np.dtype(dtype)}; delete {path.parent} to rebuild it")
    return array


def _write_json_once(path: Path, content: dict):
    if not path.exists():
        with atomic_write(path) as file:
            json.dump(content, file, indent=2, sort_keys=True)


class CLIPFeatureCache:
    """The CLIP features of one dataset's images under one CLIP (weights and preprocessing), by
    dataset index, in ``directory``: features.npy (N, D) float32 and checks.npy (N,) uint64,
    memory maps every process shares (a distributed run's ranks fill disjoint rows).

    A row counts only when its checksum matches it, so a row a process was writing when it
    died (or that two processes wrote at once) is never read: it is computed again.

    Images without a dataset index (evaluation, image grids) are found by their content:
    ``fingerprint_file`` holds every dataset image's fingerprint, computed from ``batches``
    the first time it is needed and kept for every later run on this dataset."""

    def __init__(self, directory, batches, feature_dim, fingerprint_file):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.batches = batches
        self.fingerprint_file = Path(fingerprint_file)
        num_images = len(batches)
        self.features = _open_shared_array(self.directory / "features.npy", (num_images, feature_dim), np.float32)
        self.checks = _open_shared_array(self.directory / "checks.npy", (num_images,), np.uint64)
        self._content_index = None  # (sorted fingerprints, their dataset indices)

    def __len__(self):
        return self.features.shape[0]

    def lookup(self, indices):
        """(found (B,) bool, features (B, D) float32) for dataset ``indices`` (-1: none)."""
        indices = np.asarray(indices, dtype=np.int64)
        features = np.zeros((len(indices), self.features.shape[1]), np.float32)
        found = np.zeros(len(indices), bool)
        known = np.flatnonzero(indices >= 0)
        if len(known):
            rows, checks = self.features[indices[known]], self.checks[indices[known]]
            features[known] = rows
            found[known] = [int(check) == _row_check(row) for row, check in zip(rows, checks)]
        return found, features

    def store(self, indices, features):
        """Write the rows of dataset ``indices``: the features, then their checksums."""
        indices = np.asarray(indices, dtype=np.int64)
        features = np.ascontiguousarray(features, dtype=np.float32)
        self.features[indices] = features
        self.checks[indices] = [_row_check(row) for row in features]

    def dataset_fingerprints(self, chunk=512):
        """Every dataset image's fingerprint (N,) uint64, from the file or computed (once)."""
        if self.fingerprint_file.is_file():
            table = np.load(self.fingerprint_file, allow_pickle=False)
            if table.shape == (len(self),):
                return table
        table = np.concatenate([image_fingerprints(self.batches[np.arange(start, min(start + chunk, len(self)))][0])
                                for start in range(0, len(self), chunk)])
        with atomic_write(self.fingerprint_file, "wb") as file:
            np.save(file, table, allow_pickle=False)
        return table

    def find(self, fingerprints):
        """Dataset indices of the images with these fingerprints (-1 for an image that is not
        in the dataset, e.g. a reconstruction)."""
        if self._content_index is None:
            table = self.dataset_fingerprints()
            order = np.argsort(table, kind="stable")
            self._content_index = (table[order], order)
        known, indices = self._content_index
        fingerprints = np.asarray(fingerprints, dtype=np.uint64)
        position = np.minimum(np.searchsorted(known, fingerprints), len(known) - 1)
        return np.where(known[position] == fingerprints, indices[position], -1)


def open_feature_cache(cfg, batches, clip: CLIPImageTokenizer):
    """The feature cache of this run's dataset (name, folder, size, a few images' content) and
    CLIP (``clip.features_id``: weights hash and preprocessing), under ``cfg.clip_cache_dir``:
    <dir>/<dataset name>/<dataset id>/<features id>/."""
    num_images = len(batches)
    probe = np.unique([0, num_images // 2, num_images - 1])
    images = batches[probe][0]
    dataset = {"name": cfg.name, "data_dir": str(Path(cfg.data_dir).resolve()), "num_images": num_images,
               "image_shape": list(images.shape[1:]),
               "probe_fingerprints": [int(v) for v in image_fingerprints(images)]}
    dataset_id = hashlib.sha256(json.dumps(dataset, sort_keys=True).encode()).hexdigest()
    dataset_dir = Path(cfg.clip_cache_dir) / cfg.name / dataset_id[:16]
    directory = dataset_dir / clip.features_id[:16]
    cache = CLIPFeatureCache(directory, batches, clip.feature_dim, dataset_dir / "fingerprints.npy")
    _write_json_once(dataset_dir / "dataset.json", dataset)
    _write_json_once(directory / "clip.json", {"clip_features_id": clip.features_id,
                                               "clip_weights_sha256": clip.weights_sha256})
    return cache
