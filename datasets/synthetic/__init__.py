"""Synthetic ground-truth data written in the published file layouts.

``make_synthetic_shapes3d`` writes ``<out>/shapes3d/3dshapes.h5`` and
``make_synthetic_scenes`` writes ``<out>/clevr/...``, so ``get_dataset(name, out)``
reads them through the same loaders as the real files. Command line:
``python -m datasets.synthetic {shapes3d,scenes} --out DIR``.
"""
from .writers import make_synthetic_scenes, make_synthetic_shapes3d

__all__ = ["make_synthetic_shapes3d", "make_synthetic_scenes"]
