import numpy as np
import pytest

from evaluation.metrics import irs

# disentanglement_lib 1.5 on the conftest reference cases (1000 points, batch 16, seed 0).
DLIB_IRS = {"identity": 0.6881246004273986, "noisy": 0.6808598575132041}


def test_matches_disentanglement_lib(reference_cases):
    for name, data, rep in reference_cases:
        scores = irs.compute_irs(data, rep, np.random.RandomState(0), num_train=1000)
        assert scores["IRS"] == pytest.approx(DLIB_IRS[name], rel=1e-12)
        assert scores["num_active_dims"] == 8


def test_ground_truth_factors_are_robust(identity_data, reps):
    scores = irs.compute_irs(identity_data, reps["identity"], np.random.RandomState(0), num_train=1000)
    assert scores["IRS"] == pytest.approx(1.0)


def test_random_representation_is_not_robust(identity_data, reps):
    scores = irs.compute_irs(identity_data, reps["random"], np.random.RandomState(0), num_train=1000)
    # Gaussian noise: 1 - (99% quantile of |z - E z| ~ 2.6 sd) / (max deviation ~ 3.3 sd).
    assert scores["IRS"] < 0.45


def test_mixed_codes_score_lower(identity_data, reps):
    scores = irs.compute_irs(identity_data, reps["rotated"], np.random.RandomState(0), num_train=1000)
    assert scores["IRS"] < 0.9


def test_constant_dimensions_are_dropped(identity_data):
    def rep(x):
        f = x.reshape(len(x), -1)
        return np.hstack([f, np.full((len(f), 2), 3.0)])
    scores = irs.compute_irs(identity_data, rep, np.random.RandomState(0), num_train=500)
    assert scores["num_active_dims"] == 3
    assert scores["IRS"] == pytest.approx(1.0)


def test_all_constant_scores_zero(identity_data):
    scores = irs.compute_irs(identity_data, lambda x: np.zeros((len(x), 2)),
                             np.random.RandomState(0), num_train=200)
    assert scores == {"IRS": 0.0, "num_active_dims": 0}
