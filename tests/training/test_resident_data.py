"""Resident images (get_args.resident_data): the same float values, batch order and training
losses as reading the files per batch; where 'auto' puts them; one-line user errors."""
import numpy as np
import pytest
import torch

from datasets import get_dataset
from datasets.ground_truth import IndexedGroundTruthData
from datasets.row_readers import H5Rows, NpyRows
from datasets.synthetic import make_synthetic_shapes3d
from tests.training.conftest import run_in_process
from training.config import RunConfig
from training.data import (GroundTruthBatches, ResidentImages, StepBatchSampler, _model_range,
                           available_ram_bytes, plan_residency, step_batches)
from training.errors import UserError
from training.run_log import read_scalars
from training.runner import vct_main

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GB = 10**9


@pytest.fixture(scope="module")
def shapes3d(tmp_path_factory):
    """A 144-image, 16 px Shapes3D-format h5."""
    folder = tmp_path_factory.mktemp("resident")
    make_synthetic_shapes3d(folder, size=16, factor_sizes=(2, 3, 2, 2, 2, 3), progress=False)
    return get_dataset("shapes3d", folder)


def pair(data, where=CPU):
    """(read per batch, resident at ``where``) views of the same dataset."""
    resident = GroundTruthBatches(data)
    resident.make_resident("ram" if where == CPU else "device", where, 1.0, progress=False)
    assert resident.resident is not None
    return GroundTruthBatches(data), resident


def assert_same_batches(files, resident, indices, device=CPU):
    expected = files[indices]
    got = resident.fetch(indices, device)
    assert got[0].device.type == device.type
    for a, b in zip(expected, got):
        assert a.dtype == b.dtype and torch.equal(a, b.cpu())


def test_resident_batches_equal_the_file_path_bit_for_bit(shapes3d):
    files, resident = pair(shapes3d)
    rng = np.random.default_rng(0)
    for indices in (np.array([5, 3, 3, 143, 0, 7]), rng.integers(0, 144, 64), np.arange(144)):
        assert_same_batches(files, resident, indices)


def test_every_byte_value_converts_as_the_file_path_does():
    rows = np.arange(256, dtype=np.uint8).reshape(4, 1, 8, 8)
    for pixel_max in (255.0, 1.0):
        expected = _model_range(rows.astype(np.float32) / np.float32(pixel_max))
        assert torch.equal(ResidentImages(rows, pixel_max).gather(np.arange(4), CPU), expected)


def test_step_batches_keep_the_sampler_order_and_the_global_rng(shapes3d):
    files, resident = pair(shapes3d)
    streams = []
    for batches in (files, resident):
        torch.manual_seed(0)
        sampler = StepBatchSampler(len(batches), 8, seed=3, start_step=5, total_steps=40)
        streams.append(list(step_batches(batches, sampler, CPU)))
        streams[-1].append(torch.rand(3))  # the global generator after the loop
    assert len(streams[0]) == len(streams[1]) == 36
    for a, b in zip(streams[0][:-1], streams[1][:-1]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(streams[0][-1], streams[1][-1])


def test_bulk_block_reads_equal_row_reads(tmp_path, monkeypatch):
    array = np.random.default_rng(1).integers(0, 256, (2, 3, 5, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "rows.npy", array)
    reader = NpyRows(tmp_path / "rows.npy", "test layout", leading_axes=3)
    np.testing.assert_array_equal(reader.read_block(7, 30), reader.read(np.arange(7, 30)))
    with monkeypatch.context() as patch:  # seek + read where os.pread is missing (Windows)
        patch.delattr("os.pread")
        np.testing.assert_array_equal(reader.read_block(0, 30), array.reshape(30, 4, 4))
    assert reader.read_block(4, 4).shape == (0, 4, 4)
    with pytest.raises(Exception, match="out of range"):
        reader.read_block(0, 31)
    # A dSprites-like dataset: (H, W) rows of 0/1 with pixel_max 1 and a channel axis added.
    binary = (array.reshape(30, 4, 4) % 2).astype(np.uint8)
    np.save(tmp_path / "binary.npy", binary)
    data = IndexedGroundTruthData([5, 6], ["a", "b"], NpyRows(tmp_path / "binary.npy", "test"), (4, 4, 1),
                                  pixel_max=1.0)
    files, resident = pair(data)
    assert_same_batches(files, resident, np.array([29, 0, 13, 13]))


def test_h5_block_reads_equal_row_reads(shapes3d):
    reader = H5Rows(shapes3d.path, "images", "test layout")
    np.testing.assert_array_equal(reader.read_block(10, 50), reader.read(np.arange(10, 50)))


@pytest.mark.parametrize("mode, nbytes, device, ram, free, where", [
    ("auto", GB, CPU, 8 * GB, None, "ram"),
    ("auto", 3 * GB, CPU, 8 * GB, None, None),            # over a quarter of the RAM
    ("auto", 3 * GB, CPU, None, None, None),              # RAM unknown: keep the files
    ("auto", 6 * GB, CUDA, 200 * GB, 130 * GB, "device"),
    ("auto", 6 * GB, CUDA, 200 * GB, 10 * GB, "ram"),     # device too full, RAM has room
    ("auto", None, CPU, 8 * GB, None, None),              # a scene dataset
    ("ram", 7 * GB, CPU, 8 * GB, None, "ram"),
    ("ram", 7 * GB, CPU, None, None, "ram"),
    ("device", 6 * GB, CUDA, None, 10 * GB, "device"),
    ("off", GB, CUDA, 200 * GB, 130 * GB, None),
])
def test_where_the_images_are_held(mode, nbytes, device, ram, free, where):
    assert plan_residency(mode, nbytes, device, ram, free, 0.25)[0] == where


@pytest.mark.parametrize("mode, nbytes, device, ram, free, message", [
    ("device", GB, CPU, 8 * GB, None, "needs a CUDA run"),
    ("device", 20 * GB, CUDA, 8 * GB, 10 * GB, "10.00 GB free"),
    ("ram", 9 * GB, CPU, 8 * GB, None, "8.00 GB of RAM is available"),
    ("ram", None, CPU, 8 * GB, None, "cannot be held resident"),
    ("gpu", GB, CPU, 8 * GB, None, "expected one of auto, ram, device, off"),
])
def test_impossible_placements_are_one_line_user_errors(mode, nbytes, device, ram, free, message):
    with pytest.raises(UserError, match=message) as error:
        plan_residency(mode, nbytes, device, ram, free, 0.25)
    assert "\n" not in str(error.value) and "get_args.resident_data" in str(error.value)


@pytest.mark.parametrize("binding, message", [
    ({"resident_data": "gpu"}, "get_args.resident_data = 'gpu' (one of auto, ram, device, off)"),
    ({"resident_memory_fraction": 0.0}, "get_args.resident_memory_fraction = 0.0 (a number in (0, 1])"),
    ({"resident_memory_fraction": 1.5}, "get_args.resident_memory_fraction = 1.5"),
])
def test_config_checks_the_knobs(binding, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        RunConfig(**binding)
    assert RunConfig().resident_data == "auto" and RunConfig().resident_memory_fraction == 0.25


def test_available_ram_falls_back_to_free_pages(monkeypatch):
    assert available_ram_bytes() is None or available_ram_bytes() > 0

    def no_files(*args, **kwargs):
        raise OSError("no /proc here")
    monkeypatch.setattr("builtins.open", no_files)
    ram = available_ram_bytes()
    assert ram is None or ram > 0


def test_toy_run_losses_are_identical_resident_or_not(tiny_world, tmp_path, capsys, monkeypatch):
    loads, load = [], ResidentImages.load.__func__

    def counted(cls, data, device, progress=True):
        loads.append(device)
        return load(cls, data, device, progress)
    monkeypatch.setattr(ResidentImages, "load", classmethod(counted))
    scalars = {}
    for mode in ("off", "ram"):
        out = tmp_path / mode
        code, err = run_in_process(vct_main, ["--config", tiny_world["config"], "--max_steps", "6", "--device",
                                              "cpu", "--out", out, "--gin_bindings",
                                              f"get_args.resident_data = '{mode}'"], capsys)
        assert code == 0, err
        scalars[mode] = read_scalars(out)
    assert loads == [CPU] and sorted(scalars["ram"]) == list(range(1, 7))
    for step, logged in scalars["off"].items():
        for name in ("loss", "im_loss", "dis_loss", "swaps_kept"):
            assert scalars["ram"][step][name] == logged[name], (step, name)
        assert 0.0 <= scalars["ram"][step]["data_wait_fraction"] < 1.0


@needs_cuda
def test_cuda_resident_batches_equal_the_file_path(shapes3d):
    indices = np.random.default_rng(2).integers(0, 144, 100)
    for where in (CUDA, CPU):  # on the device; in RAM, gathered and copied as uint8
        files, resident = pair(shapes3d, where)
        assert_same_batches(files, resident, indices, CUDA)
        assert_same_batches(files, resident, indices, CPU)
    _, resident = pair(shapes3d, CUDA)
    assert resident.resident.rows.is_cuda
    sampler = StepBatchSampler(144, 16, seed=0, start_step=0, total_steps=3)
    assert all(images.is_cuda for images, _, _ in step_batches(resident, sampler, CUDA))
