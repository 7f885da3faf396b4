"""Checkpoints: atomic writes, ``weights_only=True`` loads, and the state needed for an exact
resume (step, RNG states, gin config). The published keys (``encoder_model_state_dict``,
``decoder_model_state_dict``, ``optimizer_state_dict``) are kept at the top level."""
import contextlib
import hashlib
import os
import re
from pathlib import Path

try:
    import fcntl
except ImportError:  # not on POSIX: no run-directory lock
    fcntl = None

import torch

from common.atomic import atomic_write
from training.errors import UserError, first_line

FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"^checkpoint_(\d+)\.pt$")


def atomic_torch_save(obj, path: Path):
    """Write to a temporary name in the same folder, then rename: a crash never leaves a
    half-written file under the final name."""
    with atomic_write(path, "wb") as file:
        torch.save(obj, file)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt, truncated, or not a weights-only file
        raise UserError(f"cannot read checkpoint {path}: {first_line(err)}") from None


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


def prepare_run_dir(run_dir, resuming):
    """Create ``run_dir``; a fresh run refuses a folder that already holds checkpoints."""
    run_dir = Path(run_dir)
    if not resuming and latest_checkpoint(run_dir) is not None:
        raise UserError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                        f"or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def resume_checkpoint(run_dir, resume):
    """The newest checkpoint of ``run_dir`` when resuming (None otherwise)."""
    if not resume:
        return None
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise UserError(f"--resume {run_dir}: no checkpoint in {Path(run_dir) / 'checkpoints'}")
    return latest


def find_checkpoint(path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run directory."""
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise UserError(f"no checkpoint under {path / 'checkpoints'}")
        return latest
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path


def weights_key(module: torch.nn.Module) -> str:
    """A digest of a module's weights (every parameter and buffer): the identity an evaluation
    cache is keyed by, so retrained weights at the same path and step are never scored from
    an older run's cache."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


@contextlib.contextmanager
def run_dir_lock(run_dir):
    """Hold an exclusive lock on ``run_dir`` (its ``.lock`` file) while a run writes there: a
    second process on the same run directory stops with one line instead of interleaving its
    logs and checkpoints with the first's. Only the main process of a torchrun job takes it."""
    if fcntl is None or int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    path = Path(run_dir) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{run_dir} is in use by another process (a run or a resume of it); wait for it "
                            f"to finish or choose another --out") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
