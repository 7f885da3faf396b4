"""benchmarks/gpu_check.sh --dry-run: the GPU check's CPU-compatible parts run at tiny sizes and
write the JSON with every part (the CUDA-only one skipped with its reason). About a minute on
the 2-core box: each part is a fresh interpreter (torch import) and the step benchmark measures
the matmul peak, so this is the suite's price for knowing the script runs before a GPU is lent."""
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("environment", "cuda_tests", "train_step", "train_step_compiled", "render", "data", "paper_run",
         "paper_eval")


def test_dry_run_writes_every_part(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(out), "--work",
                           str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["device"] == "cpu" and report["all_ok"], report
    parts = report["parts"]
    assert set(parts) == set(PARTS)
    assert parts["train_step_compiled"]["status"] == "skipped" and "CUDA only" in parts["train_step_compiled"]["note"]
    for name in set(PARTS) - {"train_step_compiled"}:
        assert parts[name]["status"] == "ok", (name, parts[name])
    assert parts["cuda_tests"]["result"]["failures"] == parts["cuda_tests"]["result"]["errors"] == 0
    assert parts["cuda_tests"]["result"]["skipped"] >= 1  # the CUDA tests, on this CPU
    resident = parts["data"]["result"]["resident_toy_32px"]
    assert resident["bit_identical_to_file_path"] and resident["resident_batch32_images_per_s"] > 0
    assert parts["train_step"]["result"]["results"][0]["s_per_step"] > 0
    run = parts["paper_run"]["result"]
    assert run["steps_logged"] == 2 and 0 <= run["last"]["data_wait_fraction"] < 1
    assert "mig" in parts["paper_eval"]["result"]["results"]
    assert (tmp_path / "gpu_check_logs" / "paper_run.log").is_file()
