"""Fetch the public dataset files into the layout the loaders expect.

    python -m datasets.download {shapes3d,dsprites,mpi3d_toy,cars3d,clevr_with_masks,objects_room} [--to DIR]

DIR defaults to $VCT_DATA. Downloads go to ``<file>.part`` and are renamed only
when complete and verified. An interrupted download resumes from the partial
file with an HTTP Range request (a server that ignores Range restarts it from
zero). Each file is checked against what is known of it: a pinned sha256 / size /
md5 from a public checksum list (see FILES), the server's Content-Length /
Content-Range, and the ``x-goog-hash: md5=...`` header that Google Cloud Storage
(home of most of these files) sends. A mismatch deletes the partial file. A file
already in place is re-hashed against its pinned digests (one read; about 0.2 s
for the 268 MB 3dshapes.h5) before it is skipped. ``--base-url`` replaces the
publisher's URL (mirrors, tests); pinned digests still apply.
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

from .data_root import data_root
from .errors import DatasetError

_BLOCK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    base_url: str               # publisher's folder URL, ending in '/'
    name: str                   # file name under base_url
    destination: str            # path under the download directory
    sha256: str | None = None   # pinned only from a public checksum list (source beside it)
    size: int | None = None     # bytes, where that source states it
    md5: str | None = None      # likewise
    plain_http: str | None = None  # why the URL is not https (no https copy exists)
    extract_cars: bool = False


# Pin a digest only from a public source (named beside it); never compute one from a
# download and pin that. Unpinned files rely on GCS's x-goog-hash md5 where sent.
FILES = {
    # sha256 + size: tensorflow/datasets tensorflow_datasets/url_checksums/shapes3d.txt (same URL).
    "shapes3d": [RemoteFile("https://storage.googleapis.com/3d-shapes/", "3dshapes.h5",
                            "shapes3d/3dshapes.h5",
                            sha256="0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785",
                            size=267_573_662)],
    # raw.githubusercontent.com serves the git blob itself (github.com/.../raw/ only redirects
    # there; the repo moved to google-deepmind/). sha256: a Julia DataDeps registration of this
    # file and a second project's data memo agree; md5: used by many public dSprites loaders.
    "dsprites": [RemoteFile("https://raw.githubusercontent.com/google-deepmind/dsprites-dataset/master/",
                            "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                            "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                            sha256="857dc001287e8efa226e0025fac6b29e5745c621b380b0d3363e4e33f4e28fa2",
                            md5="7da33b31b13a06f4b04a70402ce90c2e")],
    # No published sha256 found (the md5 in nmichlo/disent is for an older bucket's copy).
    "mpi3d_toy": [RemoteFile("https://storage.googleapis.com/mpi3d_disentanglement_dataset/data/",
                             "mpi3d_toy.npz", "mpi3d_toy/mpi3d_toy.npz")],
    # The host serves no https and no https copy is documented. md5 of this URL's file:
    # nmichlo/disent disent/dataset/data/_groundtruth__cars3d.py ('full' hash), and latte.
    "cars3d": [RemoteFile("http://www.scottreed.info/files/", "nips2015-analogy-data.tar.gz",
                          "cars3d/nips2015-analogy-data.tar.gz", md5="4e866a7919c1beedf53964e6f7a23686",
                          plain_http="no https copy is published", extract_cars=True)],
    # DeepMind's multi_object_datasets publish no checksums (tfds does not carry them).
    "clevr_with_masks": [RemoteFile("https://storage.googleapis.com/multi-object-datasets/clevr_with_masks/",
                                    "clevr_with_masks_train.tfrecords",
                                    "clevr_with_masks/clevr_with_masks_train.tfrecords")],
    "objects_room": [RemoteFile("https://storage.googleapis.com/multi-object-datasets/objects_room/",
                                "objects_room_train.tfrecords", "objects_room/objects_room_train.tfrecords")],
}


def verification(remote: RemoteFile, url: str) -> str:
    """One line saying how ``remote`` fetched from ``url`` is checked."""
    if remote.sha256:
        pinned = " and ".join(["sha256"] + (["size"] if remote.size else []) + (["md5"] if remote.md5 else []))
        line = f"{remote.name}: verified download (pinned {pinned})"
    elif remote.md5:
        line = f"{remote.name}: no pinned sha256; verified against a pinned md5"
    else:
        line = (f"{remote.name}: no pinned sha256 (unverified download; the server's GCS md5 "
                f"is checked when it sends one)")
    if url.startswith("http://"):
        line += f"; plain http ({remote.plain_http or 'this URL'}), not https"
    return line


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


def _hash_file(path: Path, digests: dict) -> None:
    with open(path, "rb") as existing:
        for block in iter(lambda: existing.read(_BLOCK), b""):
            for digest in digests.values():
                digest.update(block)


def _mismatch(partial: Path, url: str, what: str) -> DatasetError:
    partial.unlink(missing_ok=True)
    return DatasetError(f"checksum mismatch for {url}: {what}; the partial file was deleted")


def _check(partial: Path, url: str, digests: dict, expected: dict, size: int | None) -> None:
    """Raise (deleting ``partial``) unless its size and digests are the expected ones."""
    have = partial.stat().st_size
    if size is not None and have != size:
        raise _mismatch(partial, url, f"{have} bytes, pinned {size}")
    for algorithm, value in expected.items():
        if value is not None and digests[algorithm].hexdigest() != value.lower():
            raise _mismatch(partial, url, f"{algorithm} {digests[algorithm].hexdigest()}, expected {value}")


def _open(url: str, have: int, timeout: float):
    """The response for ``url`` from byte ``have`` on; None when the partial file is complete."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the partial file is already complete (or longer)
            return None
        raise DatasetError(f"download of {url} failed: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise DatasetError(f"download of {url} failed: {getattr(error, 'reason', error)}") from None


def _stream(response, partial: Path, have: int, total, digests: dict, url: str, progress: bool) -> None:
    try:
        with open(partial, "ab" if have else "wb") as out, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True,
                     desc=partial.name[:-len(".part")], disable=not progress) as bar:
            for block in iter(lambda: response.read(_BLOCK), b""):
                out.write(block)
                for digest in digests.values():
                    digest.update(block)
                bar.update(len(block))
    except (OSError, urllib.error.URLError, http.client.HTTPException) as error:
        # Keep the partial file: the next run resumes from it.
        raise DatasetError(f"download of {url} interrupted ({error}); run again to resume "
                           f"from {partial}") from None


def fetch(url: str, destination: str | Path, md5: str | None = None, progress: bool = True,
          timeout: float = 60.0, sha256: str | None = None, size: int | None = None) -> Path:
    """Download ``url`` to ``destination`` resumably and verified; returns the path."""
    destination = Path(destination)
    partial = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.exists() else 0
    if size is not None and have > size:
        partial.unlink()  # longer than the pinned size: it cannot be a prefix of the file
        have = 0
    response = _open(url, have, timeout)
    if response is None:
        partial.unlink()
        return fetch(url, destination, md5, progress, timeout, sha256, size)
    with response:
        if response.status != 206 and have:
            have = 0  # the server ignored Range: start over
        total = _total_size(response, have)
        if size is not None and total is not None and total != size:
            raise _mismatch(partial, url, f"the server sends {total} bytes, pinned {size}")
        expected = {"sha256": sha256, "md5": md5 or _published_md5(response.headers)}
        digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
        if have:
            _hash_file(partial, digests)  # a resumed file is hashed over both parts
        _stream(response, partial, have, total, digests, url, progress)
    got = partial.stat().st_size
    if total is not None and got != total:
        if got > total:
            partial.unlink()
        raise DatasetError(f"download of {url} is incomplete: {got} of {total} bytes "
                           f"(run again to resume)")
    _check(partial, url, digests, expected, size)
    os.replace(partial, destination)
    return destination


def verify_present(path: Path, remote: RemoteFile) -> bool:
    """Whether the existing ``path`` matches the pinned size/digests (False: nothing pinned)."""
    expected = {"sha256": remote.sha256, "md5": remote.md5}
    if not any(expected.values()) and remote.size is None:
        return False
    if remote.size is not None and path.stat().st_size != remote.size:
        raise DatasetError(f"{path} exists but has {path.stat().st_size} bytes, pinned {remote.size}; "
                           f"delete it and run again")
    digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    _hash_file(path, digests)
    for algorithm, value in expected.items():
        if value is not None and digests[algorithm].hexdigest() != value.lower():
            raise DatasetError(f"{path} exists but its {algorithm} is {digests[algorithm].hexdigest()}, "
                               f"pinned {value}; delete it and run again")
    return True


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


def download(name: str, to: str | Path | None = None, base_url: str | None = None,
             progress: bool = True) -> list[Path]:
    """Fetch dataset ``name`` into ``to`` (the data_dir the loaders read; default $VCT_DATA)."""
    if name not in FILES:
        raise DatasetError(f"no download for '{name}'; choose one of {', '.join(FILES)}")
    if to is None:
        to = data_root()
        if to is None:
            raise DatasetError("no download folder: give --to DIR or set VCT_DATA")
    paths = []
    for remote in FILES[name]:
        destination = Path(to) / remote.destination
        base = remote.base_url if base_url is None else base_url.rstrip("/") + "/"
        if destination.exists():
            checked = "verified against its pinned checksum" if verify_present(destination, remote) \
                else "unverified: nothing pinned to check it against"
            print(f"{destination} already present ({checked}), skipping", file=sys.stderr)
        else:
            print(verification(remote, base + remote.name), file=sys.stderr)
            fetch(base + remote.name, destination, remote.md5, progress, sha256=remote.sha256, size=remote.size)
        if remote.extract_cars:
            _extract_cars(destination, destination.parent)
        paths.append(destination)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.download", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(FILES))
    parser.add_argument("--to", default=None, help="data directory (the loaders' data_dir; default: $VCT_DATA)")
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
