import numpy as np
import pytest

from evaluation.metrics import modularity_explicitness as me

# disentanglement_lib 1.5 on the conftest reference cases (1000 train / 500 test, seed 0).
DLIB_ME = {
    "identity": {"modularity_score": 0.7942102466074262,
                 "explicitness_score_train": 0.9987186304489706,
                 "explicitness_score_test": 0.99803412989862},
    "noisy": {"modularity_score": 0.9285087644610552,
              "explicitness_score_train": 0.9934446483518077,
              "explicitness_score_test": 0.9919138138098252},
}


def test_matches_disentanglement_lib(reference_cases):
    for name, data, rep in reference_cases:
        scores = me.compute_modularity_explicitness(data, rep, np.random.RandomState(0),
                                                    num_train=1000, num_test=500, n_jobs=1)
        assert scores == pytest.approx(DLIB_ME[name], rel=1e-9)


def test_ground_truth_factors_are_modular_and_explicit(identity_data, reps):
    scores = me.compute_modularity_explicitness(identity_data, reps["identity"],
                                                np.random.RandomState(0), num_train=1000,
                                                num_test=500, n_jobs=1)
    assert scores["modularity_score"] > 0.95
    assert scores["explicitness_score_test"] > 0.9


def test_random_representation_is_not_explicit(identity_data, reps):
    scores = me.compute_modularity_explicitness(identity_data, reps["random"],
                                                np.random.RandomState(0), num_train=1000,
                                                num_test=500, n_jobs=1)
    assert scores["explicitness_score_test"] < 0.6  # AUC of guessing is 0.5


def test_mixed_codes_are_less_modular(identity_data, reps):
    scores = me.compute_modularity_explicitness(identity_data, reps["rotated"],
                                                np.random.RandomState(0), num_train=1000,
                                                num_test=500, n_jobs=1)
    assert scores["modularity_score"] < 0.8


def test_modularity_of_known_matrices():
    assert me.modularity(np.diag([1.0, 2.0, 3.0])) == pytest.approx(1.0)
    # A code with equal MI to both factors: 1 - (2 m^2 - m^2) / (m^2 (2 - 1)) = 0.
    assert me.modularity(np.array([[1.0, 1.0]])) == pytest.approx(0.0)
    # A code with no information counts as 0, not NaN.
    assert me.modularity(np.array([[1.0, 0.0], [0.0, 0.0]])) == pytest.approx(0.5)


def test_constant_code_does_not_crash(identity_data):
    def rep(x):
        f = x.reshape(len(x), -1)
        return np.hstack([f, np.ones((len(f), 1))])
    scores = me.compute_modularity_explicitness(identity_data, rep, np.random.RandomState(0),
                                                num_train=500, num_test=200, n_jobs=1)
    assert np.isfinite(list(scores.values())).all()
