"""Argument parsing, gin loading and one-line error reporting shared by every entry script."""
import argparse
import json
import logging
import os
import sys
from pathlib import Path

import gin
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"


class UserError(Exception):
    """A problem the user can fix (bad path, bad binding, missing checkpoint): reported as one
    line on stderr with a non-zero exit, never as a traceback."""


def resolve_config(name: str) -> Path:
    """A path to a .gin file, or a bare name looked up under configs/ ('.gin' optional)."""
    candidates = [Path(name), CONFIG_DIR / name]
    if not name.endswith(".gin"):
        candidates += [Path(name + ".gin"), CONFIG_DIR / (name + ".gin")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(f"config '{name}' not found (looked for it as a path and under {CONFIG_DIR})")


def load_gin(config_files, bindings=()):
    """Parse gin files and bindings from scratch; includes resolve next to each file and in
    configs/. Unknown configurables or parameters become a UserError."""
    import models.visual_concept_tokenizor  # noqa: F401  (registers configurables)
    import models.vqvae  # noqa: F401
    import training.config  # noqa: F401
    _register_optional_configurables()
    gin.clear_config()
    for path in config_files:
        gin.add_config_file_search_path(str(Path(path).parent))
    gin.add_config_file_search_path(str(CONFIG_DIR))
    # gin logs "Path not found" for every search location it tries before the one that has
    # an included file; only a real failure (raised below) is worth showing.
    quiet = _DropGinPathNotFound()
    logging.getLogger().addFilter(quiet)
    try:
        gin.parse_config_files_and_bindings([str(p) for p in config_files], list(bindings))
    except (ValueError, KeyError, SyntaxError, IOError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"bad gin configuration: {message}") from None
    finally:
        logging.getLogger().removeFilter(quiet)


class _DropGinPathNotFound(logging.Filter):
    def filter(self, record):
        return not str(record.msg).startswith("Path not found")


def _register_optional_configurables():
    """Packages whose configurables a .gin file may bind (metrics, datasets)."""
    for module in ("evaluation.metrics", "datasets", "training.data", "training.evaluate"):
        try:
            __import__(module)
        except ImportError:
            pass


def add_common_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); the same "
                        "seed on CPU gives the same numbers")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, "
                        "cuda:N (default auto)")
    parser.add_argument("--out", default=None, help="run directory (default runs/<config>-seed<seed>)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its newest checkpoint")
    parser.add_argument("--max_steps", type=int, default=None, help="stop after this many "
                        "optimisation steps (overrides the epoch count)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16 autocast (CUDA) or plain fp32 (default)")
    parser.add_argument("--gin_bindings", action="append", default=[], metavar="BINDING",
                        help="extra gin binding, e.g. \"get_args.lr = 3e-4\" (repeatable)")


def add_vct_arguments(parser: argparse.ArgumentParser):
    """The published main_vct flags, as real booleans/ints, plus the shared ones."""
    parser.add_argument("--config", default=None, help="gin config: a path, or a name under configs/ "
                        "(e.g. shapes3d_ce.gin)")
    parser.add_argument("--wo_dis_loss", action="store_true",
                        help="train without the concept disentangling loss (ablation)")
    parser.add_argument("--batch_size", type=int, default=None, help="images per process per step "
                        "(overrides get_args.batch_size)")
    parser.add_argument("--concepts_num", type=int, default=None,
                        help="number of concept tokens (overrides get_args.concepts_num)")
    add_common_arguments(parser)


class _GinBindingAction(argparse.Action):
    """Store the flag's value as a gin binding appended to ``--gin_bindings``."""

    def __init__(self, option_strings, dest, binding, convert=None, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.binding = binding
        self.convert = convert

    def __call__(self, parser, namespace, value, option_string=None):
        if self.convert is not None:
            value = self.convert(value)
        bindings = list(getattr(namespace, "gin_bindings", None) or [])  # never the shared default
        bindings.append(f"{self.binding} = {value!r}")
        namespace.gin_bindings = bindings
        setattr(namespace, self.dest, value)


def add_gin_binding_flag(parser: argparse.ArgumentParser, flag, binding, type=str, convert=None, help=None):
    """A flag that sets the gin parameter ``binding`` (e.g. ``get_args.clip_weights``): its value
    becomes part of --gin_bindings, so the run's config.gin records it and --resume keeps it.
    ``convert`` maps the parsed value before it is bound (e.g. a relative path to an absolute)."""
    parser.add_argument(flag, type=type, default=None, action=_GinBindingAction, binding=binding,
                        convert=convert, help=help)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but CUDA is not available here")
    return device


def save_run_args(run_dir: Path, args: dict):
    path = run_dir / "run_args.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(args, indent=2, sort_keys=True))
    os.replace(tmp, path)


def load_run_args(run_dir: Path) -> dict:
    path = Path(run_dir) / "run_args.json"
    if not path.is_file():
        raise UserError(f"--resume {run_dir}: not a run directory (no run_args.json)")
    return json.loads(path.read_text())


def run_main(main_fn, argv=None):
    """Call ``main_fn(argv)``; user errors become one line on stderr and exit status 2."""
    from datasets.errors import DatasetError
    try:
        from evaluation.errors import EvaluationError
    except ImportError:  # pragma: no cover
        EvaluationError = UserError
    try:
        return main_fn(argv)
    except (UserError, DatasetError, EvaluationError) as err:
        # gin appends a multi-line note to errors raised inside configurables: keep line one.
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; the newest checkpoint is kept (continue with --resume)", file=sys.stderr)
        sys.exit(130)
