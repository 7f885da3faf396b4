"""Portability: rows read without os.pread (Windows) match the pread rows, and every module of
the repo imports where the POSIX-only modules resource and fcntl do not exist."""
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from datasets.row_readers import NpyRows

REPO = Path(__file__).resolve().parents[2]


def write_npy(path, rows=50):
    array = np.random.default_rng(0).integers(0, 256, (rows, 5, 4, 3), dtype=np.uint8)
    np.save(path, array)
    return array


def test_rows_without_pread_match_the_pread_rows(tmp_path, monkeypatch):
    array = write_npy(tmp_path / "a.npy")
    indices = np.array([7, 3, 3, 49, 0, 12])
    reader = NpyRows(tmp_path / "a.npy", "test layout")
    with_pread = reader.read(indices)
    np.testing.assert_array_equal(with_pread, array[indices])
    monkeypatch.delattr(os, "pread")
    seeks = []
    real_lseek = os.lseek
    monkeypatch.setattr(os, "lseek", lambda *args: seeks.append(args) or real_lseek(*args))
    np.testing.assert_array_equal(reader.read(indices), with_pread)  # same reader, chosen per call
    fresh = pickle.loads(pickle.dumps(reader))  # a DataLoader worker's copy
    np.testing.assert_array_equal(fresh.read(indices), with_pread)
    assert len(seeks) == 2 * len(np.unique(indices))  # the fallback did the reading


def test_fallback_reads_from_threads_do_not_interleave(tmp_path, monkeypatch):
    array = write_npy(tmp_path / "a.npy", rows=200)
    reader = NpyRows(tmp_path / "a.npy", "test layout")
    monkeypatch.delattr(os, "pread")
    real_lseek = os.lseek

    def lseek_then_yield(*args):  # invite another thread to move the shared position
        position = real_lseek(*args)
        time.sleep(0.0002)
        return position

    monkeypatch.setattr(os, "lseek", lseek_then_yield)
    failures = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(30):
            indices = rng.integers(0, 200, 8)
            if not np.array_equal(reader.read(indices), array[indices]):
                failures.append(seed)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# Blocks resource and fcntl (as on Windows) and os.pread before anything of ours is imported.
IMPORT_ALL = textwrap.dedent("""
    import importlib, os, pathlib, sys, tempfile
    sys.modules["resource"] = None
    sys.modules["fcntl"] = None
    del os.pread
    modules = []
    for package in ("common", "datasets", "training", "evaluation", "models"):
        for path in sorted(pathlib.Path(package).rglob("*.py")):
            parts = path.with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    modules += [path.stem for path in sorted(pathlib.Path(".").glob("*.py"))]
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as error:
            failed.append(f"{name}: {error!r}")
    print("\\n".join(failed) or f"imported {len(modules)}")
    from common.memory import peak_rss_mb
    from training.checkpoint import run_dir_lock
    assert peak_rss_mb() is None or peak_rss_mb() > 0
    with run_dir_lock(tempfile.mkdtemp()):  # no fcntl: no lock, no error
        pass
""")


def test_every_module_imports_without_resource_fcntl_or_pread():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("imported "), result.stdout


def test_peak_rss_without_resource_or_proc_is_none(monkeypatch):
    import importlib

    import common.memory
    monkeypatch.setitem(sys.modules, "resource", None)
    try:
        memory = importlib.reload(common.memory)
        assert memory.resource is None

        def no_proc(*args, **kwargs):
            raise OSError("no /proc here")

        monkeypatch.setattr(memory, "open", no_proc, raising=False)
        assert memory.peak_rss_mb() is None
    finally:
        monkeypatch.undo()
        importlib.reload(common.memory)
