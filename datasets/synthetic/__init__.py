"""Synthetic ground-truth data written in the published file layouts.

``make_synthetic_shapes3d`` writes ``<out>/shapes3d/3dshapes.h5``,
``make_synthetic_mpi3d`` writes ``<out>/mpi3d_toy/mpi3d_toy.npz`` (a second, differently
built world: other factors, palettes, shapes, and two position factors) and
``make_synthetic_scenes`` writes ``<out>/clevr/...``, so ``get_dataset(name, out)``
reads them through the same loaders as the real files (``mpi3d_toy`` needs
``factor_sizes=`` for a reduced grid: MPI3D files carry no labels). Command line:
``python -m datasets.synthetic {shapes3d,mpi3d,scenes} --out DIR``.
"""
from .writers import make_synthetic_mpi3d, make_synthetic_scenes, make_synthetic_shapes3d

__all__ = ["make_synthetic_shapes3d", "make_synthetic_mpi3d", "make_synthetic_scenes"]
