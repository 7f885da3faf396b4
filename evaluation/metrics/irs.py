"""Interventional Robustness Score (Suter et al., ICML 2019), as in disentanglement_lib.

``num_train`` points are drawn ``batch_size`` at a time; the factors are
discretised with the histogram discretiser (``num_bins``, as disentanglement_lib
applies its ``discretizer`` to the factors) and constant code dimensions are
dropped. For code i and factor j, the deviation is the mean over the values v
of factor j of the ``diff_quantile`` quantile of |z_i - E[z_i | g_j = v]|,
normalised by max |z_i - E[z_i]|; IRS_ij = 1 - that. Each code's score is its
best factor's IRS_ij, and the result is the average of the codes' scores
weighted by their max deviations.
"""
from __future__ import annotations

import gin
import numpy as np

from . import utils
from ..errors import EvaluationError

_DENY = ["ground_truth_data", "representation_function", "random_state"]


@utils.one_line_errors
@gin.configurable("irs", denylist=_DENY)
def compute_irs(ground_truth_data, representation_function, random_state,
                diff_quantile: float = 0.99, num_train: int = 10000, batch_size: int = 16,
                num_bins: int = 20, discretizer_fn="histogram") -> dict:
    """IRS; returns ``{"IRS", "num_active_dims"}``.

    ``num_active_dims`` counts the non-constant code dimensions
    (disentanglement_lib sums the active codes' values there, a slip).
    """
    representation_function, random_state = utils.prepare(
        ground_truth_data, representation_function, random_state)
    if not 0.0 <= diff_quantile <= 1.0:
        raise EvaluationError(f"diff_quantile must be in [0, 1], got {diff_quantile}")
    mus, ys = utils.generate_batch_factor_code(
        ground_truth_data, representation_function, num_train, random_state, batch_size)
    ys_discrete = utils.make_discretizer(ys, num_bins, discretizer_fn)
    active_mus = _drop_constant_dims(mus)
    if not active_mus.any():
        irs_score = 0.0
    else:
        irs_score = scalable_disentanglement_score(ys_discrete.T, active_mus.T,
                                                   diff_quantile)["avg_score"]
    return {"IRS": float(irs_score), "num_active_dims": int(active_mus.shape[0])}


def _drop_constant_dims(codes: np.ndarray) -> np.ndarray:
    """Rows of ``codes`` (num_codes, num_points) whose variance is > 0."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise EvaluationError("expecting a matrix of codes (num_codes, num_points)")
    return codes[codes.var(axis=1) > 0.0, :]


def scalable_disentanglement_score(gen_factors, latents, diff_quantile=0.99) -> dict:
    """IRS of latents (num_points, num_latents) against factors (num_points, num_factors)."""
    num_gen = gen_factors.shape[1]
    num_lat = latents.shape[1]
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    cum_deviations = np.zeros([num_lat, num_gen])
    for i in range(num_gen):
        values = np.unique(gen_factors[:, i], axis=0)
        for value in values:
            match = gen_factors[:, i] == value
            e_loc = np.mean(latents[match, :], axis=0)
            diffs = np.abs(latents[match, :] - e_loc)
            cum_deviations[:, i] += np.percentile(diffs, q=diff_quantile * 100, axis=0)
        cum_deviations[:, i] /= values.shape[0]
    normalized_deviations = cum_deviations / max_deviations[:, np.newaxis]
    irs_matrix = 1.0 - normalized_deviations
    disentanglement_scores = irs_matrix.max(axis=1)
    if np.sum(max_deviations) > 0.0:
        avg_score = np.average(disentanglement_scores, weights=max_deviations)
    else:
        avg_score = np.mean(disentanglement_scores)
    return {"disentanglement_scores": disentanglement_scores, "avg_score": avg_score,
            "parents": irs_matrix.argmax(axis=1), "IRS_matrix": irs_matrix,
            "max_deviations": max_deviations}
