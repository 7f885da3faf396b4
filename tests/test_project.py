"""Project-level promises: the README's commands and CI stay in step."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_exactly_the_readme_test_command():
    main_job, test_command = readme_commands()[:2]
    assert "pytest" in test_command
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines()
                if line and not line.startswith("#")]
    assert test_command in ci_lines


def test_readme_main_job_command_runs():
    main_job = readme_commands()[0]
    runnable = main_job.split("&&", 1)[1].strip()  # the install part is the test's own setup
    result = subprocess.run(runnable.split(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()
