"""Project-level promises: the README's commands and CI stay in step, and the README's main
job is wired to a config that runs (here with tiny step counts and sample sizes)."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_exactly_the_readme_test_command():
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines()
                if line and not line.startswith("#")]
    assert test_command in ci_lines


def test_readme_main_job_runs_end_to_end_when_shortened(tmp_path):
    main_job = readme_commands()[0]
    install, run = (part.strip() for part in main_job.split("&&", 1))
    assert install == "pip install -r requirements.txt"
    argv = shlex.split(run)
    assert argv[:2] == ["python", "main_vct.py"]
    shorten = [
        "--max_steps", "3", "--out", str(tmp_path / "run"),
        "--gin_bindings", f"get_args.data_dir = '{tmp_path / 'data'}'",
        "--gin_bindings", f"get_args.vqvae_path = '{tmp_path / 'vqvae' / 'vqvae.pt'}'",
        "--gin_bindings", "get_args.vqvae_max_steps = 3",
        "--gin_bindings", "beta_vae_sklearn.num_train = 8",
        "--gin_bindings", "beta_vae_sklearn.num_eval = 4",
        "--gin_bindings", "factor_vae_score.num_train = 8",
        "--gin_bindings", "factor_vae_score.num_eval = 4",
        "--gin_bindings", "factor_vae_score.num_variance_estimate = 64",
        "--gin_bindings", "mig.num_train = 64",
        "--gin_bindings", "dci.num_train = 64",
        "--gin_bindings", "dci.num_test = 32",
    ]
    result = subprocess.run([sys.executable, *argv[1:], *shorten], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "factor_vae" in result.stdout and "swap grid:" in result.stdout
    assert f"report: {tmp_path / 'run' / 'report.html'}" in result.stdout
    metrics = json.loads(next((tmp_path / "run" / "metrics").glob("metrics_*.json")).read_text())
    assert {"beta_vae", "factor_vae", "mig", "dci"} <= set(metrics["results"])
    assert (tmp_path / "vqvae" / "vqvae.pt").is_file()  # the tokenizer was trained first


def help_output(script):
    """``script --help``'s output, run in a fresh interpreter that then reports whether torch
    was imported; asserts it was not (--help must answer quickly)."""
    probe = ("import runpy, sys\n"
             f"sys.argv = [{script!r}, '--help']\n"
             "try:\n"
             f"    runpy.run_path({script!r}, run_name='__main__')\n"
             "except SystemExit:\n"
             "    pass\n"
             "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH')\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout and result.stdout.strip().endswith("NO_TORCH"), result.stdout[-500:]
    return result.stdout


@pytest.mark.parametrize("script", ["main_vct.py", "main_vct_mask.py", "main_vct_clip.py", "train_vqvae.py",
                                    "evaluate.py", "export.py"])
def test_help_answers_without_importing_torch(script):
    help_output(script)
