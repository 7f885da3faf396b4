"""bench_quality.py's bookkeeping: paired statistics by hand, and a resumed sweep that skips
finished runs (no training here: the finished runs' records are written by the test)."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_quality.py"
spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
bench_quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_quality)

FVAE, MIG = "factor_vae/eval_accuracy", "mig/discrete_mig"


def record(variant, seed, fvae, mig, best_fvae=None, wall=10.0):
    return {"variant": variant, "seed": seed, "wall_s": wall, "resumed": False, "final_step": 100,
            "final": {FVAE: fvae, MIG: mig},
            "best": {FVAE: {"value": best_fvae if best_fvae is not None else fvae, "step": 50},
                     MIG: {"value": mig, "step": 100}},
            "tokenizer_probe": {"accuracy": {"shape": 0.9 + seed / 100}}}


RUNS = [record("dis", 0, 0.9, 0.4, best_fvae=0.95), record("dis", 1, 0.8, 0.3), record("dis", 2, 0.7, 0.5),
        record("wo_dis", 0, 0.85, 0.2), record("wo_dis", 1, 0.8, 0.2), record("wo_dis", 2, 0.6, 0.2)]


def test_mean_std_and_the_paired_difference_by_hand():
    summary = bench_quality.summarise(RUNS)
    assert summary["dis"][FVAE]["mean"] == pytest.approx(0.8)
    assert summary["dis"][FVAE]["std"] == pytest.approx(0.1)  # sample std of 0.9, 0.8, 0.7
    assert summary["dis"]["best_minus_final/factor_vae"]["values"] == pytest.approx([0.05, 0.0, 0.0])
    assert summary["dis"]["probe/shape"]["mean"] == pytest.approx(0.91)
    paired = summary["paired_dis_minus_wo_dis"][MIG]  # differences 0.2, 0.1, 0.3
    assert paired["mean"] == pytest.approx(0.2)
    assert paired["sem"] == pytest.approx(0.1 / math.sqrt(3))
    table = bench_quality.markdown(summary, "t")
    assert "| mig/discrete_mig | 0.400 ± 0.100 | 0.200 ± 0.000 | +0.200 ± 0.058 |" in table


def test_resume_skips_finished_runs_and_a_fresh_sweep_refuses_a_used_folder(tmp_path, capsys):
    for run in RUNS[:2]:
        folder = tmp_path / f"{run['variant']}-seed{run['seed']}"
        folder.mkdir()
        (folder / "bench_run.json").write_text(json.dumps(run))
    with pytest.raises(SystemExit):
        bench_quality.parse_arguments(["--config", "toy_ce.gin", "--out", str(tmp_path), "--seeds", "0"])
    assert "pass --resume" in capsys.readouterr().err
    assert bench_quality.main(["--config", "toy_ce.gin", "--out", str(tmp_path), "--seeds", "0",
                               "--variants", "dis", "--resume"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [run["seed"] for run in summary["runs"]] == [0]
    assert "| factor_vae/eval_accuracy | 0.900 ± 0.000 |" in (tmp_path / "summary.md").read_text()
