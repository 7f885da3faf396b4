"""Lazy row readers: fetch a few images from a large array file without loading it.

Both readers read only the requested rows, keep no file-backed mapping (so the
process RSS does not grow with the file, unlike np.memmap whose touched pages
count as resident), and reopen their file after a fork so DataLoader workers work.
Where ``os.pread`` is missing (Windows), rows are read with seek + read on the same
descriptor under a per-reader lock (chosen per call, so the fallback is testable).
"""
from __future__ import annotations

import os
import threading

import numpy as np

from .errors import DatasetError


_H5_CHUNK_CACHE_BYTES = 32 << 20


def _unique_sorted(indices: np.ndarray):
    """Increasing unique indices (what h5py needs) and how to restore the request order."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    unique, inverse = np.unique(indices, return_inverse=True)
    return unique, inverse


class H5Rows:
    """Rows of one dataset inside an HDF5 file, read on demand."""

    def __init__(self, path: str, key: str, layout: str):
        self.path, self.key, self.layout = str(path), key, layout
        self._file = None
        self._pid = None
        dataset = self._dataset()
        self.shape = tuple(dataset.shape)
        self.dtype = dataset.dtype

    def _dataset(self):
        import h5py
        if self._file is None or self._pid != os.getpid():
            try:
                # A larger chunk cache helps compressed files; it is bounded, so RSS stays flat.
                self._file = h5py.File(self.path, "r", rdcc_nbytes=_H5_CHUNK_CACHE_BYTES)
            except (OSError, ValueError):
                raise DatasetError(f"cannot read HDF5 file {self.path} (missing, truncated or "
                                   f"not HDF5); expected {self.layout}") from None
            self._pid = os.getpid()
        if self.key not in self._file:
            raise DatasetError(f"{self.path} has no dataset '{self.key}' (found: "
                               f"{', '.join(sorted(self._file.keys())) or 'nothing'}); expected {self.layout}")
        return self._file[self.key]

    def read(self, indices) -> np.ndarray:
        unique, inverse = _unique_sorted(indices)
        dataset = self._dataset()
        try:
            if unique.size and unique[-1] - unique[0] + 1 <= 2 * unique.size:
                # Dense request: one contiguous slab read beats many small reads.
                slab = dataset[int(unique[0]):int(unique[-1]) + 1]
                rows = slab[unique - unique[0]]
            else:
                # Sparse request: row-by-row reads beat h5py's point selection.
                rows = np.empty((unique.size,) + self.shape[1:], dtype=self.dtype)
                for position, row in enumerate(unique):
                    rows[position] = dataset[int(row)]
        except (OSError, ValueError, KeyError):
            raise DatasetError(f"cannot read rows of '{self.key}' from {self.path} (file truncated "
                               f"or corrupt?); expected {self.layout}") from None
        return rows[inverse]

    def read_block(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` to ``stop`` (one contiguous read: loading a whole file in blocks)."""
        try:
            return self._dataset()[int(start):int(stop)]
        except (OSError, ValueError, KeyError):
            raise DatasetError(f"cannot read rows {start}-{stop} of '{self.key}' from {self.path} (file "
                               f"truncated or corrupt?); expected {self.layout}") from None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None  # h5py handles do not pickle
        return state


class NpyRows:
    """Rows of a C-ordered .npy file, read with pread (or seek + read) at computed offsets.

    ``leading_axes`` > 1 treats the first axes as one flat row axis, e.g. a
    (elevation, azimuth, object, H, W, 3) cache read by mixed-radix row index.
    """

    def __init__(self, path: str, layout: str, leading_axes: int = 1):
        self.path, self.layout = str(path), layout
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                self._offset = f.tell()
        except FileNotFoundError:
            raise DatasetError(f"file not found: {self.path}; expected {layout}") from None
        except (OSError, ValueError):
            raise DatasetError(f"{self.path} is not a readable .npy array; expected {layout}") from None
        if fortran or dtype.hasobject:
            raise DatasetError(f"{self.path} must be a C-ordered numeric array; expected {layout}")
        if len(shape) < leading_axes:
            raise DatasetError(f"{self.path} has shape {tuple(shape)}; expected {layout}")
        self.array_shape, self.dtype = tuple(shape), dtype
        self.shape = (int(np.prod(shape[:leading_axes], dtype=np.int64)),) + tuple(shape[leading_axes:])
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        expected_size = self._offset + self._row_bytes * self.shape[0]
        if os.path.getsize(self.path) < expected_size:
            raise DatasetError(f"{self.path} is truncated ({os.path.getsize(self.path)} of "
                               f"{expected_size} bytes); expected {layout}")
        self._fd = None
        self._pid = None
        self._lock = None

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            # O_BINARY: on Windows a descriptor is opened in text mode otherwise.
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._pid = os.getpid()
            self._lock = threading.Lock()  # not one copied by fork, maybe held by a lost thread
        return self._fd

    def _read_at(self, offset: int, size: int) -> bytes:
        fd = self._descriptor()
        pread = getattr(os, "pread", None)
        if pread is not None:
            return pread(fd, size, offset)
        with self._lock:  # seek + read share the descriptor's position
            os.lseek(fd, offset, os.SEEK_SET)
            chunks, wanted = [], size
            while wanted:
                chunk = os.read(fd, wanted)
                if not chunk:
                    break
                chunks.append(chunk)
                wanted -= len(chunk)
            return b"".join(chunks)

    def read(self, indices) -> np.ndarray:
        unique, inverse = _unique_sorted(indices)
        if unique.size and (unique[0] < 0 or unique[-1] >= self.shape[0]):
            raise DatasetError(f"row index out of range [0, {self.shape[0]}) for {self.path}")
        out = np.empty((unique.size,) + self.shape[1:], dtype=self.dtype)
        flat = out.reshape(unique.size, -1).view(np.uint8)
        for position, row in enumerate(unique):
            data = self._read_at(self._offset + int(row) * self._row_bytes, self._row_bytes)
            if len(data) != self._row_bytes:
                raise DatasetError(f"{self.path} is truncated at row {row}; expected {self.layout}")
            flat[position] = np.frombuffer(data, dtype=np.uint8)
        return out[inverse]

    def read_block(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` to ``stop`` in one read (loading a whole file in blocks)."""
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self.shape[0]:
            raise DatasetError(f"rows {start}-{stop} out of range [0, {self.shape[0]}] for {self.path}")
        size = (stop - start) * self._row_bytes
        out = np.empty((stop - start,) + self.shape[1:], dtype=self.dtype)
        flat, done = out.reshape(-1).view(np.uint8), 0
        while done < size:  # a large read may come back in parts
            data = self._read_at(self._offset + start * self._row_bytes + done, size - done)
            if not data:
                raise DatasetError(f"{self.path} is truncated at row {start + done // self._row_bytes}; "
                                   f"expected {self.layout}")
            flat[done:done + len(data)] = np.frombuffer(data, dtype=np.uint8)
            done += len(data)
        return out

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fd"], state["_pid"], state["_lock"] = None, None, None  # locks do not pickle
        return state

    def __del__(self):
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass
