"""Mutual Information Gap (Chen et al., NeurIPS 2018), as in disentanglement_lib.

``num_train`` points are drawn ``batch_size`` at a time (factors, then
observations, per batch); each code dimension is discretised with a
``num_bins``-bin histogram over its own range; MI between every discretised
code and every factor is ``sklearn.metrics.mutual_info_score`` (nats). For each
factor the gap between the largest and second largest MI is divided by the
factor's entropy; MIG is the mean over factors.

Duplicating a code gives two equal top entries for its factor, so that
factor's gap (and, for a duplicated perfect code, the MIG) drops to 0.
"""
from __future__ import annotations

import gin
import numpy as np

from . import utils
from ..errors import EvaluationError

_DENY = ["ground_truth_data", "representation_function", "random_state"]


@utils.one_line_errors
@gin.configurable("mig", denylist=_DENY)
def compute_mig(ground_truth_data, representation_function, random_state,
                num_train: int = 10000, batch_size: int = 16, num_bins: int = 20,
                discretizer_fn="histogram") -> dict:
    """MIG; returns ``{"discrete_mig"}`` and, for pictures of which code took which factor,
    ``"mutual_information_matrix"`` (codes x factors, nested lists: each code's MI with each
    factor divided by the factor's entropy, so 1 means the code determines the factor) and the
    dataset's ``"factor_names"`` (when it has them).

    Defaults: 10000 points, batch 16, histogram discretiser with 20 bins
    (disentanglement_lib's ``discretizer.*`` bindings become ``num_bins`` /
    ``discretizer_fn`` here).
    """
    representation_function, random_state = utils.prepare(
        ground_truth_data, representation_function, random_state)
    mus_train, ys_train = utils.generate_batch_factor_code(
        ground_truth_data, representation_function, num_train, random_state, batch_size)
    scores = _compute_mig(mus_train, ys_train, num_bins, discretizer_fn)
    return {**scores, **_factor_names(ground_truth_data)}


def _factor_names(ground_truth_data) -> dict:
    """``{"factor_names": [...]}`` of a dataset that names its factors, else ``{}``."""
    names = list(getattr(ground_truth_data, "factor_names", None) or ())
    return {"factor_names": [str(name) for name in names]} if names else {}


def _compute_mig(mus_train, ys_train, num_bins=20, discretizer_fn="histogram") -> dict:
    if mus_train.shape[0] < 2:
        raise EvaluationError(f"MIG needs a representation with at least 2 dimensions, "
                         f"got {mus_train.shape[0]}")
    discretized_mus = utils.make_discretizer(mus_train, num_bins, discretizer_fn)
    m = utils.discrete_mutual_info(discretized_mus, ys_train)  # (num_codes, num_factors)
    entropy = utils.discrete_entropy(ys_train)
    sorted_m = np.sort(m, axis=0)[::-1]
    # A factor that is constant in the sample has zero entropy; disentanglement_lib
    # then divides by zero (nan/inf), and so does this.
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = np.divide(sorted_m[0, :] - sorted_m[1, :], entropy[:])
        normalised = m / entropy[np.newaxis, :]  # a constant factor's column: nan (null in JSON)
    return {"discrete_mig": float(np.mean(gaps)), "mutual_information_matrix": normalised.tolist()}
