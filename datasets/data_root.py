"""The default data root, ``$VCT_DATA`` (as disentanglement_lib has DISENTANGLEMENT_LIB_DATA).

Where a data folder is chosen, the precedence is: an explicit value (an argument,
a gin binding, a command-line flag) > ``$VCT_DATA`` > the built-in default. The
built-in default of the run configs, ``"data"``, is also what the published
configs bind as a placeholder (set_dataset_dir.py rewrites it), so that value
counts as "left at its default". Synthetic datasets never use ``$VCT_DATA``:
they are rendered where their config says, not into the user's dataset folder.
"""
from __future__ import annotations

import os

ENV = "VCT_DATA"
BUILTIN_DEFAULT = "data"  # training.config.RunConfig.data_dir and the configs' placeholder


def data_root() -> str | None:
    """``$VCT_DATA`` with ``~`` expanded, or None when it is unset or empty."""
    value = os.environ.get(ENV, "").strip()
    return os.path.expanduser(value) if value else None


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str | None:
    """``data_dir``, unless it is unset (None) or the built-in default: then ``$VCT_DATA``
    when set, else ``data_dir`` unchanged."""
    if data_dir is None or str(data_dir) == BUILTIN_DEFAULT:
        return data_root() or (None if data_dir is None else str(data_dir))
    return str(data_dir)
