import numpy as np
import pytest

from evaluation.metrics import beta_vae

# disentanglement_lib 1.5 on the conftest reference cases (batch 16, 300 train, 200 eval, seed 0).
DLIB_BETA_VAE = {"identity": {"train_accuracy": 0.9966666666666667, "eval_accuracy": 0.995},
                 "noisy": {"train_accuracy": 0.99, "eval_accuracy": 1.0}}

SMALL = dict(batch_size=16, num_train=300, num_eval=200)


def test_matches_disentanglement_lib(reference_cases):
    for name, data, rep in reference_cases:
        scores = beta_vae.compute_beta_vae_sklearn(data, rep, np.random.RandomState(0), **SMALL)
        assert scores == pytest.approx(DLIB_BETA_VAE[name], abs=1e-12)


def test_ground_truth_factors_score_perfectly(identity_data, reps):
    scores = beta_vae.compute_beta_vae_sklearn(identity_data, reps["identity"],
                                               np.random.RandomState(0), **SMALL)
    assert scores["train_accuracy"] >= 0.98
    assert scores["eval_accuracy"] >= 0.98


def test_random_representation_is_near_chance(identity_data, reps):
    scores = beta_vae.compute_beta_vae_sklearn(identity_data, reps["random"],
                                               np.random.RandomState(0), **SMALL)
    assert scores["eval_accuracy"] < 0.5  # chance is 1/3


def test_mixing_two_factors_makes_them_indistinguishable(identity_data, reps):
    # Fixing f0 or f1 changes |f0+f1| and |f0-f1| alike: those two classes are
    # confused, so accuracy is about 2/3 instead of 1.
    scores = beta_vae.compute_beta_vae_sklearn(identity_data, reps["rotated"],
                                               np.random.RandomState(0), **SMALL)
    assert 0.5 < scores["eval_accuracy"] < 0.8


def test_logistic_regression_does_not_consume_the_random_state(reference_cases):
    # The eval set is drawn after the fit from the same RandomState; if the
    # classifier drew from it (as liblinear did), the eval points would move.
    _, data, rep = reference_cases[0]
    state = np.random.RandomState(0)
    beta_vae.compute_beta_vae_sklearn(data, rep, state, batch_size=4, num_train=50, num_eval=1)
    replay = np.random.RandomState(0)
    for _ in range(51):  # 50 train points + 1 eval point, each: randint + 2 factor batches
        replay.randint(data.num_factors)
        data.sample_factors(4, replay)
        data.sample_factors(4, replay)
    assert state.randint(1 << 30) == replay.randint(1 << 30)
