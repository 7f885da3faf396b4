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
