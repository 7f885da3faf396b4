"""BetaVAE disentanglement metric (Higgins et al., ICLR 2017), scikit-learn version.

Procedure of disentanglement_lib's ``compute_beta_vae_sklearn``:
each training point is made from two batches of ``batch_size`` factor
vectors that share one factor ``k`` (drawn first, uniformly); the feature is
the mean absolute difference of their codes and the label is ``k``. A
logistic regression is trained on ``num_train`` points and scored on
``num_eval`` fresh points drawn afterwards from the same RandomState.

Random draws per point, in order: ``randint(num_factors)``, factors of batch 1,
factors of batch 2, observations of batch 1, observations of batch 2.
"""
from __future__ import annotations

import gin
import numpy as np
from sklearn import linear_model

from . import utils

_DENY = ["ground_truth_data", "representation_function", "random_state"]


@utils.one_line_errors
@gin.configurable("beta_vae_sklearn", denylist=_DENY)
def compute_beta_vae_sklearn(ground_truth_data, representation_function, random_state,
                             batch_size: int = 64, num_train: int = 10000,
                             num_eval: int = 5000) -> dict:
    """BetaVAE score; returns ``{"train_accuracy", "eval_accuracy"}``.

    Defaults are the VCT protocol (batch 64, 10000 train, 5000 eval points).
    """
    representation_function, random_state = utils.prepare(
        ground_truth_data, representation_function, random_state)
    utils.check_positive(batch_size=batch_size, num_train=num_train, num_eval=num_eval)
    train_points, train_labels = _generate_training_batch(
        ground_truth_data, representation_function, batch_size, num_train, random_state)

    # disentanglement_lib builds LogisticRegression(random_state=random_state) with
    # sklearn's defaults. Since sklearn 0.22 these are solver='lbfgs' with a
    # multinomial model for more than two classes (VCT's published environment,
    # sklearn 0.23.2, used exactly that); sklearn >= 1.5 dropped `multi_class` and
    # always fits the multinomial model with lbfgs, so leaving the defaults keeps the
    # same estimator. lbfgs never draws from random_state, so the evaluation points
    # below are sampled from the same stream position as in disentanglement_lib.
    # (disentanglement_lib's 2019 runs used sklearn 0.20, whose default was the
    # one-vs-rest liblinear solver; those tables differ slightly for that reason.)
    model = linear_model.LogisticRegression(random_state=random_state)
    model.fit(train_points, train_labels)
    train_accuracy = float(np.mean(model.predict(train_points) == train_labels))

    eval_points, eval_labels = _generate_training_batch(
        ground_truth_data, representation_function, batch_size, num_eval, random_state)
    eval_accuracy = float(model.score(eval_points, eval_labels))
    return {"train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy}


def _generate_training_batch(ground_truth_data, representation_function, batch_size,
                             num_points, random_state):
    """(features float64 (num_points, dims), labels int64 (num_points,))."""
    points = None
    labels = np.zeros(num_points, dtype=np.int64)
    for i in range(num_points):
        labels[i], feature = _generate_training_sample(
            ground_truth_data, representation_function, batch_size, random_state)
        if points is None:
            points = np.zeros((num_points, feature.shape[0]))
        points[i, :] = feature
    return points, labels


def _generate_training_sample(ground_truth_data, representation_function, batch_size,
                              random_state):
    index = random_state.randint(ground_truth_data.num_factors)
    factors1 = ground_truth_data.sample_factors(batch_size, random_state)
    factors2 = ground_truth_data.sample_factors(batch_size, random_state)
    factors2[:, index] = factors1[:, index]
    observations1 = ground_truth_data.sample_observations_from_factors(factors1, random_state)
    observations2 = ground_truth_data.sample_observations_from_factors(factors2, random_state)
    codes1 = representation_function(observations1)
    codes2 = representation_function(observations2)
    # Mean in the representation's own dtype, then stored as float64 (as dlib).
    return index, np.mean(np.abs(codes1 - codes2), axis=0)
