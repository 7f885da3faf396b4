"""Separated Attribute Predictability (Kumar et al., ICLR 2018), as in disentanglement_lib.

``num_train`` then ``num_test`` points are drawn ``batch_size`` at a time. A score
matrix S (codes x factors) is filled pair by pair:

- discrete factors (``continuous_factors=False``, disentanglement_lib's config):
  S_ij = test accuracy of ``LinearSVC(C=0.01, class_weight="balanced")`` fit on
  code i alone to predict factor j;
- continuous factors: S_ij = cov(code_i, factor_j)^2 / (var(code_i) var(factor_j))
  (squared Pearson correlation, ddof=1 on the training points), and 0 when
  var(code_i) <= 1e-12.

SAP is the mean over factors of the gap between the two largest entries of the
factor's column. There is no other regularisation or thresholding in the
published metric.

sklearn changed LinearSVC's default ``dual`` to 'auto' (primal solver here);
disentanglement_lib ran with the then-default dual coordinate descent, which is
requested explicitly. Its ``random_state`` (only used to shuffle the dual
coordinates) was left to numpy's global generator; here it is a fixed integer
(``svm_random_state``), so the scores are reproducible and independent of
``n_jobs``.
"""
from __future__ import annotations

import warnings

import gin
import numpy as np
from sklearn import svm
from sklearn.exceptions import ConvergenceWarning

from . import utils
from ..errors import EvaluationError

_DENY = ["ground_truth_data", "representation_function", "random_state"]


@utils.one_line_errors
@gin.configurable("sap_score", denylist=_DENY)
def compute_sap(ground_truth_data, representation_function, random_state,
                num_train: int = 10000, num_test: int = 5000, batch_size: int = 16,
                continuous_factors: bool = False, n_jobs: int | None = -1,
                svm_random_state: int | None = 0) -> dict:
    """SAP; returns ``{"SAP_score"}``."""
    mus, ys, mus_test, ys_test = utils.train_test_codes(
        ground_truth_data, representation_function, random_state, num_train, num_test, batch_size)
    score_matrix = compute_score_matrix(mus, ys, mus_test, ys_test, continuous_factors,
                                        n_jobs=n_jobs, svm_random_state=svm_random_state)
    return {"SAP_score": float(compute_avg_diff_top_two(score_matrix))}


def _discrete_score(mu_train, y_train, mu_test, y_test, random_state):
    classifier = svm.LinearSVC(C=0.01, class_weight="balanced", dual=True,
                               random_state=random_state)
    with warnings.catch_warnings():
        # C=0.01 on one feature often stops at max_iter, as it did in dlib.
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(mu_train[:, np.newaxis], y_train)
    prediction = classifier.predict(mu_test[:, np.newaxis])
    return np.mean(prediction == y_test)


def _continuous_score(mu, y):
    covariance = np.cov(mu, y, ddof=1)
    var_mu = covariance[0, 0]
    if var_mu > 1e-12:
        return covariance[0, 1] ** 2 * 1.0 / (var_mu * covariance[1, 1])
    return 0.0


def compute_score_matrix(mus, ys, mus_test, ys_test, continuous_factors,
                         n_jobs=-1, svm_random_state=0):
    """Score matrix (num_codes, num_factors)."""
    num_latents, num_factors = mus.shape[0], ys.shape[0]
    score_matrix = np.zeros([num_latents, num_factors])
    pairs = [(i, j) for i in range(num_latents) for j in range(num_factors)]
    if continuous_factors:
        for i, j in pairs:
            score_matrix[i, j] = _continuous_score(mus[i, :], ys[j, :])
        return score_matrix
    tasks = [(mus[i, :], ys[j, :], mus_test[i, :], ys_test[j, :], svm_random_state)
             for i, j in pairs]
    classes = [len(np.unique(ys[j, :])) for j in range(num_factors)]
    costs = [classes[j] for _, j in pairs]
    for (i, j), score in zip(pairs, utils.parallel_map(_discrete_score, tasks, n_jobs, costs)):
        score_matrix[i, j] = score
    return score_matrix


def compute_avg_diff_top_two(matrix):
    if matrix.shape[0] < 2:
        raise EvaluationError(f"SAP needs a representation with at least 2 dimensions, "
                         f"got {matrix.shape[0]}")
    sorted_matrix = np.sort(matrix, axis=0)
    return np.mean(sorted_matrix[-1, :] - sorted_matrix[-2, :])
