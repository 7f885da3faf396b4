"""The second synthetic world (MPI3D look-alike): every factor shows, combinations are distinct,
the file is the real MPI3D layout and loads through datasets.mpi3d with the reduced grid."""
import ast
import hashlib
import zipfile

import numpy as np
import pytest

from datasets import DatasetError, get_dataset
from datasets.mpi3d import FACTOR_NAMES
from datasets.synthetic import make_synthetic_mpi3d
from datasets.synthetic.__main__ import main as synthetic_main
from datasets.synthetic.mpi3d_renderer import FULL_FACTOR_SIZES, MPI3DRenderer
from .ds_fixtures import assert_single_factor_changes_show, grid

TOY_GRID = (4, 3, 2, 3, 3, 6, 6)   # configs/toy_mpi3d_shared.gin
SMALL_GRID = (2, 2, 2, 2, 2, 3, 2)


@pytest.mark.parametrize("size", [32, 64])
def test_changing_any_single_factor_visibly_changes_the_image(size):
    assert_single_factor_changes_show(MPI3DRenderer(size, FULL_FACTOR_SIZES), FULL_FACTOR_SIZES)


@pytest.mark.parametrize("factor_sizes", [TOY_GRID, (6, 6, 2, 2, 6, 3, 3)])
def test_no_two_factor_combinations_render_alike(factor_sizes):
    renderer = MPI3DRenderer(32, factor_sizes)
    factors = grid(factor_sizes)
    images = np.concatenate([renderer.render_block(*lead) for lead in np.ndindex(*factor_sizes[:4])])
    assert len({hashlib.sha1(image.tobytes()).digest() for image in images}) == len(factors)
    rows = np.random.RandomState(1).permutation(len(factors))[:300]
    np.testing.assert_array_equal(renderer.render(factors[rows]), images[rows])  # row order = grid order


def test_file_is_the_mpi3d_layout_and_loads_through_the_real_loader(tmp_path):
    path = make_synthetic_mpi3d(tmp_path, size=32, factor_sizes=TOY_GRID, progress=False)
    assert path == tmp_path / "mpi3d_toy" / "mpi3d_toy.npz"
    with np.load(path, allow_pickle=False) as archive:
        images = archive["images"]
    assert images.dtype == np.uint8 and images.shape == (int(np.prod(TOY_GRID)), 32, 32, 3)
    data = get_dataset("mpi3d_toy", str(tmp_path), factor_sizes=list(TOY_GRID))
    assert data.factors_num_values == list(TOY_GRID) and data.observation_shape == (32, 32, 3)
    assert tuple(data.factor_names) == FACTOR_NAMES
    factors, observations = data.sample(64, np.random.RandomState(0))
    expected = MPI3DRenderer(32, TOY_GRID).render(factors)
    np.testing.assert_array_equal(observations, expected.astype(np.float32) / np.float32(255))
    with pytest.raises(DatasetError, match="factor_sizes"):
        get_dataset("mpi3d_toy", str(tmp_path))  # no labels in the file: the grid must be given


def test_same_settings_reuse_the_file_and_others_re_render_with_identical_bytes(tmp_path):
    path = make_synthetic_mpi3d(tmp_path / "a", size=32, factor_sizes=SMALL_GRID, progress=False)
    again = make_synthetic_mpi3d(tmp_path / "b", size=32, factor_sizes=SMALL_GRID, progress=False)
    assert path.read_bytes() == again.read_bytes()  # deterministic, down to the zip timestamps
    assert get_dataset("mpi3d_toy", str(tmp_path / "a"), factor_sizes=SMALL_GRID).num_observations == 192
    stamp = path.stat().st_mtime_ns
    make_synthetic_mpi3d(tmp_path / "a", size=32, factor_sizes=SMALL_GRID, progress=False)
    assert path.stat().st_mtime_ns == stamp  # identical request: reused, not re-rendered
    bigger = (2, 2, 2, 2, 2, 3, 3)
    make_synthetic_mpi3d(tmp_path / "a", size=32, factor_sizes=bigger, progress=False)
    assert path.stat().st_mtime_ns != stamp
    data = get_dataset("mpi3d_toy", str(tmp_path / "a"), factor_sizes=bigger)  # not the stale cache
    observations = data.sample_observations_from_factors(grid(bigger), np.random.RandomState(0))
    expected = MPI3DRenderer(32, bigger).render(grid(bigger)).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(observations, expected)
    stamp = path.stat().st_mtime_ns
    make_synthetic_mpi3d(tmp_path / "a", size=32, factor_sizes=bigger, overwrite=True, progress=False)
    assert path.stat().st_mtime_ns != stamp


def test_a_real_mpi3d_file_is_never_overwritten(tmp_path):
    real = tmp_path / "mpi3d_toy" / "mpi3d_toy.npz"
    real.parent.mkdir()
    np.savez(real, images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="not written by make_synthetic_mpi3d"):
        make_synthetic_mpi3d(tmp_path, size=32, factor_sizes=SMALL_GRID, progress=False)
    with zipfile.ZipFile(real) as archive:
        assert archive.namelist() == ["images.npy"]


def test_cli_writes_mpi3d_and_checks_the_grid(tmp_path, capsys):
    assert synthetic_main(["mpi3d", "--out", str(tmp_path), "--size", "32", "--factors", "2,2,1,2,2,3,2"]) == 0
    assert get_dataset("mpi3d_toy", str(tmp_path), factor_sizes=[2, 2, 1, 2, 2, 3, 2]).num_observations == 96
    with pytest.raises(SystemExit):
        synthetic_main(["mpi3d", "--out", str(tmp_path), "--factors", "7,1,1,1,1,1,1"])
    assert "object_color" in capsys.readouterr().err


def test_toy_mpi3d_config_keeps_the_toy_recipe_and_tells_the_loader_its_grid(tmp_path):
    import gin
    from training.cli import load_gin

    def bindings(config, extra=()):
        load_gin([f"configs/{config}"], list(extra))
        return {line.split(" = ")[0]: line for line in gin.config_str().splitlines() if " = " in line}

    toy, world = bindings("toy_ce.gin"), bindings("toy_mpi3d_ce.gin")
    changed = {key for key in toy.keys() | world.keys() if toy.get(key) != world.get(key)}
    data_only = {"get_args.name", "get_args.data_dir", "get_args.vqvae_path", "get_args.num_epochs",
                 "get_args.shape_num", "MPI3D_TOY_GRID", "make_synthetic_mpi3d.size",
                 "make_synthetic_mpi3d.factor_sizes", "get_dataset.factor_sizes",
                 "get_args.save_interval"}  # when it evaluates, not what it trains
    assert changed <= data_only, changed - data_only
    def value(config, key):
        return ast.literal_eval(config[key].split(" = ")[1])

    def steps(config, grid_key):  # images // batch * epochs
        images = int(np.prod(value(config, grid_key)))
        return images // value(config, "get_args.batch_size") * value(config, "get_args.num_epochs")
    toy_steps = steps(toy, "make_synthetic_shapes3d.factor_sizes")
    assert abs(steps(world, "MPI3D_TOY_GRID") - toy_steps) <= toy_steps // 20
    # The maker and the loader read one macro: rebinding it changes both (a small grid here).
    bindings("toy_mpi3d_ce.gin", [f"MPI3D_TOY_GRID = {list(SMALL_GRID)}"])
    make_synthetic_mpi3d(tmp_path, progress=False)
    data = get_dataset("mpi3d_toy", str(tmp_path))
    assert data.factors_num_values == list(SMALL_GRID) and data.observation_shape == (32, 32, 3)
