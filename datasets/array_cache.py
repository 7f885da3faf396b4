"""Convert arrays that cannot be memory-mapped into .npy caches, once.

An .npz member is a (usually deflated) .npy inside a zip archive, so it can only
be read whole. We stream it out in chunks into a plain .npy next to the archive
(written under a temporary name, renamed when complete) and reuse it while it is
newer than its source.
"""
from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from .errors import DatasetError

_CHUNK_BYTES = 16 << 20
_HEADER_BYTES = 256  # fixed .npy preamble, so the header can be rewritten in place


def npz_member_names(npz_path: str | Path, layout: str) -> list[str]:
    """Array names stored in an .npz archive (without opening any array)."""
    try:
        with zipfile.ZipFile(npz_path) as archive:
            return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    except FileNotFoundError:
        raise DatasetError(f"file not found: {npz_path}; expected {layout}") from None
    except (zipfile.BadZipFile, OSError, EOFError):
        raise DatasetError(f"{npz_path} is not a readable .npz archive (truncated or corrupt?); "
                           f"expected {layout}") from None


def _require_member(npz_path, key: str, layout: str) -> None:
    names = npz_member_names(npz_path, layout)
    if key not in names:
        raise DatasetError(f"{npz_path} has no array '{key}' (found: {', '.join(names) or 'nothing'}); "
                           f"expected {layout}")


def read_small_npz_array(npz_path: str | Path, key: str, layout: str) -> np.ndarray:
    """Load one small member (labels) fully; never unpickles."""
    _require_member(npz_path, key, layout)
    try:
        with np.load(npz_path, allow_pickle=False) as archive:
            return np.asarray(archive[key])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise DatasetError(f"cannot read '{key}' from {npz_path} (truncated, corrupt or an object "
                           f"array?); expected {layout}") from None


def npz_member_header(npz_path: str | Path, key: str, layout: str):
    """(shape, dtype) of one member, read from its .npy header only."""
    _require_member(npz_path, key, layout)
    with zipfile.ZipFile(npz_path) as archive, archive.open(key + ".npy") as member:
        return _read_npy_header(member, f"{npz_path}:{key}", layout)


def _read_npy_header(stream, where: str, layout: str):
    """(shape, dtype) from an .npy header; the stream is left at the first data byte."""
    try:
        version = np.lib.format.read_magic(stream)
        reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = reader(stream)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise DatasetError(f"{where} is not a readable array; expected {layout}") from None
    if fortran or dtype.hasobject:
        raise DatasetError(f"{where} must be a C-ordered numeric array; expected {layout}")
    return tuple(shape), dtype


def cache_path_for(npz_path: str | Path, key: str) -> Path:
    npz_path = Path(npz_path)
    return npz_path.with_name(f"{npz_path.stem}.{key}.npy")


def is_fresh(cache: Path, sources: Iterable[Path]) -> bool:
    """A cache is reused while it exists and is not older than any source."""
    if not cache.exists():
        return False
    cache_time = cache.stat().st_mtime
    return all(Path(s).stat().st_mtime <= cache_time for s in sources)


def cached_npz_member(npz_path: str | Path, key: str, layout: str, expected_dtype=None) -> Path:
    """Path of a .npy holding ``npz[key]``, converting it (with a progress bar) if needed."""
    npz_path = Path(npz_path)
    shape, dtype = npz_member_header(npz_path, key, layout)
    if expected_dtype is not None and dtype != np.dtype(expected_dtype):
        raise DatasetError(f"{npz_path}: '{key}' has dtype {dtype}, expected "
                           f"{np.dtype(expected_dtype)}; expected {layout}")
    cache = cache_path_for(npz_path, key)
    if is_fresh(cache, [npz_path]) and _npy_shape(cache) == (shape, dtype):
        return cache
    total = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    with NpyStreamWriter(cache, dtype, shape[1:]) as writer, \
            zipfile.ZipFile(npz_path) as archive, archive.open(key + ".npy") as member, \
            tqdm(total=total, unit="B", unit_scale=True, desc=f"caching {npz_path.name}:{key}") as bar:
        _read_npy_header(member, f"{npz_path}:{key}", layout)
        try:
            while True:
                chunk = member.read(_CHUNK_BYTES)
                if not chunk:
                    break
                writer.write_bytes(chunk)
                bar.update(len(chunk))
        except (zipfile.BadZipFile, OSError, EOFError):
            writer.abort()
            raise DatasetError(f"{npz_path} is truncated or corrupt while reading '{key}'; "
                               f"expected {layout}") from None
        if writer.bytes_written != total:
            writer.abort()
            raise DatasetError(f"{npz_path}: '{key}' holds {writer.bytes_written} of {total} bytes "
                               f"(truncated); expected {layout}")
    return cache


def _npy_shape(path: Path):
    """(shape, dtype) of an existing .npy, or None if it is unreadable."""
    try:
        with open(path, "rb") as f:
            return _read_npy_header(f, str(path), "")
    except (DatasetError, OSError):
        return None


class NpyStreamWriter:
    """Append rows to a .npy whose length is known only at the end.

    Writes a fixed-size header, appends raw bytes, then rewrites the header with the
    final row count and renames the temporary file into place. Used as a context
    manager; on an exception (or ``abort()``) nothing is left behind.
    """

    def __init__(self, path: str | Path, dtype, row_shape: Sequence[int]):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(int(s) for s in row_shape)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.bytes_written = 0
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._file = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = open(self._tmp, "wb")
        except OSError as error:
            raise DatasetError(f"cannot write cache {self._tmp}: {error.strerror}") from None
        self._file.write(npy_header(self.dtype, (0,) + self.row_shape))
        return self

    def write_bytes(self, data: bytes) -> None:
        self._file.write(data)
        self.bytes_written += len(data)

    def write_rows(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise DatasetError(f"row shape {rows.shape[1:]} does not match {self.row_shape}")
        self.write_bytes(rows.tobytes())

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)

    def __exit__(self, exc_type, exc, tb):
        if self._file is None:  # aborted
            return False
        if exc_type is not None:
            self.abort()
            return False
        rows, leftover = divmod(self.bytes_written, max(self.row_bytes, 1))
        if leftover:
            self.abort()
            raise DatasetError(f"{self.path}: {self.bytes_written} bytes is not a whole number of rows")
        self._file.seek(0)
        self._file.write(npy_header(self.dtype, (rows,) + self.row_shape))
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.path)
        return False


def npy_header(dtype: np.dtype, shape: tuple) -> bytes:
    """A version-1.0 .npy preamble padded to exactly _HEADER_BYTES."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (dtype.str, tuple(shape))
    padding = _HEADER_BYTES - 10 - len(text) - 1
    if padding < 0:
        raise DatasetError(f"array header too long for shape {shape}")
    text = text + " " * padding + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")

