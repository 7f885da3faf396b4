"""What a VCT setting is, and the registry the runner finds settings in.

A setting is one way of giving VCT image tokens and reconstruction targets: the VQ-VAE
(``vq``, main_vct.py), the mask decoder (``mask``, main_vct_mask.py), CLIP (``clip``,
main_vct_clip.py). The runner (training/runner.py) owns everything else -- flags, gin, the
run directory, the data, the training loop, checkpoints, logs -- and asks the setting for:

- ``add_arguments(parser)``: its own flags, each one sugar for a gin binding
  (``add_gin_flag``), so the run's config.gin records it and ``--resume`` keeps it;
- ``build(ctx) -> objective``: the module the training loop optimises (see
  training/objectives.py), built for the run's dataset (``ctx``);
- ``image_grids(ctx, objective) -> {name: grid}``: pictures, saved as
  ``images/<name>_<step>.png`` and in tensorboard;
- ``evaluate(ctx, objective, cache_key) -> Evaluation | None``: the setting's metrics (None
  when none apply to this dataset). The runner calls it periodically and at the end of a run,
  evaluate.py on a saved run; the runner writes the metrics JSON and logs the scalars.
- ``report_figures(ctx, objective, step) -> {name: picture}``: pictures of the live model
  (traversals, attention maps, ...) for the run's report.html, made at each evaluation and at
  the end (and by visualize.py); a picture is a matplotlib Figure, a PNG path or a
  training.report.Picture (with a caption). None by default (no pictures).

Settings return results; they never touch the trainer, and they import nothing from the
runner. Register one with ``@register_setting``; README.md "Add a setting" shows a whole one.
"""
import dataclasses
from pathlib import Path
from typing import Any, Optional

import gin

from training.errors import UserError, first_line


@dataclasses.dataclass
class RunContext:
    """What a setting may look at: the bound run config (``get_args``), the dataset and its
    batch view, where the run lives and what it runs on."""
    cfg: Any                 # training.config.RunConfig
    data: Any                # GroundTruthData (factors) or SceneDataset (masks)
    batches: Any             # training.data.GroundTruthBatches / SceneBatches
    device: Any              # torch.device
    seed: int
    run_dir: Optional[Path]  # None when nothing is written (e.g. an untrained baseline)

    @property
    def image_shape(self):
        """(H, W, C) of the dataset's images."""
        from training.data import image_shape_of
        return image_shape_of(self.data)


@dataclasses.dataclass
class Evaluation:
    """A setting's scores: ``results`` {metric: {score: value}} and the ``settings`` they were
    computed with (both go into the metrics JSON)."""
    results: dict
    settings: dict

    def scalars(self):
        """{'metric/score': value} of the numeric scores (logged as ``eval/...``)."""
        return {f"{metric}/{name}": value for metric, scores in self.results.items()
                for name, value in scores.items() if isinstance(value, (int, float))}


class Setting:
    """Base class of a setting; subclasses set the class attributes and ``build``."""
    name = ""                     # registry key, recorded in run_args.json and checkpoints
    prog = "main_vct.py"          # the entry script (for --help)
    description = ""
    run_tag = ""                  # default run directory: runs/<config><run_tag>-seed<seed>
    example_config = "shapes3d_ce.gin"  # named in --help
    # The flag that sets the number of concepts, and the binding it stands for.
    concepts_flag = ("--concepts_num", "get_args.concepts_num")

    def add_arguments(self, parser):
        """The setting's own flags (``add_gin_flag``); none by default."""

    def build(self, ctx: RunContext):
        raise NotImplementedError

    def image_grids(self, ctx: RunContext, objective) -> dict:
        return {}

    def evaluate(self, ctx: RunContext, objective, cache_key: str) -> Optional[Evaluation]:
        return None

    def report_figures(self, ctx: RunContext, objective, step) -> dict:
        return {}


SETTINGS = {}


def register_setting(cls):
    """Class decorator: make ``cls`` (a Setting subclass) available by ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    SETTINGS[cls.name] = cls
    return cls


def get_setting(name: str) -> Setting:
    """A new instance of the setting registered as ``name`` (the built-in ones are
    registered when training.settings is imported)."""
    import training.settings  # noqa: F401  (registers vq, mask, clip)
    if name not in SETTINGS:
        raise UserError(f"unknown setting '{name}' (registered: {', '.join(sorted(SETTINGS))})")
    return SETTINGS[name]()


# ----------------------------------------------------------------------------- derived values

_UNBOUND = object()


def _bound_value(configurable: str, parameter: str):
    try:
        return gin.query_parameter(f"{configurable}.{parameter}")
    except ValueError:  # not bound (or not a configurable gin knows)
        return _UNBOUND


def check_derived(configurable: str, **derived):
    """The builder sets ``configurable``'s parameters from other knobs: ``derived`` maps each
    parameter to (value, the knob it comes from). A user's gin binding of such a parameter
    that disagrees is a UserError naming the knob to use -- never silently overridden."""
    for parameter, (value, knob) in derived.items():
        bound = _bound_value(configurable, parameter)
        if bound is not _UNBOUND and bound != value:
            raise UserError(f"{configurable}.{parameter} = {bound!r} is set from {knob} (here {value!r}); "
                            f"bind {knob} instead")


def build_derived(cls, **derived):
    """``cls(**values)`` for parameters derived from other knobs (see ``check_derived``). The
    models refuse a bad argument with a ValueError; here every argument is a knob or a gin
    binding, so that is the user's to fix and becomes a one-line UserError."""
    check_derived(cls.__name__, **derived)
    try:
        return cls(**{parameter: value for parameter, (value, _) in derived.items()})
    except ValueError as err:
        raise UserError(f"bad {cls.__name__} configuration: {first_line(err)}") from None
