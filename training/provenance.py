"""Where a number came from: recorded in every metrics JSON (and run_args.json), so that a
result can be traced to the code, packages, configuration, device and seed that made it."""
import importlib.metadata
import platform
import subprocess
from pathlib import Path

import gin

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "numpy", "scikit-learn", "gin-config", "scipy", "h5py")


def package_versions():
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state():
    """(commit, whether the working tree differs from it), or (None, None) outside a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def provenance(seed=None, device=None, run_id=None):
    commit, dirty = git_state()
    return {"versions": package_versions(), "python": platform.python_version(), "git_commit": commit,
            "git_dirty": dirty, "device": None if device is None else str(device), "seed": seed,
            "run_id": run_id, "operative_config": gin.operative_config_str()}
