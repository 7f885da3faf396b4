"""Argument parsing, gin loading and one-line error reporting shared by every entry script.

gin is the one way to configure a run: a flag is sugar for a gin binding (``add_gin_flag``),
so the run's config.gin holds every value it used and ``--resume`` keeps them. This module
imports no torch, so ``--help`` stays quick.
"""
import argparse
import json
import logging
import signal
import sys
import tokenize
from pathlib import Path

import gin

from common.atomic import atomic_write_text
from training.errors import UserError, first_line, user_errors

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"


def resolve_config(name: str) -> Path:
    """A path to a .gin file, or a bare name looked up under configs/ ('.gin' optional)."""
    candidates = [Path(name), CONFIG_DIR / name]
    if not name.endswith(".gin"):
        candidates += [Path(name + ".gin"), CONFIG_DIR / (name + ".gin")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(f"config '{name}' not found (looked for it as a path and under {CONFIG_DIR})")


def register_configurables():
    """Import every module whose configurables a .gin file may bind."""
    import datasets  # noqa: F401
    import evaluation.metrics  # noqa: F401
    import models.mask_decoder  # noqa: F401
    import models.visual_concept_tokenizor  # noqa: F401
    import models.vqvae  # noqa: F401
    import training.config  # noqa: F401
    import training.engine  # noqa: F401
    import training.settings  # noqa: F401
    import training.tokenizers.clip_weights  # noqa: F401
    import training.tokenizers.mask  # noqa: F401


# A saved configuration (in a checkpoint) may import only the project's own modules: gin runs
# an import line as code, and a checkpoint may come from someone else.
TRUSTED_IMPORTS = ("models", "training", "datasets", "evaluation")


def check_config_imports(text):
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["import"] and len(words) > 1 and words[1].split(".")[0] not in TRUSTED_IMPORTS:
            raise UserError(f"the saved configuration imports '{words[1]}', which is not a module of this "
                            f"project; refusing to run it")
        if words[:1] == ["include"]:
            raise UserError("the saved configuration includes another file; refusing to run it")


def load_gin(config_files=(), bindings=(), config_text=None, trusted=True):
    """Parse gin files (and/or the text of a saved config) and bindings from scratch; includes
    resolve next to each file and in configs/. Unknown configurables or parameters, and
    syntax errors, become a UserError. ``trusted=False``: ``config_text`` came from a
    checkpoint, and may import only this project's modules."""
    if config_text is not None and not trusted:
        check_config_imports(config_text)
    register_configurables()
    gin.clear_config()
    for path in config_files:
        gin.add_config_file_search_path(str(Path(path).parent))
    gin.add_config_file_search_path(str(CONFIG_DIR))
    # gin logs "Path not found" for every search location it tries before the one that has
    # an included file; only a real failure (raised below) is worth showing.
    quiet = _DropGinPathNotFound()
    logging.getLogger().addFilter(quiet)
    try:
        if config_text is not None:
            gin.parse_config(config_text)
        gin.parse_config_files_and_bindings([str(p) for p in config_files], list(bindings))
    except (ValueError, KeyError, SyntaxError, IOError, ImportError, tokenize.TokenError) as err:
        raise UserError(f"bad gin configuration: {first_line(err)}") from None
    finally:
        logging.getLogger().removeFilter(quiet)


class _DropGinPathNotFound(logging.Filter):
    def filter(self, record):
        return not str(record.msg).startswith("Path not found")


class _GinBindingAction(argparse.Action):
    """Store the flag's value as a gin binding appended to ``--gin_bindings`` (in command-line
    order, so a later ``--gin_bindings`` of the same parameter wins, and vice versa)."""

    def __init__(self, option_strings, dest, binding, convert=None, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.binding = binding
        self.convert = convert

    def __call__(self, parser, namespace, value, option_string=None):
        switch = self.nargs == 0
        value = self.const if switch else value
        if self.convert is not None:
            value = self.convert(value)
        bindings = list(getattr(namespace, "gin_bindings", None) or [])  # never the shared default
        bindings.append(f"{self.binding} = {value!r}")
        namespace.gin_bindings = bindings
        setattr(namespace, self.dest, True if switch else value)  # a switch reads True when given


def add_gin_flag(parser: argparse.ArgumentParser, flag, binding, type=str, convert=None, help=None):
    """A flag that sets the gin parameter ``binding`` (e.g. ``get_args.batch_size``). ``convert``
    maps the parsed value before it is bound (e.g. a relative path to an absolute one)."""
    parser.add_argument(flag, type=type, default=None, action=_GinBindingAction, binding=binding,
                        convert=convert, help=help)


def add_gin_switch(parser: argparse.ArgumentParser, flag, binding, value, help=None):
    """A flag without a value that binds ``binding = value`` (e.g. --wo_dis_loss)."""
    parser.add_argument(flag, nargs=0, const=value, default=None, action=_GinBindingAction,
                        binding=binding, help=help)


def add_common_arguments(parser: argparse.ArgumentParser, run_tag=""):
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0; a resumed run "
                        "keeps its own); the same seed on CPU gives the same numbers")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, "
                        "cuda:N (default auto)")
    parser.add_argument("--out", default=None, help=f"run directory (default runs/<config>{run_tag}-seed<seed>, "
                        f"with -wo_dis before -seed for --wo_dis_loss)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its newest checkpoint, with the configuration "
                             "saved in that checkpoint (flags and bindings given here are bound after it)")
    add_gin_flag(parser, "--max_steps", "get_args.max_steps", type=int,
                 help="stop after this many optimisation steps (get_args.max_steps; default: the epochs)")
    parser.add_argument("--cpu_threads", type=int, default=None, metavar="N",
                        help="intra-op CPU threads (default: torch's, one per physical core; the processes of a "
                             "torchrun job split the cores; OMP_NUM_THREADS also sets it)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="bf16 autocast (CUDA) or plain fp32 (default fp32; a resumed run keeps its own)")
    parser.add_argument("--gin_bindings", action="append", default=[], metavar="BINDING",
                        help="extra gin binding, e.g. \"get_args.lr = 3e-4\" (repeatable)")


def add_vct_arguments(parser: argparse.ArgumentParser, concepts_flag=("--concepts_num", "get_args.concepts_num"),
                      run_tag="", example_config="shapes3d_ce.gin"):
    """The published main_vct flags, as gin bindings with real booleans/ints, plus the shared ones."""
    parser.add_argument("--config", default=None, help=f"gin config: a path, or a name under configs/ "
                        f"(e.g. {example_config}); required unless --resume")
    add_gin_switch(parser, "--wo_dis_loss", "get_args.dis_loss", False,
                   help="train without the concept disentangling loss (ablation; get_args.dis_loss = False)")
    add_gin_flag(parser, "--batch_size", "get_args.batch_size", type=int,
                 help="images per process per step (get_args.batch_size)")
    flag, binding = concepts_flag
    add_gin_flag(parser, flag, binding, type=int, help=f"number of concept tokens ({binding})")
    add_common_arguments(parser, run_tag)


def parse_vct_arguments(setting, argv=None):
    """The flags of ``setting``'s entry script: the shared ones, then the setting's own."""
    # No abbreviations: main_vct_clip.py would take --concepts_num for --concepts_num_clip.
    parser = argparse.ArgumentParser(prog=setting.prog, description=setting.description, allow_abbrev=False)
    add_vct_arguments(parser, setting.concepts_flag, setting.run_tag, setting.example_config)
    setting.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.resume is None and args.config is None:
        parser.error("--config is required (or --resume RUN_DIR)")
    if args.cpu_threads is not None and args.cpu_threads < 1:
        raise UserError(f"--cpu_threads must be at least 1, got {args.cpu_threads}")
    return args


def vct_entry(setting_name):
    """``main(argv)`` of the entry script of a registered setting: the flags are parsed before
    torch is imported (a quick --help), then training/runner.py runs."""
    def main(argv=None):
        from training.setting import get_setting
        setting = get_setting(setting_name)
        args = parse_vct_arguments(setting, argv)
        from training.threads import apply_thread_policy
        apply_thread_policy(args.cpu_threads)  # before torch is imported
        from training.runner import run_vct
        return run_vct(setting, args)
    return main


def vqvae_main(argv=None):
    """train_vqvae.py: the published flags (--dataset, --data-dir, --model, --epochs, ...)."""
    parser = argparse.ArgumentParser(
        prog="train_vqvae.py", description="Train the VQ-VAE image tokenizer that VCT reads its image "
        "tokens and reconstruction targets from. Writes OUT/vqvae.pt (the path the configs' "
        "get_args.vqvae_path points at), reconstruction grids and tensorboard logs.", allow_abbrev=False)
    parser.add_argument("--dataset", required=True, help="shapes3d, mpi3d_toy, cars3d, clevr, dsprites, "
                        "objects_room, synthetic_shapes3d, synthetic_scenes, ...")
    parser.add_argument("--model", default="vqvae", choices=["vqvae"], help="tokenizer (only vqvae)")
    parser.add_argument("--data-dir", default="data", help="folder holding <dataset>/... (default data)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs (default 100)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per process per step (default 128)")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4)")
    parser.add_argument("--hidden", type=int, default=None, help="channels d (default 256; dsprites 64)")
    parser.add_argument("-k", type=int, default=None, help="codebook size (default 128; dsprites 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", default=None, help="output folder (default checkpoints/<dataset>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0)")
    parser.add_argument("--save-interval", type=int, default=1000, help="checkpoint every N steps")
    args = parser.parse_args(argv)
    for flag, value, low in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1),
                             ("--hidden", args.hidden, 1), ("-k", args.k, 2), ("--max-steps", args.max_steps, 1),
                             ("--num-workers", args.num_workers, 0), ("--save-interval", args.save_interval, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag} must be at least {low}, got {value}")
    if not 0 < args.lr < float("inf"):
        raise UserError(f"--lr must be a finite number above 0, got {args.lr}")
    from training.vqvae_training import train_vqvae_from_args
    train_vqvae_from_args(args)


def pick_device(name: str):
    import torch
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
    atomic_write_text(Path(run_dir) / "run_args.json", json.dumps(args, indent=2, sort_keys=True))


def load_run_args(run_dir: Path) -> dict:
    path = Path(run_dir) / "run_args.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no run_args.json)")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {first_line(err)}") from None


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_main(main_fn, argv=None):
    """Call ``main_fn(argv)``; user errors and OS errors (a read-only folder, a full disk, a
    path under a file) become one line on stderr and exit status 2; SIGTERM acts as Ctrl-C."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        previous = None
    try:
        return main_fn(argv)
    except KeyboardInterrupt:
        print("interrupted; the newest checkpoint is kept (continue with --resume)", file=sys.stderr)
        sys.exit(130)
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        if not isinstance(err, user_errors()):  # looked up only now: --help imports no dataset code
            raise
        print(f"error: {first_line(err)}", file=sys.stderr)
        sys.exit(2)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
