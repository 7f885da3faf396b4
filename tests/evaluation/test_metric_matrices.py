"""What DCI and MIG keep besides their scores: the (codes x factors) matrices they were computed
from and the dataset's factor names, saved in the metrics JSON for the run report."""
import json

import numpy as np
import pytest

from evaluation import toy_data
from evaluation.metrics import dci, mig
from evaluation.runner import format_table, run_metrics, to_jsonable


def test_mig_is_the_mean_gap_of_its_saved_normalised_matrix(reference_cases):
    for _, data, rep in reference_cases:
        scores = mig.compute_mig(data, rep, np.random.RandomState(0), num_train=500)
        matrix = np.array(scores["mutual_information_matrix"])
        assert matrix.shape == (8, 3) and scores["factor_names"] == list(data.factor_names)
        top = np.sort(matrix, axis=0)[::-1]
        assert np.mean(top[0] - top[1]) == pytest.approx(scores["discrete_mig"], rel=1e-12)
        assert (matrix >= 0).all() and (matrix <= 1 + 1e-12).all()


def test_ground_truth_codes_put_the_matrices_on_the_diagonal(identity_data, reps):
    importance = np.array(dci.compute_dci(identity_data, reps["identity"], np.random.RandomState(0),
                                          num_train=300, num_test=100, n_jobs=1)["importance_matrix"])
    information = np.array(mig.compute_mig(identity_data, reps["identity"], np.random.RandomState(0),
                                           num_train=500)["mutual_information_matrix"])
    for matrix in (importance, information):
        assert list(matrix.argmax(axis=1)) == [0, 1, 2]
        assert np.diag(matrix).min() > 0.9


def test_a_dataset_without_names_saves_none_and_a_constant_factor_saves_null():
    data = toy_data.IdentityObservations((4, 1, 3))  # the middle factor has one value: zero entropy
    data.factor_names = ()
    scores = mig.compute_mig(data, toy_data.flat, np.random.RandomState(0), num_train=200)
    assert "factor_names" not in scores
    matrix = to_jsonable(scores)["mutual_information_matrix"]
    assert all(row[1] is None for row in matrix) and all(row[0] is not None for row in matrix)


def test_the_matrices_reach_the_results_json_but_not_the_table(reference_cases):
    _, data, rep = reference_cases[0]
    results = run_metrics(data, rep, metrics=["mig", "dci"], mig={"num_train": 200},
                          dci={"num_train": 200, "num_test": 100, "n_jobs": 1})
    saved = json.loads(json.dumps(to_jsonable(results), allow_nan=False))
    assert np.array(saved["dci"]["importance_matrix"]).shape == (8, 3)
    assert saved["mig"]["factor_names"] == ["factor_0", "factor_1", "factor_2"]
    table = format_table(results)
    assert "importance_matrix" not in table and "mutual_information_matrix" not in table
    assert "disentanglement" in table and "discrete_mig" in table
