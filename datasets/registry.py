"""get_dataset: every dataset by name, the one entry point configs and scripts use."""
from __future__ import annotations

from pathlib import Path

from . import cars3d, dsprites, mpi3d, multi_object_tfrecord, scenes, shapes3d
from .data_root import ENV, data_root
from .errors import DatasetError
from .gin_settings import configurable

# Published VCT config names -> ours (the published clevr_ce.gin spells it "clever").
ALIASES = {
    "mpi_toy": "mpi3d_toy",
    "mpi_mid": "mpi3d_realistic",
    "mpi_real": "mpi3d_real",
    "clever": "clevr",
    "object_room_npz": "objects_room_npz",
}

_LOADERS = {
    "shapes3d": shapes3d.load,
    "mpi3d_toy": lambda d, **o: mpi3d.load(d, "mpi3d_toy", **o),
    "mpi3d_realistic": lambda d, **o: mpi3d.load(d, "mpi3d_realistic", **o),
    "mpi3d_real": lambda d, **o: mpi3d.load(d, "mpi3d_real", **o),
    "dsprites": dsprites.load,
    "cars3d": cars3d.load,
    "clevr": scenes.load_clevr,
    "objects_room_npz": scenes.load_objects_room_npz,
    "clevr_with_masks": lambda d, **o: multi_object_tfrecord.load(d, "clevr_with_masks", **o),
    "objects_room": lambda d, **o: multi_object_tfrecord.load(d, "objects_room", **o),
}

# Keyword options each loader accepts (checked up front for a clear error).
_OPTIONS = {
    "shapes3d": (), "dsprites": (), "cars3d": (),
    "mpi3d_toy": ("factor_sizes",), "mpi3d_realistic": ("factor_sizes",), "mpi3d_real": ("factor_sizes",),
    "clevr": ("split", "resolution"), "objects_room_npz": ("resolution",),
    "clevr_with_masks": ("resolution", "max_scenes"), "objects_room": ("resolution", "max_scenes"),
}

NAMES = tuple(_LOADERS)
SCENE_NAMES = ("clevr", "objects_room_npz", "clevr_with_masks", "objects_room")


def canonical_name(name: str) -> str:
    key = name.lower()
    key = ALIASES.get(key, key)
    if key not in _LOADERS:
        raise DatasetError(f"unknown dataset '{name}'; known: {', '.join(NAMES)} "
                           f"(aliases: {', '.join(ALIASES)})")
    return key


@configurable
def get_dataset(name: str | None = None, data_dir: str | None = None, **options):
    """The dataset ``name`` read from its published layout under ``data_dir``.

    Arguments not given are taken from the gin bindings of ``get_dataset``
    (``get_dataset.name``, ``get_dataset.data_dir``, ...); a ``data_dir`` given by
    neither is ``$VCT_DATA`` (datasets/data_root.py).
    Factor datasets (shapes3d, mpi3d_*, dsprites, cars3d) are GroundTruthData;
    scene datasets (clevr, clevr_with_masks, objects_room, objects_room_npz) are
    SceneDataset. ``options`` go to the loader: ``factor_sizes`` (mpi3d_*),
    ``split`` and ``resolution`` (clevr), ``resolution`` and ``max_scenes``
    (TFRecord scenes), ``resolution`` (objects_room_npz).
    """
    from_env = data_dir is None and data_root() is not None
    if from_env:
        data_dir = data_root()  # an explicit argument or binding wins over $VCT_DATA
    if name is None or data_dir is None:
        raise DatasetError(f"get_dataset needs a dataset name and a data_dir (arguments, gin "
                           f"bindings get_dataset.name / get_dataset.data_dir, or ${ENV})")
    key = canonical_name(name)
    if not Path(data_dir).is_dir():
        hint = f"from ${ENV}" if from_env else "set it with set_dataset_dir.py --datasets PATH"
        raise DatasetError(f"data directory does not exist: {data_dir} ({hint})")
    loader = _LOADERS[key]
    accepted = _OPTIONS[key]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(f"{key} does not take option(s) {unknown}; it takes {list(accepted) or 'none'}")
    return loader(data_dir, **options)
