"""FactorVAE disentanglement metric (Kim & Mnih, ICML 2018).

Procedure of disentanglement_lib's ``compute_factor_vae``:

1. Global variances: ``num_variance_estimate`` observations from one
   ``sample`` call, encoded 64 at a time; per-dimension variance (ddof=1).
2. Pruning: a dimension is active when ``sqrt(global variance) >= prune_threshold``
   (disentanglement_lib's ``prune_dims``; VCT and disentanglement_lib's configs use
   0.05 -- it is a threshold on the standard deviation, not a variance ratio).
3. Each vote: draw a factor ``k`` (randint), a batch of ``batch_size`` factor
   vectors with factor ``k`` set to the batch's first value, their observations;
   the vote goes to the active dimension with the smallest
   ``local variance / global variance`` (``np.argmin``: the first one on ties).
4. The majority-vote classifier (dimension -> most voted factor, first factor on
   ties) is built from ``num_train`` votes and scored on ``num_eval`` new votes.

disentanglement_lib stores each vote at the argmin's position *within the
active dimensions* but reads the table as if it were indexed by all
dimensions; that is a relabelling of columns, so the accuracies are the same
as with the true column, which is what is stored here.
"""
from __future__ import annotations

import gin
import numpy as np

from . import utils
from ..errors import EvaluationError

_DENY = ["ground_truth_data", "representation_function", "random_state"]


@utils.one_line_errors
@gin.configurable("factor_vae_score", denylist=_DENY)
def compute_factor_vae(ground_truth_data, representation_function, random_state,
                       batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                       num_variance_estimate: int = 10000, prune_threshold: float = 0.05,
                       variance_batch_size: int = 64) -> dict:
    """FactorVAE score; returns ``{"train_accuracy", "eval_accuracy", "num_active_dims"}``.

    ``num_active_dims`` is the number of dimensions kept by pruning.
    (disentanglement_lib reports ``len`` of the boolean mask, i.e. all dimensions.)
    """
    representation_function, random_state = utils.prepare(
        ground_truth_data, representation_function, random_state)
    utils.check_positive(batch_size=batch_size, num_train=num_train, num_eval=num_eval,
                         num_variance_estimate=num_variance_estimate,
                         variance_batch_size=variance_batch_size)
    if batch_size < 2 or num_variance_estimate < 2:
        raise EvaluationError("batch_size and num_variance_estimate must be >= 2 (variances use ddof=1)")

    observations = ground_truth_data.sample(num_variance_estimate, random_state)[1]
    codes = utils.obtain_representation(observations, representation_function,
                                        variance_batch_size).T
    del observations
    global_variances = np.var(codes, axis=0, ddof=1)
    active_dims = prune_dims(global_variances, prune_threshold)

    if not active_dims.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}

    train_votes = _generate_votes(ground_truth_data, representation_function, batch_size,
                                  num_train, random_state, global_variances, active_dims)
    classifier = np.argmax(train_votes, axis=0)
    columns = np.arange(train_votes.shape[1])
    train_accuracy = np.sum(train_votes[classifier, columns]) * 1.0 / np.sum(train_votes)

    eval_votes = _generate_votes(ground_truth_data, representation_function, batch_size,
                                 num_eval, random_state, global_variances, active_dims)
    eval_accuracy = np.sum(eval_votes[classifier, columns]) * 1.0 / np.sum(eval_votes)
    return {"train_accuracy": float(train_accuracy), "eval_accuracy": float(eval_accuracy),
            "num_active_dims": int(np.count_nonzero(active_dims))}


def prune_dims(variances: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Boolean mask of dimensions whose standard deviation is >= threshold."""
    return np.sqrt(variances) >= threshold


def _generate_votes(ground_truth_data, representation_function, batch_size, num_points,
                    random_state, global_variances, active_dims):
    """Vote table int64 (num_factors, num_dims)."""
    votes = np.zeros((ground_truth_data.num_factors, global_variances.shape[0]), dtype=np.int64)
    active_index = np.flatnonzero(active_dims)
    for _ in range(num_points):
        factor_index = random_state.randint(ground_truth_data.num_factors)
        factors = ground_truth_data.sample_factors(batch_size, random_state)
        factors[:, factor_index] = factors[0, factor_index]
        observations = ground_truth_data.sample_observations_from_factors(factors, random_state)
        codes = representation_function(observations)
        local_variances = np.var(codes, axis=0, ddof=1)
        argmin = np.argmin(local_variances[active_dims] / global_variances[active_dims])
        votes[factor_index, active_index[argmin]] += 1
    return votes
