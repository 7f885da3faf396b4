import numpy as np
import pytest

from evaluation.metrics import dci

# disentanglement_lib 1.5 on the conftest reference cases (500 train / 300 test, seed 0).
# dlib's GradientBoostingClassifier uses numpy's global generator (random_state=None);
# with gbt_random_state=None and the same global seed the numbers agree exactly.
DLIB_DCI = {
    "identity": {"informativeness_train": 1.0, "informativeness_test": 0.9977777777777778,
                 "disentanglement": 0.70283013364499, "completeness": 0.7242560291848956},
    "noisy": {"informativeness_train": 1.0, "informativeness_test": 0.898888888888889,
              "disentanglement": 0.663385501335563, "completeness": 0.5520578355189578},
}


def test_matches_disentanglement_lib(reference_cases):
    for name, data, rep in reference_cases:
        np.random.seed(0)
        scores = dci.compute_dci(data, rep, np.random.RandomState(0), num_train=500, num_test=300,
                                 n_jobs=1, gbt_random_state=None)
        assert {key: scores[key] for key in DLIB_DCI[name]} == pytest.approx(DLIB_DCI[name], rel=1e-12, abs=1e-14)
        # The saved importance matrix is the one the scores were computed from.
        matrix = np.array(scores["importance_matrix"])
        assert matrix.shape == (8, 3) and scores["factor_names"] == ["factor_0", "factor_1", "factor_2"]
        assert dci.disentanglement(matrix) == scores["disentanglement"]
        assert dci.completeness(matrix) == scores["completeness"]


def test_parallel_fits_give_identical_numbers(reference_cases):
    _, data, rep = reference_cases[1]
    serial = dci.compute_dci(data, rep, np.random.RandomState(0), num_train=200, num_test=100, n_jobs=1)
    parallel = dci.compute_dci(data, rep, np.random.RandomState(0), num_train=200, num_test=100, n_jobs=2)
    assert serial == parallel


def test_ground_truth_factors_are_disentangled_and_complete(identity_data, reps):
    scores = dci.compute_dci(identity_data, reps["identity"], np.random.RandomState(0),
                             num_train=500, num_test=300, n_jobs=1)
    assert scores["disentanglement"] > 0.9
    assert scores["completeness"] > 0.9
    assert scores["informativeness_test"] > 0.95


def test_random_representation_is_uninformative(identity_data, reps):
    scores = dci.compute_dci(identity_data, reps["random"], np.random.RandomState(0),
                             num_train=500, num_test=300, n_jobs=1)
    assert scores["informativeness_test"] < 0.2  # chance is 0.1
    assert scores["disentanglement"] < 0.3


def test_codes_mixing_two_factors_lower_disentanglement(identity_data, reps):
    scores = dci.compute_dci(identity_data, reps["rotated"], np.random.RandomState(0),
                             num_train=500, num_test=300, n_jobs=1)
    # Codes f0+f1 and f0-f1 each serve two factors: about (2 (1 - log2/log3) + 1) / 3.
    assert scores["disentanglement"] < 0.75
    assert scores["informativeness_test"] > 0.9  # still fully informative


def test_duplicated_codes_keep_disentanglement_and_halve_completeness(identity_data, reps):
    scores = dci.compute_dci(identity_data, reps["duplicated"], np.random.RandomState(0),
                             num_train=500, num_test=300, n_jobs=1)
    assert scores["disentanglement"] > 0.9
    target = 1.0 - np.log(2) / np.log(6)  # each factor split over 2 of 6 codes
    assert abs(scores["completeness"] - target) < 0.1


def test_disentanglement_and_completeness_of_known_matrices():
    diagonal = np.diag(5.0 * np.ones(5))
    assert dci.disentanglement(diagonal) == pytest.approx(1.0)
    assert dci.completeness(diagonal) == pytest.approx(1.0)
    redundant = np.vstack([diagonal, diagonal])           # every factor in two codes
    assert dci.disentanglement(redundant) == pytest.approx(1.0)
    assert dci.completeness(redundant) == pytest.approx(1 - np.log(2) / np.log(10))
    shared = np.hstack([diagonal, diagonal])              # every code serves two factors
    assert dci.disentanglement(shared) == pytest.approx(1 - np.log(2) / np.log(10))
    assert dci.completeness(shared) == pytest.approx(1.0)
    assert dci.disentanglement(np.zeros((4, 4))) == pytest.approx(0.0)
    assert dci.completeness(np.zeros((4, 4))) == pytest.approx(0.0, abs=1e-7)
    empty_code = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert dci.disentanglement(empty_code) == pytest.approx(1.0)
