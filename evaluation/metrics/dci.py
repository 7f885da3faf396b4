"""Disentanglement, Completeness, Informativeness (Eastwood & Williams, ICLR 2018).

As in disentanglement_lib's ``compute_dci``: ``num_train`` then ``num_test``
points are drawn ``batch_size`` at a time; for every factor a
``GradientBoostingClassifier()`` (sklearn defaults) is fit on the codes; the
absolute ``feature_importances_`` form the importance matrix R (codes x
factors); informativeness is the mean train / test accuracy over factors.

- disentanglement = sum_i rho_i (1 - H_F(R_i.)), with H_F the entropy of code
  i's normalised importances over factors (log base = number of factors) and
  rho_i code i's share of the total importance;
- completeness = sum_j rho_j (1 - H_D(R_.j)) over factors (log base = number
  of codes).

Both add 1e-11 to R before the entropy, and an all-zero R gives weights of 1
(as disentanglement_lib). Duplicating a perfect code splits each factor's
importance over two codes: disentanglement stays 1, completeness drops to
1 - log 2 / log(#codes).

The per-factor fits are independent and run in parallel with joblib
(``n_jobs``). disentanglement_lib leaves the boosting's ``random_state`` at
None (numpy's global generator), which only matters for breaking exact ties
between features; here it is a fixed integer (``gbt_random_state``) so that the
result is reproducible and the same for any ``n_jobs``.
"""
from __future__ import annotations

import gin
import numpy as np
import scipy.stats
from sklearn import ensemble

from . import utils

_DENY = ["ground_truth_data", "representation_function", "random_state"]


@utils.one_line_errors
@gin.configurable("dci", denylist=_DENY)
def compute_dci(ground_truth_data, representation_function, random_state,
                num_train: int = 10000, num_test: int = 5000, batch_size: int = 16,
                n_jobs: int | None = -1, gbt_random_state: int | None = 0) -> dict:
    """DCI; returns ``{"informativeness_train", "informativeness_test",
    "disentanglement", "completeness"}`` and, for pictures of which code took which factor,
    ``"importance_matrix"`` (codes x factors, nested lists) and the dataset's
    ``"factor_names"`` (when it has them).

    Defaults: 10000 train / 5000 test points, batch 16, one GBT per factor,
    ``n_jobs=-1`` (all cores, at most one process per factor).
    """
    mus_train, ys_train, mus_test, ys_test = utils.train_test_codes(
        ground_truth_data, representation_function, random_state, num_train, num_test, batch_size)
    scores = _compute_dci(mus_train, ys_train, mus_test, ys_test, n_jobs, gbt_random_state)
    return {**scores, **_factor_names(ground_truth_data)}


def _factor_names(ground_truth_data) -> dict:
    """``{"factor_names": [...]}`` of a dataset that names its factors, else ``{}`` (the
    metrics accept any object with the ground-truth interface)."""
    names = list(getattr(ground_truth_data, "factor_names", None) or ())
    return {"factor_names": [str(name) for name in names]} if names else {}


def _compute_dci(mus_train, ys_train, mus_test, ys_test, n_jobs=-1, gbt_random_state=0) -> dict:
    importance_matrix, train_acc, test_acc = compute_importance_gbt(
        mus_train, ys_train, mus_test, ys_test, n_jobs=n_jobs, random_state=gbt_random_state)
    return {"informativeness_train": float(train_acc),
            "informativeness_test": float(test_acc),
            "disentanglement": float(disentanglement(importance_matrix)),
            "completeness": float(completeness(importance_matrix)),
            "importance_matrix": importance_matrix.tolist()}


def _fit_factor(x_train, y_train, x_test, y_test, random_state):
    """One factor's GBT: (|importances| (num_codes,), train accuracy, test accuracy)."""
    model = ensemble.GradientBoostingClassifier(random_state=random_state)
    model.fit(x_train, y_train)
    importances = np.abs(model.feature_importances_)
    return (importances, np.mean(model.predict(x_train) == y_train),
            np.mean(model.predict(x_test) == y_test))


def compute_importance_gbt(x_train, y_train, x_test, y_test, n_jobs=-1, random_state=0):
    """Importance matrix (num_codes, num_factors), mean train and test accuracy.

    Inputs in disentanglement_lib's orientation: codes (num_codes, num_points),
    factors (num_factors, num_points).
    """
    num_factors = y_train.shape[0]
    tasks = [(x_train.T, y_train[i, :], x_test.T, y_test[i, :], random_state)
             for i in range(num_factors)]
    # A multi-class GBT fits one tree per class and stage: cost ~ number of classes.
    costs = [len(np.unique(y_train[i, :])) for i in range(num_factors)]
    results = utils.parallel_map(_fit_factor, tasks, n_jobs, costs=costs)
    importance_matrix = np.zeros([x_train.shape[0], num_factors], dtype=np.float64)
    for i, (importances, _, _) in enumerate(results):
        importance_matrix[:, i] = importances
    train_acc = np.mean([result[1] for result in results])
    test_acc = np.mean([result[2] for result in results])
    return importance_matrix, train_acc, test_acc


def disentanglement_per_code(importance_matrix):
    """1 - entropy of each code's importance over factors (base = #factors)."""
    return 1.0 - scipy.stats.entropy(importance_matrix.T + 1e-11, base=importance_matrix.shape[1])


def disentanglement(importance_matrix):
    per_code = disentanglement_per_code(importance_matrix)
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    code_importance = importance_matrix.sum(axis=1) / importance_matrix.sum()
    return np.sum(per_code * code_importance)


def completeness_per_factor(importance_matrix):
    """1 - entropy of each factor's importance over codes (base = #codes)."""
    return 1.0 - scipy.stats.entropy(importance_matrix + 1e-11, base=importance_matrix.shape[0])


def completeness(importance_matrix):
    per_factor = completeness_per_factor(importance_matrix)
    if importance_matrix.sum() == 0.0:
        importance_matrix = np.ones_like(importance_matrix)
    factor_importance = importance_matrix.sum(axis=0) / importance_matrix.sum()
    return np.sum(per_factor * factor_importance)
