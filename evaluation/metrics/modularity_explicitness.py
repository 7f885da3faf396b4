"""Modularity and explicitness (Ridgeway & Mozer, NeurIPS 2018), as in disentanglement_lib.

``num_train`` then ``num_test`` points are drawn ``batch_size`` at a time.

- Modularity: MI between histogram-discretised codes (``num_bins``) and factors;
  for each code, with m_j its squared MI with factor j and theta = max_j m_j,
  1 - (sum_j m_j - theta) / (theta (F - 1)); a code with no information scores
  0; the metric is the mean over codes.
- Explicitness: codes standardised with the training mean / std; per factor a
  ``LogisticRegression()`` (sklearn defaults) on all codes; macro ROC-AUC of
  its class probabilities against the one-hot factor, on train and test; mean
  over factors.

disentanglement_lib binarises the labels with a fresh MultiLabelBinarizer on
each split, which only lines up with the classifier's probability columns when
every class occurs in both splits (otherwise it crashes). Here the labels are
binarised against the classifier's classes and classes absent from a split are
left out of that split's macro average; where disentanglement_lib runs, the
numbers are the same.
"""
from __future__ import annotations

import gin
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from . import utils

_DENY = ["ground_truth_data", "representation_function", "random_state"]


@utils.one_line_errors
@gin.configurable("modularity_explicitness", denylist=_DENY)
def compute_modularity_explicitness(ground_truth_data, representation_function, random_state,
                                    num_train: int = 10000, num_test: int = 5000,
                                    batch_size: int = 16, num_bins: int = 20,
                                    discretizer_fn="histogram", n_jobs: int | None = -1) -> dict:
    """Returns ``{"modularity_score", "explicitness_score_train", "explicitness_score_test"}``."""
    mus_train, ys_train, mus_test, ys_test = utils.train_test_codes(
        ground_truth_data, representation_function, random_state, num_train, num_test, batch_size)
    discretized_mus = utils.make_discretizer(mus_train, num_bins, discretizer_fn)
    mutual_information = utils.discrete_mutual_info(discretized_mus, ys_train)
    scores = {"modularity_score": float(modularity(mutual_information))}

    mus_train_norm, mean_mus, stddev_mus = utils.normalize_data(mus_train)
    mus_test_norm, _, _ = utils.normalize_data(mus_test, mean_mus, stddev_mus)
    tasks = [(mus_train_norm, ys_train[i, :], mus_test_norm, ys_test[i, :])
             for i in range(ys_train.shape[0])]
    costs = [len(np.unique(ys_train[i, :])) for i in range(ys_train.shape[0])]
    results = np.array(utils.parallel_map(explicitness_per_factor, tasks, n_jobs, costs))
    scores["explicitness_score_train"] = float(np.mean(results[:, 0]))
    scores["explicitness_score_test"] = float(np.mean(results[:, 1]))
    return scores


def _macro_roc_auc(classes, y, probabilities):
    onehot = (y[:, np.newaxis] == classes[np.newaxis, :]).astype(np.int64)
    keep = onehot.any(axis=0) & ~onehot.all(axis=0)
    if not keep.any():
        return float("nan")
    return roc_auc_score(onehot[:, keep], probabilities[:, keep])


def explicitness_per_factor(mus_train, y_train, mus_test, y_test):
    """(train ROC-AUC, test ROC-AUC) of a logistic regression for one factor."""
    x_train, x_test = np.transpose(mus_train), np.transpose(mus_test)
    # sklearn >= 0.22 defaults (lbfgs, multinomial), as in VCT's sklearn 0.23.2.
    clf = LogisticRegression().fit(x_train, y_train)
    roc_train = _macro_roc_auc(clf.classes_, y_train, clf.predict_proba(x_train))
    roc_test = _macro_roc_auc(clf.classes_, y_test, clf.predict_proba(x_test))
    return roc_train, roc_test


def modularity(mutual_information):
    """Mean modularity over codes from an MI matrix (num_codes, num_factors)."""
    squared_mi = np.square(mutual_information)
    max_squared_mi = np.max(squared_mi, axis=1)
    numerator = np.sum(squared_mi, axis=1) - max_squared_mi
    denominator = max_squared_mi * (squared_mi.shape[1] - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = numerator / denominator
    modularity_score = 1.0 - delta
    modularity_score[max_squared_mi == 0.0] = 0.0
    return np.mean(modularity_score)
