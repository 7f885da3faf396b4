"""Fetch the public dataset files into the layout the loaders expect.

    python -m datasets.download {shapes3d,dsprites,mpi3d_toy,cars3d,clevr_with_masks,objects_room} --to DIR

Downloads go to ``<file>.part`` and are renamed only when complete and verified.
An interrupted download resumes from the partial file with an HTTP Range request
(a server that ignores Range restarts it from zero). The size is checked against
the server's Content-Length / Content-Range, and the MD5 against a published
checksum: the ``x-goog-hash: md5=...`` header that Google Cloud Storage (home of
most of these files) sends, or ``md5`` in the file table. A mismatch deletes the
partial file. ``--base-url`` replaces the publisher's URL (mirrors, tests).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from common.atomic import atomic_write

from .errors import DatasetError

_BLOCK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    base_url: str            # publisher's folder URL, ending in '/'
    name: str                # file name under base_url
    destination: str         # path under the download directory
    md5: str | None = None   # only when the publisher gives one
    extract_cars: bool = False


# No publisher states checksums for these files on their pages; GCS sends each
# object's MD5 in x-goog-hash, which is checked when present.
FILES = {
    "shapes3d": [RemoteFile("https://storage.googleapis.com/3d-shapes/", "3dshapes.h5",
                            "shapes3d/3dshapes.h5")],
    "dsprites": [RemoteFile("https://github.com/deepmind/dsprites-dataset/raw/master/",
                            "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                            "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz")],
    "mpi3d_toy": [RemoteFile("https://storage.googleapis.com/mpi3d_disentanglement_dataset/data/",
                             "mpi3d_toy.npz", "mpi3d_toy/mpi3d_toy.npz")],
    "cars3d": [RemoteFile("http://www.scottreed.info/files/", "nips2015-analogy-data.tar.gz",
                          "cars3d/nips2015-analogy-data.tar.gz", extract_cars=True)],
    "clevr_with_masks": [RemoteFile("https://storage.googleapis.com/multi-object-datasets/clevr_with_masks/",
                                    "clevr_with_masks_train.tfrecords",
                                    "clevr_with_masks/clevr_with_masks_train.tfrecords")],
    "objects_room": [RemoteFile("https://storage.googleapis.com/multi-object-datasets/objects_room/",
                                "objects_room_train.tfrecords", "objects_room/objects_room_train.tfrecords")],
}


def _published_md5(headers) -> str | None:
    """Hex MD5 from a GCS ``x-goog-hash: crc32c=...,md5=<base64>`` header, if any."""
    for value in headers.get_all("x-goog-hash") or []:
        for part in value.split(","):
            algorithm, _, digest = part.strip().partition("=")
            if algorithm == "md5" and digest:
                return base64.b64decode(digest).hex()
    return None


def _total_size(response, resumed_from: int) -> int | None:
    content_range = response.headers.get("Content-Range")  # "bytes start-end/total"
    if response.status == 206 and content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    if length is None:
        return None
    return int(length) + (resumed_from if response.status == 206 else 0)


def fetch(url: str, destination: str | Path, md5: str | None = None, progress: bool = True,
          timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination`` resumably and verified; returns the path."""
    destination = Path(destination)
    partial = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the partial file is already complete (or longer)
            partial.unlink()
            return fetch(url, destination, md5, progress, timeout)
        raise DatasetError(f"download of {url} failed: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise DatasetError(f"download of {url} failed: {getattr(error, 'reason', error)}") from None
    with response:
        if response.status != 206 and have:
            have = 0  # the server ignored Range: start over
        total = _total_size(response, have)
        expected_md5 = md5 or _published_md5(response.headers)
        digest = hashlib.md5()
        if have:
            with open(partial, "rb") as existing:
                for block in iter(lambda: existing.read(_BLOCK), b""):
                    digest.update(block)
        try:
            with open(partial, "ab" if have else "wb") as out, \
                    tqdm(total=total, initial=have, unit="B", unit_scale=True,
                         desc=destination.name, disable=not progress) as bar:
                for block in iter(lambda: response.read(_BLOCK), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
        except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
            # Keep the partial file: the next run resumes from it.
            raise DatasetError(f"download of {url} interrupted ({error}); run again to resume "
                               f"from {partial}") from None
    size = partial.stat().st_size
    if total is not None and size != total:
        if size > total:
            partial.unlink()
        raise DatasetError(f"download of {url} is incomplete: {size} of {total} bytes "
                           f"(run again to resume)")
    if expected_md5 is not None and digest.hexdigest() != expected_md5.lower():
        partial.unlink()
        raise DatasetError(f"checksum mismatch for {url}: md5 {digest.hexdigest()}, published "
                           f"{expected_md5}; the partial file was deleted")
    os.replace(partial, destination)
    return destination


def _extract_cars(archive: Path, folder: Path) -> int:
    """Unpack the cars' .mat files (data/cars/*.mat in the release) flat into ``folder``."""
    count = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = Path(member.name)
                # Only regular .mat files of the cars folder; never follow member paths.
                if member.isfile() and name.suffix == ".mat" and "cars" in name.parts:
                    source = tar.extractfile(member)
                    with source, atomic_write(folder / name.name, "wb") as out:
                        shutil.copyfileobj(source, out)
                    count += 1
    except (tarfile.TarError, OSError, EOFError):
        raise DatasetError(f"cannot unpack {archive} (corrupt download?); delete it and run again") from None
    if not count:
        raise DatasetError(f"{archive} holds no cars/*.mat files; expected the 2015 visual-analogy release")
    return count


def download(name: str, to: str | Path, base_url: str | None = None, progress: bool = True) -> list[Path]:
    """Fetch dataset ``name`` into ``to`` (the data_dir the loaders read)."""
    if name not in FILES:
        raise DatasetError(f"no download for '{name}'; choose one of {', '.join(FILES)}")
    paths = []
    for remote in FILES[name]:
        destination = Path(to) / remote.destination
        base = remote.base_url if base_url is None else base_url.rstrip("/") + "/"
        if destination.exists():
            print(f"{destination} already present, skipping", file=sys.stderr)
        else:
            fetch(base + remote.name, destination, remote.md5, progress)
        if remote.extract_cars:
            _extract_cars(destination, destination.parent)
        paths.append(destination)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.download", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(FILES))
    parser.add_argument("--to", required=True, help="data directory (the loaders' data_dir)")
    parser.add_argument("--base-url", default=None, help="fetch from this folder URL instead of the publisher's")
    args = parser.parse_args(argv)
    try:
        for path in download(args.name, args.to, args.base_url):
            print(path)
    except (DatasetError, OSError) as error:  # OSError: a read-only folder, a full disk, ...
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
