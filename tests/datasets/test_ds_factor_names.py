"""Every ground-truth dataset names its factors, one name per factor, in factor order."""
import pytest

from datasets import NAMES, SCENE_NAMES, get_dataset, make_synthetic_shapes3d
from datasets.synthetic.shapes3d_renderer import Shapes3DRenderer
from .ds_fixtures import write_cars, write_dsprites, write_mpi3d, write_shapes3d

MPI3D_NAMES = ("object_color", "object_shape", "object_size", "camera_height",
               "background_color", "horizontal_axis", "vertical_axis")
MPI3D_GRID = [2, 1, 2, 1, 1, 1, 2]

# dataset name -> (write its fixture under data_dir, loader options, expected factor names)
CASES = {
    "shapes3d": (write_shapes3d, {},
                 ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")),
    "dsprites": (write_dsprites, {},
                 ("color", "shape", "scale", "orientation", "position_x", "position_y")),
    "cars3d": (lambda d: write_cars(d, objects=2, azimuths=2, elevations=1, size=8), {},
               ("elevation", "azimuth", "object")),
    **{variant: (lambda d, v=variant: write_mpi3d(d, 8, folder=v, variant=v),
                 {"factor_sizes": MPI3D_GRID}, MPI3D_NAMES)
       for variant in ("mpi3d_toy", "mpi3d_realistic", "mpi3d_real")},
}


def test_every_registered_ground_truth_dataset_is_covered():
    assert set(CASES) == set(NAMES) - set(SCENE_NAMES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_factor_names_one_per_factor(tmp_path, name):
    write, options, expected = CASES[name]
    write(tmp_path)
    data = get_dataset(name, str(tmp_path), **options)
    assert data.factor_names == expected
    assert len(data.factor_names) == data.num_factors == len(data.factors_num_values)
    assert all(isinstance(factor, str) for factor in data.factor_names)


def test_synthetic_shapes3d_world_names_its_factors(tmp_path):
    make_synthetic_shapes3d(tmp_path, size=8, factor_sizes=(2, 1, 1, 1, 2, 1), progress=False)
    data = get_dataset("shapes3d", str(tmp_path))
    assert Shapes3DRenderer.factor_names == data.factor_names == CASES["shapes3d"][2]


def test_the_code_table_view_keeps_the_names(tmp_path):
    from evaluation.representation import IndexedGroundTruthView
    write_shapes3d(tmp_path)
    data = get_dataset("shapes3d", str(tmp_path))
    assert IndexedGroundTruthView(data).factor_names == data.factor_names
