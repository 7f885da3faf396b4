"""Downloads against a local HTTP server: complete, resumed, checksum mismatch, cars archive."""
import base64
import hashlib
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest

from datasets import DatasetError, get_dataset
from datasets.download import download, fetch, main as download_main
from .ds_fixtures import assert_one_line_error, write_cars

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


class FileServer:
    """Serves {path: bytes} on 127.0.0.1 with Range support and GCS-style x-goog-hash headers."""

    def __init__(self, files, md5_header=True, honour_range=True):
        self.files, self.requests = files, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                data = server.files.get(self.path)
                server.requests.append((self.path, self.headers.get("Range")))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                range_header = self.headers.get("Range")
                if range_header and honour_range:
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                if md5_header:
                    digest = md5_header if isinstance(md5_header, bytes) else hashlib.md5(data).digest()
                    self.send_header("x-goog-hash", f"crc32c=AAAAAA==,md5={base64.b64encode(digest).decode()}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_complete_download_into_the_loader_layout(tmp_path):
    with FileServer({"/3dshapes.h5": PAYLOAD}) as server:
        assert download_main(["shapes3d", "--to", str(tmp_path), "--base-url", server.url]) == 0
    target = tmp_path / "shapes3d" / "3dshapes.h5"
    assert target.read_bytes() == PAYLOAD
    assert not target.with_name("3dshapes.h5.part").exists()
    assert server.requests == [("/3dshapes.h5", None)]


def test_partial_download_resumes_with_a_range_request(tmp_path):
    target = tmp_path / "mpi3d_toy" / "mpi3d_toy.npz"
    target.parent.mkdir()
    target.with_name("mpi3d_toy.npz.part").write_bytes(PAYLOAD[:123_456])
    with FileServer({"/mpi3d_toy.npz": PAYLOAD}) as server:
        download("mpi3d_toy", tmp_path, base_url=server.url, progress=False)
    assert server.requests == [("/mpi3d_toy.npz", "bytes=123456-")]
    assert target.read_bytes() == PAYLOAD  # and its md5 matched the header over both parts


def test_server_ignoring_range_restarts_from_zero(tmp_path):
    target = tmp_path / "file.bin"
    target.with_name("file.bin.part").write_bytes(b"stale bytes")
    with FileServer({"/file.bin": PAYLOAD}, honour_range=False) as server:
        fetch(server.url + "file.bin", target, progress=False)
    assert target.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_no_file_behind(tmp_path):
    with FileServer({"/3dshapes.h5": PAYLOAD}, md5_header=hashlib.md5(b"other").digest()) as server:
        with pytest.raises(DatasetError) as error:
            download("shapes3d", tmp_path, base_url=server.url, progress=False)
    assert_one_line_error(error.value, "checksum mismatch", "3dshapes.h5")
    assert list((tmp_path / "shapes3d").iterdir()) == []


def test_table_checksum_used_without_header_and_missing_file_is_an_error(tmp_path):
    with FileServer({"/a.bin": PAYLOAD}, md5_header=False) as server:
        fetch(server.url + "a.bin", tmp_path / "a.bin", md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
        with pytest.raises(DatasetError) as error:
            fetch(server.url + "b.bin", tmp_path / "b.bin", md5=hashlib.md5(PAYLOAD).hexdigest(), progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert_one_line_error(error.value, "b.bin", "HTTP 404")


def test_cars_archive_is_unpacked_for_the_loader(tmp_path):
    source = write_cars(tmp_path / "src", objects=2, azimuths=2, elevations=1, size=8)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for mat in sorted(source.glob("*.mat")):
            tar.add(mat, arcname=f"data/cars/{mat.name}")
        tar.addfile(tarfile.TarInfo("data/shapes/ignored.txt"), io.BytesIO())
    with FileServer({"/nips2015-analogy-data.tar.gz": archive.getvalue()}) as server:
        download("cars3d", tmp_path / "data", base_url=server.url, progress=False)
    assert get_dataset("cars3d", str(tmp_path / "data")).factors_num_values == [1, 2, 2]
