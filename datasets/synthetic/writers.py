"""Write the synthetic datasets to disk in the real formats (each file written atomically)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from common.atomic import atomic_write

from ..array_cache import cache_path_for, npy_header, npz_member_names
from ..errors import DatasetError
from ..gin_settings import configurable
from .mpi3d_renderer import FULL_FACTOR_SIZES as MPI3D_FULL_FACTOR_SIZES, MPI3DRenderer
from .scenes_renderer import NUM_MASKS, SceneRenderer
from .shapes3d_renderer import FULL_FACTOR_SIZES, Shapes3DRenderer

# Bump when the renderer's pixels change, so stale files are re-rendered.
SHAPES3D_RENDERER_VERSION = 1
SCENES_RENDERER_VERSION = 1
MPI3D_RENDERER_VERSION = 1


def _reusable(path, read_attributes, wanted, maker, overwrite) -> bool:
    """True when ``path`` holds this maker's render with the ``wanted`` (version, attributes);
    a file it did not write (the real dataset) is refused rather than overwritten."""
    if not path.exists():
        return False
    version, attributes = read_attributes(path)
    if version is None:
        raise DatasetError(f"{path} exists and was not written by {maker}; "
                           f"refusing to overwrite it: render synthetic data into another directory")
    return not overwrite and (version, attributes) == wanted


@configurable
def make_synthetic_shapes3d(out_dir: str | Path, size: int = 64,
                            factor_sizes: Sequence[int] = FULL_FACTOR_SIZES,
                            seed: int | None = None, overwrite: bool = False,
                            progress: bool = True) -> Path:
    """Render the Shapes3D-like grid into ``<out_dir>/shapes3d/3dshapes.h5``.

    The file has the published layout ('images' (N, size, size, 3) uint8, 'labels'
    (N, 6) float64 values, rows in mixed-radix order). An existing file rendered
    with the same size, grid and renderer version is reused unless ``overwrite``.
    ``seed`` is accepted for symmetry with make_synthetic_scenes; the renderer
    has no randomness, so it does not change the output. A 3dshapes.h5 that this
    function did not write (e.g. the real one) is never overwritten.
    """
    import h5py
    del seed
    factor_sizes = tuple(int(s) for s in factor_sizes)
    path = Path(out_dir) / "shapes3d" / "3dshapes.h5"
    if _reusable(path, _synthetic_attributes, (SHAPES3D_RENDERER_VERSION, (size, factor_sizes)),
                 "make_synthetic_shapes3d", overwrite):
        return path
    renderer = Shapes3DRenderer(size, factor_sizes)
    total = int(np.prod(factor_sizes))
    block = int(np.prod(factor_sizes[3:]))
    # h5py writes through the file object; HDF5 reads its own metadata back, hence "w+b".
    with atomic_write(path, "w+b") as file, h5py.File(file, "w") as f:
        images = f.create_dataset("images", (total, size, size, 3), dtype=np.uint8)
        grid = np.array(np.unravel_index(np.arange(total), factor_sizes)).T
        f.create_dataset("labels", data=renderer.labels(grid))
        f.attrs.update({"synthetic_renderer_version": SHAPES3D_RENDERER_VERSION,
                        "image_size": size, "factor_sizes": factor_sizes})
        hues = np.ndindex(*factor_sizes[:3])  # the leading factors; one block each
        for number, (floor, wall, obj) in enumerate(
                tqdm(hues, total=total // block, unit="block", disable=not progress,
                     desc=f"rendering {total} Shapes3D images")):
            images[number * block:(number + 1) * block] = renderer.render_block(floor, wall, obj)
    return path


def _synthetic_attributes(path: Path):
    """(renderer version, (size, factor sizes)) of a synthetic file; (None, None) otherwise."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            if "synthetic_renderer_version" not in f.attrs:
                return None, None
            return (int(f.attrs["synthetic_renderer_version"]),
                    (int(f.attrs["image_size"]), tuple(int(s) for s in f.attrs["factor_sizes"])))
    except (OSError, KeyError):
        return None, None


@configurable
def make_synthetic_scenes(out_dir: str | Path, num: int = 1000, size: int = 64, seed: int = 0,
                          num_test: int | None = None, overwrite: bool = False,
                          progress: bool = True) -> Path:
    """Render CLEVR-like scenes into ``<out_dir>/clevr`` in the published VCT layout.

    Train: ``images_clevr/CLEVR_######.png`` (+ ``images_clevr/masks.npz``, which the
    published training split lacks); test: ``clevr_test/images/*.png`` +
    ``clevr_test/masks.npz`` with 'masks' (N, 7, size, size) bool. ``num_test``
    defaults to num // 10 (at least 1). Deterministic given ``seed``. A clevr
    folder this function did not write (e.g. the real one) is never touched.
    """
    num_test = max(1, num // 10) if num_test is None else num_test
    root = Path(out_dir) / "clevr"
    # The stamp marks the folder as ours (written before rendering) and records what it holds.
    stamp = root / ".synthetic_scenes"
    signature = f"{SCENES_RENDERER_VERSION} {num} {num_test} {size} {seed}"
    if root.exists() and any(root.iterdir()) and not stamp.is_file():
        raise DatasetError(f"{root} exists and was not written by make_synthetic_scenes; "
                           f"refusing to overwrite it: render synthetic data into another directory")
    if not overwrite and stamp.is_file() and stamp.read_text() == signature:
        return root
    renderer = SceneRenderer(size)
    root.mkdir(parents=True, exist_ok=True)
    stamp.write_text("incomplete")
    for split, folder, masks_file, count in (
            (0, root / "images_clevr", root / "images_clevr" / "masks.npz", num),
            (1, root / "clevr_test" / "images", root / "clevr_test" / "masks.npz", num_test)):
        rng = np.random.default_rng([seed, split])
        _write_scene_split(renderer, rng, folder, masks_file, count, progress)
    stamp.write_text(signature)
    return root


def _write_scene_split(renderer: SceneRenderer, rng, folder: Path, masks_file: Path,
                       count: int, progress: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("CLEVR_*.png"):
        old.unlink()
    size = renderer.size
    # Stream the masks into the npz member so memory stays flat for any count.
    with atomic_write(masks_file, "wb") as file, \
            zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open("masks.npy", "w", force_zip64=True) as member:
        member.write(npy_header(np.dtype(bool), (count, NUM_MASKS, size, size)))
        for index in tqdm(range(count), disable=not progress, unit="scene",
                          desc=f"rendering {count} scenes into {folder}"):
            image, masks = renderer.sample(rng)
            Image.fromarray(image).save(folder / f"CLEVR_{index:06d}.png")
            member.write(np.ascontiguousarray(masks).tobytes())


@configurable
def make_synthetic_mpi3d(out_dir: str | Path, size: int = 64,
                         factor_sizes: Sequence[int] = MPI3D_FULL_FACTOR_SIZES,
                         seed: int | None = None, overwrite: bool = False,
                         progress: bool = True) -> Path:
    """Render the MPI3D-like grid into ``<out_dir>/mpi3d_toy/mpi3d_toy.npz``.

    The file has the published layout ('images' (N, size, size, 3) uint8, rows in
    mixed-radix order of ``factor_sizes``). MPI3D files carry no labels, so the loader
    must be told a reduced grid: ``get_dataset('mpi3d_toy', out_dir, factor_sizes=...)``
    (configs bind ``get_dataset.factor_sizes`` to the same macro as this maker's). The
    archive also records the renderer version, size and grid (members the real file lacks
    and the loader ignores), so an identical request reuses the file unless ``overwrite``.
    ``seed`` is accepted for symmetry; the renderer has no randomness. An mpi3d_toy.npz
    this function did not write (e.g. the real one) is never overwritten.
    """
    del seed
    factor_sizes = tuple(int(s) for s in factor_sizes)
    path = Path(out_dir) / "mpi3d_toy" / "mpi3d_toy.npz"
    if _reusable(path, _synthetic_npz_attributes, (MPI3D_RENDERER_VERSION, (size, factor_sizes)),
                 "make_synthetic_mpi3d", overwrite):
        return path
    renderer = MPI3DRenderer(size, factor_sizes)
    total = int(np.prod(factor_sizes))
    leading = list(np.ndindex(*factor_sizes[:4]))  # one block of rows per leading combination
    with atomic_write(path, "wb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive:
        # Streamed into the member, so memory stays flat for the full grid.
        with archive.open(_fixed_time_entry("images.npy"), "w", force_zip64=True) as member:
            member.write(npy_header(np.dtype(np.uint8), (total, size, size, 3)))
            for block in tqdm(leading, disable=not progress, unit="block",
                              desc=f"rendering {total} MPI3D images"):
                member.write(renderer.render_block(*block).tobytes())
        for name, value in (("synthetic_renderer_version", MPI3D_RENDERER_VERSION),
                            ("image_size", size), ("factor_sizes", factor_sizes)):
            _write_small_member(archive, name, np.asarray(value, dtype=np.int64))
    # The loader's .npy cache of the old file would otherwise hold the old images.
    cache_path_for(path, "images").unlink(missing_ok=True)
    return path


def _fixed_time_entry(name: str) -> zipfile.ZipInfo:
    """A deflated zip entry with a fixed timestamp, so identical settings give identical bytes."""
    entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    entry.compress_type = zipfile.ZIP_DEFLATED
    return entry


def _write_small_member(archive: zipfile.ZipFile, name: str, value: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, value, allow_pickle=False)
    archive.writestr(_fixed_time_entry(name + ".npy"), buffer.getvalue())


def _synthetic_npz_attributes(path: Path):
    """(renderer version, (size, factor sizes)) of a synthetic npz; (None, None) otherwise."""
    try:
        if "synthetic_renderer_version" not in npz_member_names(path, ""):
            return None, None
        with np.load(path, allow_pickle=False) as archive:
            return (int(archive["synthetic_renderer_version"]),
                    (int(archive["image_size"]), tuple(int(s) for s in archive["factor_sizes"])))
    except (DatasetError, OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None, None
