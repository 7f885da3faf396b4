"""Checkpoints: atomic writes, ``weights_only=True`` loads, and the state needed for an exact
resume (step, RNG states, gin config). The published keys (``encoder_model_state_dict``,
``decoder_model_state_dict``, ``optimizer_state_dict``) are kept at the top level."""
import os
import re
from pathlib import Path

import torch

from training.cli import UserError

FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"^checkpoint_(\d+)\.pt$")


def atomic_torch_save(obj, path: Path):
    """Write to a temporary name in the same folder, then rename: a crash never leaves a
    half-written file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt, truncated, or not a weights-only file
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read checkpoint {path}: {first_line}") from None


def rng_state(generators: dict) -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    for name, gen in generators.items():
        state[f"gen_{name}"] = gen.get_state()
    return state


def restore_rng_state(state: dict, generators: dict):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, gen in generators.items():
        gen.set_state(state[f"gen_{name}"])


def step_checkpoints(run_dir: Path):
    """[(step, path)] of the run's step checkpoints, oldest first."""
    found = []
    for path in Path(run_dir, "checkpoints").glob("checkpoint_*.pt"):
        match = _STEP_FILE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path):
    found = step_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: Path, keep: int):
    for _, path in step_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)


def load_model_state(module: torch.nn.Module, state_dict: dict, what: str, path):
    """load_state_dict(strict=True), with a size mismatch turned into one clear line."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise UserError(f"{path}: the {what} in this checkpoint does not fit the configured model "
                        f"({detail})") from None
