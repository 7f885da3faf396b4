import json
import os
import re

import numpy as np
import pytest

from evaluation import EvaluationError, GroundTruthDataError, runner, toy_data
from evaluation.metrics import METRICS, VCT_PROTOCOL

SMALL = {"beta_vae": {"batch_size": 8, "num_train": 60, "num_eval": 30},
         "factor_vae": {"batch_size": 8, "num_train": 60, "num_eval": 30,
                        "num_variance_estimate": 200},
         "mig": {"num_train": 300},
         "dci": {"num_train": 100, "num_test": 50, "n_jobs": 1}}


def test_registry_and_protocol():
    assert set(VCT_PROTOCOL) <= set(METRICS)
    assert VCT_PROTOCOL == ("beta_vae", "factor_vae", "mig", "dci")
    assert runner.METRICS is METRICS


def test_each_metric_gets_a_fresh_random_state(reference_cases):
    _, data, rep = reference_cases[1]  # noisy observations consume randomness too
    results = runner.run_metrics(data, rep, **SMALL)
    assert list(results) == list(VCT_PROTOCOL)
    for name in VCT_PROTOCOL:
        alone = METRICS[name](data, rep, np.random.RandomState(0), **SMALL[name])
        assert results[name] == pytest.approx(alone, abs=0)
    reordered = runner.run_metrics(data, rep, metrics=("mig", "beta_vae"),
                                   mig=SMALL["mig"], beta_vae=SMALL["beta_vae"])
    assert reordered["mig"] == results["mig"] and reordered["beta_vae"] == results["beta_vae"]
    seeded = runner.run_metrics(data, rep, metrics=("mig",), random_state_seed=3, mig=SMALL["mig"])
    assert seeded["mig"] != results["mig"]


def test_results_are_plain_json_types_and_timings_are_reported(reference_cases):
    _, data, rep = reference_cases[0]
    timings = {}
    results = runner.run_metrics(data, rep, metrics=("factor_vae",), timings=timings,
                                 factor_vae=SMALL["factor_vae"])
    assert type(results["factor_vae"]["num_active_dims"]) is int
    assert type(results["factor_vae"]["eval_accuracy"]) is float
    assert set(timings) == {"factor_vae"} and timings["factor_vae"] > 0


def test_bad_arguments_are_refused_before_any_work():
    calls = []

    def rep(x):
        calls.append(1)
        return x.reshape(len(x), -1)

    data = toy_data.IdentityObservations((3, 3))
    with pytest.raises(EvaluationError, match="unknown metric"):
        runner.run_metrics(data, rep, metrics=("mig", "fid"))
    with pytest.raises(EvaluationError, match="not being run"):
        runner.run_metrics(data, rep, metrics=("mig",), dci={"num_train": 10})
    with pytest.raises(EvaluationError, match="dict of keyword arguments"):
        runner.run_metrics(data, rep, metrics=("mig",), mig=100)
    with pytest.raises(GroundTruthDataError, match="no ground-truth factors"):
        runner.run_metrics(toy_data.NoGroundTruthFactors(), rep)
    assert calls == []


def test_format_table_is_aligned():
    results = {"mig": {"discrete_mig": 0.123456},
               "factor_vae": {"eval_accuracy": np.float32(0.5), "num_active_dims": 7}}
    table = runner.format_table(results)
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "score", "value"]
    assert set(lines[1]) <= {"-", " "}
    assert "0.1235" in table and lines[-1].endswith(" 7")
    value_end = {len(line) for line in lines[2:]}
    assert len(value_end) == 1  # right-aligned values end in the same column
    score_start = {line.index(word) for line, word in
                   zip(lines[2:], ["discrete_mig", "eval_accuracy", "num_active_dims"])}
    assert len(score_start) == 1


def test_write_results_json(tmp_path):
    path = tmp_path / "metrics" / "5000.json"
    results = {"mig": {"discrete_mig": np.float64(0.25), "nan": float("nan")},
               "dci": {"num": np.int64(3), "arr": np.arange(2)}}
    runner.write_results_json(str(path), results, settings={"step": 5000, "seed": np.int64(0)})
    payload = json.loads(path.read_text())
    assert payload["results"] == {"mig": {"discrete_mig": 0.25, "nan": None},
                                  "dci": {"num": 3, "arr": [0, 1]}}
    assert payload["settings"] == {"step": 5000, "seed": 0}
    commit = payload["git_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    assert payload["created"]
    assert os.listdir(path.parent) == ["5000.json"]  # no temp file left behind


def test_write_results_json_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    runner.write_results_json(str(path), {"mig": {"discrete_mig": 0.5}})
    before = path.read_text()

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(runner.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        runner.write_results_json(str(path), {"mig": {"discrete_mig": 0.9}})
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["r.json"]


def _unconverged_fit(ground_truth_data, representation_function, random_state, **settings):
    """A tiny metric whose logistic regression stops before converging (sklearn warns)."""
    import warnings
    from sklearn.linear_model import LogisticRegression
    factors, observations = ground_truth_data.sample(200, random_state)
    codes = representation_function(observations)
    model = LogisticRegression(max_iter=1).fit(codes, factors[:, 0])
    warnings.warn("an unrelated warning", UserWarning)
    return {"train_accuracy": model.score(codes, factors[:, 0]), "num_points": 200}


def test_convergence_warnings_are_recorded_not_printed(monkeypatch, recwarn, capsys):
    monkeypatch.setitem(runner.METRICS, "unconverged", _unconverged_fit)
    data = toy_data.NoisyObservations((4, 5), 0.3)
    results = runner.run_metrics(data, lambda x: x.reshape(len(x), -1), metrics=("unconverged",))
    notes = results["unconverged"]["warnings"]
    assert len(notes) == 1 and notes[0].startswith("ConvergenceWarning: lbfgs failed to converge")
    assert "\n" not in notes[0]
    assert [str(w.message) for w in recwarn] == ["an unrelated warning"]  # others still shown
    assert capsys.readouterr() == ("", "")
    table = runner.format_table(results)
    assert "train_accuracy" in table and "num_points" in table and "warnings" not in table
    json.dumps(results)


def test_no_warnings_key_without_convergence_warnings(reference_cases):
    _, data, rep = reference_cases[0]
    results = runner.run_metrics(data, rep, metrics=("mig",), mig=SMALL["mig"])
    assert "warnings" not in results["mig"]


def test_format_table_skips_non_numeric_entries():
    results = {"irs": {"IRS": 0.5, "disentanglement_scores": [0.1, 0.2], "none": None,
                       "warnings": ["ConvergenceWarning: lbfgs failed to converge"]}}
    lines = runner.format_table(results).splitlines()
    assert [line.split()[1] for line in lines[2:]] == ["IRS", "none"]


def test_progress_bars_only_on_a_terminal(monkeypatch):
    import io
    from evaluation import progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    assert progress.progress_bar(range(3), progress=True).disable
    monkeypatch.setattr(progress.sys, "stderr", Terminal())
    bar = progress.progress_bar(range(3), progress=True)
    assert not bar.disable and not bar.leave
    assert list(bar) == [0, 1, 2]
    assert progress.progress_bar(range(3), progress=False).disable
    monkeypatch.setattr(progress.sys, "stderr", None)
    assert progress.progress_bar(range(3), progress=True).disable
