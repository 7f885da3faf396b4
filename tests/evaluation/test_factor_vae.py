import numpy as np
import pytest

from evaluation.metrics import factor_vae

# disentanglement_lib 1.5 on the conftest reference cases (batch 16, 300 train, 200 eval,
# 500 variance points, prune_dims.threshold 0.05, seed 0).
DLIB_FACTOR_VAE = {"identity": {"train_accuracy": 0.93, "eval_accuracy": 0.945},
                   "noisy": {"train_accuracy": 0.9466666666666667, "eval_accuracy": 0.915}}

SMALL = dict(batch_size=16, num_train=300, num_eval=200, num_variance_estimate=500)


def test_matches_disentanglement_lib(reference_cases):
    for name, data, rep in reference_cases:
        scores = factor_vae.compute_factor_vae(data, rep, np.random.RandomState(0), **SMALL)
        assert scores["train_accuracy"] == pytest.approx(DLIB_FACTOR_VAE[name]["train_accuracy"], abs=1e-12)
        assert scores["eval_accuracy"] == pytest.approx(DLIB_FACTOR_VAE[name]["eval_accuracy"], abs=1e-12)
        assert scores["num_active_dims"] == 8


def test_ground_truth_factors_score_perfectly(identity_data, reps):
    scores = factor_vae.compute_factor_vae(identity_data, reps["identity"],
                                           np.random.RandomState(0), **SMALL)
    assert scores["train_accuracy"] == 1.0
    assert scores["eval_accuracy"] == 1.0
    assert scores["num_active_dims"] == 3


def test_random_representation_is_near_chance(identity_data, reps):
    scores = factor_vae.compute_factor_vae(identity_data, reps["random"],
                                           np.random.RandomState(0), **SMALL)
    assert scores["eval_accuracy"] < 0.6


def test_mixing_two_factors_into_codes_caps_accuracy(identity_data, reps):
    # f0 fixed or f1 fixed shrink both mixed codes equally, so both vote for the
    # same code: at most 2 of the 3 factors can be told apart.
    scores = factor_vae.compute_factor_vae(identity_data, reps["rotated"],
                                           np.random.RandomState(0), **SMALL)
    assert scores["eval_accuracy"] <= 2 / 3 + 0.05


def test_collapsed_dimensions_are_pruned(identity_data):
    def rep(x):
        f = x.reshape(len(x), -1).astype(np.float64)
        # dims 1 and 3 have std 0.001 and 0: below the 0.05 threshold
        return np.stack([f[:, 0], 0.001 * f[:, 1], f[:, 1], np.zeros(len(f)), f[:, 2]], axis=1)
    scores = factor_vae.compute_factor_vae(identity_data, rep, np.random.RandomState(0), **SMALL)
    assert scores["num_active_dims"] == 3
    assert scores["eval_accuracy"] == 1.0  # the collapsed copy of f1 cannot steal votes


def test_no_active_dimension_scores_zero(identity_data):
    scores = factor_vae.compute_factor_vae(identity_data, lambda x: np.zeros((len(x), 4)),
                                           np.random.RandomState(0), **SMALL)
    assert scores == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


def test_prune_threshold_is_on_the_standard_deviation():
    variances = np.array([0.0024, 0.0026, 1.0])  # std 0.049, 0.051, 1
    np.testing.assert_array_equal(factor_vae.prune_dims(variances, 0.05), [False, True, True])
