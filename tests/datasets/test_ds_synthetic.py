"""Synthetic worlds: every factor shows, combinations are distinct, files pass the real loaders."""
import hashlib
import time

import numpy as np
import pytest

from datasets import get_dataset, make_synthetic_scenes, make_synthetic_shapes3d
from datasets.synthetic.__main__ import main as synthetic_main
from datasets.synthetic.scenes_renderer import MAX_OBJECTS, MIN_OBJECTS, NUM_MASKS
from datasets.synthetic.shapes3d_renderer import FULL_FACTOR_SIZES, Shapes3DRenderer
from .ds_fixtures import assert_single_factor_changes_show, grid

TOY_GRID = (4, 4, 4, 3, 4, 5)


@pytest.mark.parametrize("size", [32, 64])
def test_changing_any_single_factor_visibly_changes_the_image(size):
    assert_single_factor_changes_show(Shapes3DRenderer(size, FULL_FACTOR_SIZES), FULL_FACTOR_SIZES, bases=12)


def test_no_two_factor_combinations_render_alike_and_rendering_is_deterministic():
    renderer = Shapes3DRenderer(32, TOY_GRID)
    factors = grid(TOY_GRID)
    images = renderer.render(factors)
    digests = {hashlib.sha1(image.tobytes()).digest() for image in images}
    assert len(digests) == len(factors)
    shuffled = np.random.RandomState(1).permutation(len(factors))[:200]
    np.testing.assert_array_equal(Shapes3DRenderer(32, TOY_GRID).render(factors[shuffled]), images[shuffled])


def test_synthetic_shapes3d_file_passes_the_real_loader(tmp_path):
    start = time.perf_counter()
    path = make_synthetic_shapes3d(tmp_path, size=32, factor_sizes=TOY_GRID, progress=False)
    assert time.perf_counter() - start < 10  # the toy config builds on demand
    assert path == tmp_path / "shapes3d" / "3dshapes.h5"
    data = get_dataset("shapes3d", str(tmp_path))
    assert data.factors_num_values == list(TOY_GRID) and data.observation_shape == (32, 32, 3)
    factors, observations = data.sample(64, np.random.RandomState(0))
    expected = Shapes3DRenderer(32, TOY_GRID).render(factors).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(observations, expected)
    stamp = path.stat().st_mtime_ns
    make_synthetic_shapes3d(tmp_path, size=32, factor_sizes=TOY_GRID, progress=False)
    assert path.stat().st_mtime_ns == stamp  # identical request: reused, not re-rendered


def test_synthetic_cli_writes_the_real_layouts(tmp_path, capsys):
    assert synthetic_main(["shapes3d", "--out", str(tmp_path), "--size", "32", "--factors", "2,2,2,2,4,3"]) == 0
    assert get_dataset("shapes3d", str(tmp_path)).factors_num_values == [2, 2, 2, 2, 4, 3]
    assert synthetic_main(["scenes", "--out", str(tmp_path), "--num", "6", "--num-test", "3", "--size", "32"]) == 0
    assert len(get_dataset("clevr", str(tmp_path), split="test")) == 3
    with pytest.raises(SystemExit):
        synthetic_main(["shapes3d", "--out", str(tmp_path), "--factors", "2,2,2"])
    assert "six" in capsys.readouterr().err


def test_scenes_are_deterministic_given_seed_and_masks_partition_pixels(tmp_path):
    make_synthetic_scenes(tmp_path / "a", num=12, size=32, seed=3, progress=False)
    make_synthetic_scenes(tmp_path / "b", num=12, size=32, seed=3, progress=False)
    make_synthetic_scenes(tmp_path / "c", num=12, size=32, seed=4, progress=False)
    a, b, c = (get_dataset("clevr", str(tmp_path / x), resolution=None) for x in "abc")
    assert len(a) == 12 and a.num_masks == NUM_MASKS
    for i in range(12):
        image, masks = a[i]
        assert np.array_equal(image, b[i][0]) and np.array_equal(masks, b[i][1])
        assert masks.sum(0).eq(1).all()                     # every pixel in exactly one mask
        objects = int(masks[1:].flatten(1).any(1).sum())   # non-empty object masks
        assert MIN_OBJECTS <= objects <= MAX_OBJECTS
        assert masks[1:objects + 1].flatten(1).any(1).all()  # no hidden object
    assert any(not np.array_equal(a[i][0], c[i][0]) for i in range(12))
    test_split = get_dataset("clevr", str(tmp_path / "a"), split="test")
    assert len(test_split) == 1 and test_split[0][1].shape == (NUM_MASKS, 64, 64)


def test_synthetic_writers_never_overwrite_real_data(tmp_path):
    from datasets import DatasetError
    from .ds_fixtures import assert_one_line_error, write_clevr, write_shapes3d
    path, images = write_shapes3d(tmp_path)
    with pytest.raises(DatasetError) as error:
        make_synthetic_shapes3d(tmp_path, size=32, factor_sizes=TOY_GRID, overwrite=True, progress=False)
    assert_one_line_error(error.value, path, "refusing to overwrite")
    np.testing.assert_array_equal(get_dataset("shapes3d", str(tmp_path)).images.read(np.arange(len(images))), images)
    write_clevr(tmp_path, n=2)
    with pytest.raises(DatasetError) as error:
        make_synthetic_scenes(tmp_path, num=3, size=32, progress=False)
    assert_one_line_error(error.value, tmp_path / "clevr", "refusing to overwrite")
    assert len(get_dataset("clevr", str(tmp_path), split="test")) == 2


def test_gin_binds_the_synthetic_grid_like_the_toy_config(tmp_path):
    import gin
    gin.clear_config()
    try:
        gin.parse_config(["make_synthetic_shapes3d.size = 32",
                          "make_synthetic_shapes3d.factor_sizes = [2, 2, 2, 2, 4, 3]",
                          "make_synthetic_shapes3d.progress = False"])
        make_synthetic_shapes3d(tmp_path)
        make_synthetic_shapes3d(tmp_path / "explicit", size=64)  # the caller's argument wins
    finally:
        gin.clear_config()
    assert get_dataset("shapes3d", str(tmp_path)).observation_shape == (32, 32, 3)
    explicit = get_dataset("shapes3d", str(tmp_path / "explicit"))
    assert explicit.observation_shape == (64, 64, 3) and explicit.factors_num_values == [2, 2, 2, 2, 4, 3]
