"""Point every config at your data (and VQ-VAE checkpoint) folders.

    python set_dataset_dir.py --datasets /data [--checkpoints /ckpt] [--configs configs]

--datasets rewrites, in every configs/*.gin, the bindings of a parameter or macro
named ``data_dir`` (``get_args.data_dir = "..."``) to PATH, the folder holding
shapes3d/, mpi_toy/, ... . Configs of synthetic data (``name = 'synthetic_...'``)
are left alone: their data is rendered locally, not brought by the user, and must
not be rendered into the user's dataset folders.

--checkpoints rewrites the VQ-VAE checkpoint bindings (``*.vqvae_path``,
``*.vqvae_checkpoint``, ``*.path``) in the *_shared.gin files. A file PATH is
written as is; a folder PATH keeps the per-dataset layout of train_vqvae.py:
``<PATH>/<config name>/<checkpoint file name>``, e.g. /ckpt/shapes3d/vqvae.pt for
shapes3d_shared.gin.

Comments and all other lines are kept byte for byte, running it twice changes
nothing the second time, and each change is printed. A PATH that does not exist
is refused.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path, PurePath
from typing import Callable

DATA_DIR_NAMES = ("data_dir",)
CHECKPOINT_NAMES = ("vqvae_path", "vqvae_checkpoint", "path")

# name = "value"  [# comment] ; name may be dotted (configurable.param) or scoped (scope/...).
_BINDING = re.compile(r'^(?P<lead>\s*)(?P<name>[A-Za-z_][\w./]*)(?P<eq>\s*=\s*)'
                      r'(?P<quote>["\'])(?P<value>.*?)(?P=quote)(?P<rest>\s*(#.*)?)$')
_SYNTHETIC = re.compile(r'^\s*[\w./]*\bname\s*=\s*["\']synthetic_', re.MULTILINE)


def _parameter(name: str) -> str:
    return re.split(r"[./]", name)[-1]


def rewrite(text: str, names: tuple[str, ...], new_value: Callable[[str], str]):
    """(new text, [(line, binding, old, new)]) with matching bindings set to new_value(old)."""
    lines = text.splitlines(keepends=True)
    changes = []
    for number, line in enumerate(lines, start=1):
        body = line.rstrip("\r\n")
        match = _BINDING.match(body)
        if not match or _parameter(match["name"]) not in names:
            continue
        old, new = match["value"], new_value(match["value"])
        if new == old:
            continue
        quote = match["quote"]
        lines[number - 1] = (f'{match["lead"]}{match["name"]}{match["eq"]}{quote}{new}{quote}'
                             f'{match["rest"]}{line[len(body):]}')
        changes.append((number, match["name"], old, new))
    return "".join(lines), changes


def checkpoint_value(path: Path, config: Path) -> Callable[[str], str]:
    """The new checkpoint binding of ``config`` for a --checkpoints PATH."""
    if not path.is_dir():
        return lambda old: str(path)
    folder = path / config.name[: -len("_shared.gin")]
    return lambda old: str(folder / (PurePath(old).name if PurePath(old).suffix else "vqvae.pt"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", help="folder holding the dataset folders (shapes3d/, ...)")
    parser.add_argument("--checkpoints", help="VQ-VAE checkpoint file, or the folder of per-dataset ones")
    parser.add_argument("--configs", default=str(Path(__file__).resolve().parent / "configs"),
                        help="folder of .gin files (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.datasets is None and args.checkpoints is None:
        parser.error("give --datasets and/or --checkpoints")
    for flag, value in (("--datasets", args.datasets), ("--checkpoints", args.checkpoints)):
        if value is not None and not Path(value).exists():
            print(f"error: {flag} path does not exist: {value}", file=sys.stderr)
            return 2
    configs = Path(args.configs)
    files = sorted(configs.glob("*.gin"))
    if not files:
        print(f"error: no .gin files in {configs}", file=sys.stderr)
        return 2
    total = 0
    for path in files:
        with open(path, encoding="utf-8", newline="") as f:  # keep line endings as they are
            text = original = f.read()
        edits = []
        if args.datasets is not None:
            if _SYNTHETIC.search(text):
                print(f"{path}: synthetic data, data_dir left as is")
            else:
                datasets = str(Path(args.datasets).resolve())
                text, changes = rewrite(text, DATA_DIR_NAMES, lambda old: datasets)
                edits += changes
        if args.checkpoints is not None and path.name.endswith("_shared.gin"):
            value = checkpoint_value(Path(args.checkpoints).resolve(), path)
            text, changes = rewrite(text, CHECKPOINT_NAMES, value)
            edits += changes
        if text != original:
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        for number, name, old, new in sorted(edits):
            print(f"{path}:{number}: {name}: {old!r} -> {new!r}")
        total += len(edits)
    print(f"{total} binding(s) changed in {len(files)} config file(s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as error:  # a read-only config folder, a full disk, ...
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
