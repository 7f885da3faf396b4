"""Downloads against a local HTTP server (127.0.0.1 only): complete, resumed, checksum
mismatch, pinned sha256 / size, cars archive, and the file table's pins."""
import base64
import dataclasses
import hashlib
import http.server
import io
import re
import tarfile
import threading

import numpy as np
import pytest

from datasets import DatasetError, get_dataset
from datasets import download as download_module
from datasets.download import FILES, RemoteFile, download, fetch, main as download_main, verification
from .ds_fixtures import assert_one_line_error, write_cars

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def unpinned(name):
    """FILES[name] with its pins removed: the served test payload is not the real file."""
    return [dataclasses.replace(remote, sha256=None, size=None, md5=None) for remote in FILES[name]]


def pinned_test_file(**pins):
    return {"testset": [RemoteFile("https://example.invalid/", "a.bin", "testset/a.bin", **pins)]}


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


def test_complete_download_into_the_loader_layout(tmp_path, monkeypatch):
    monkeypatch.setitem(FILES, "shapes3d", unpinned("shapes3d"))
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


def test_checksum_mismatch_leaves_no_file_behind(tmp_path, monkeypatch):
    monkeypatch.setitem(FILES, "shapes3d", unpinned("shapes3d"))
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


def test_cars_archive_is_unpacked_for_the_loader(tmp_path, monkeypatch):
    monkeypatch.setitem(FILES, "cars3d", unpinned("cars3d"))
    source = write_cars(tmp_path / "src", objects=2, azimuths=2, elevations=1, size=8)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for mat in sorted(source.glob("*.mat")):
            tar.add(mat, arcname=f"data/cars/{mat.name}")
        tar.addfile(tarfile.TarInfo("data/shapes/ignored.txt"), io.BytesIO())
    with FileServer({"/nips2015-analogy-data.tar.gz": archive.getvalue()}) as server:
        download("cars3d", tmp_path / "data", base_url=server.url, progress=False)
    assert get_dataset("cars3d", str(tmp_path / "data")).factors_num_values == [1, 2, 2]


def run_cli(capsys, *argv):
    code = download_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_pinned_sha256_match_lands_the_file_and_says_verified(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download_module, "FILES", pinned_test_file(sha256=PAYLOAD_SHA256, size=len(PAYLOAD)))
    with FileServer({"/a.bin": PAYLOAD}) as server:
        code, out, err = run_cli(capsys, "testset", "--to", str(tmp_path), "--base-url", server.url)
    assert code == 0, err
    assert (tmp_path / "testset" / "a.bin").read_bytes() == PAYLOAD
    assert "a.bin: verified download (pinned sha256 and size)" in err


def test_resumed_download_is_sha256_checked_over_both_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "FILES", pinned_test_file(sha256=PAYLOAD_SHA256))
    (tmp_path / "testset").mkdir()
    (tmp_path / "testset" / "a.bin.part").write_bytes(PAYLOAD[:100_000])
    with FileServer({"/a.bin": PAYLOAD}, md5_header=False) as server:
        download("testset", tmp_path, base_url=server.url, progress=False)
        assert server.requests == [("/a.bin", "bytes=100000-")]
    assert (tmp_path / "testset" / "a.bin").read_bytes() == PAYLOAD


@pytest.mark.parametrize("pins", [{"sha256": PAYLOAD_SHA256}, {"size": len(PAYLOAD)}], ids=["sha256", "size"])
def test_corrupted_payload_for_a_pinned_entry_exits_2_and_leaves_nothing(tmp_path, monkeypatch, capsys, pins):
    monkeypatch.setattr(download_module, "FILES", pinned_test_file(**pins))
    corrupted = PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1]) if "sha256" in pins else PAYLOAD + b"x"
    # The server's md5 header matches what it sends: only the pin can catch it.
    with FileServer({"/a.bin": corrupted}) as server:
        code, out, err = run_cli(capsys, "testset", "--to", str(tmp_path), "--base-url", server.url)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "checksum mismatch" in errors[0] and "a.bin" in errors[0], err
    assert list((tmp_path / "testset").iterdir()) == []  # the partial file was deleted


def test_unpinned_entry_says_unverified_and_that_gcs_md5_is_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download_module, "FILES", pinned_test_file())
    with FileServer({"/a.bin": PAYLOAD}) as server:
        code, out, err = run_cli(capsys, "testset", "--to", str(tmp_path), "--base-url", server.url)
    assert code == 0, err
    assert "a.bin: no pinned sha256 (unverified download" in err and "GCS md5" in err


def test_present_file_is_checked_against_its_pin_before_skipping(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download_module, "FILES", pinned_test_file(sha256=PAYLOAD_SHA256))
    target = tmp_path / "testset" / "a.bin"
    target.parent.mkdir()
    target.write_bytes(PAYLOAD)
    code, out, err = run_cli(capsys, "testset", "--to", str(tmp_path), "--base-url", "http://127.0.0.1:9/")
    assert code == 0 and "verified against its pinned checksum" in err and "skipping" in err
    target.write_bytes(PAYLOAD[:-1])
    code, out, err = run_cli(capsys, "testset", "--to", str(tmp_path), "--base-url", "http://127.0.0.1:9/")
    assert code == 2 and err.count("error:") == 1 and "delete it and run again" in err
    assert target.exists()  # the user's file is reported, not deleted


def test_to_defaults_to_vct_data_and_neither_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download_module, "FILES", pinned_test_file(sha256=PAYLOAD_SHA256))
    monkeypatch.setenv("VCT_DATA", str(tmp_path))
    with FileServer({"/a.bin": PAYLOAD}) as server:
        code, out, err = run_cli(capsys, "testset", "--base-url", server.url)
    assert code == 0, err
    assert (tmp_path / "testset" / "a.bin").read_bytes() == PAYLOAD
    monkeypatch.delenv("VCT_DATA")
    code, out, err = run_cli(capsys, "testset")
    assert code == 2 and err.strip().splitlines() == ["error: no download folder: give --to DIR or set VCT_DATA"]


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_file_is_pinned_or_reported_unverified(name):
    for remote in FILES[name]:
        line = verification(remote, remote.base_url + remote.name)
        if remote.sha256:
            assert "verified download (pinned sha256" in line
        else:
            assert "no pinned sha256" in line


def test_pins_are_well_formed_and_urls_https_unless_marked():
    remotes = [remote for entries in FILES.values() for remote in entries]
    for remote in remotes:
        if remote.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", remote.sha256), remote
        if remote.md5 is not None:
            assert re.fullmatch(r"[0-9a-f]{32}", remote.md5), remote
        assert remote.size is None or remote.size > 0
        if remote.base_url.startswith("https://"):
            assert remote.plain_http is None, remote  # a mark only where it is needed
        else:
            assert remote.base_url.startswith("http://") and remote.plain_http, remote
            assert "plain http" in verification(remote, remote.base_url + remote.name)
