"""Shared pieces of the disentanglement metrics.

Everything here follows google-research/disentanglement_lib
(``evaluation/metrics/utils.py``) so that, for the same ground-truth data,
representation function and ``np.random.RandomState``, every metric draws the
same random numbers in the same order and computes the same numbers.

Array orientation follows disentanglement_lib as well: codes and factors are
returned as ``(num_dims, num_points)`` and ``(num_factors, num_points)``.
The dtype of the representation is never changed: disentanglement_lib keeps
whatever the representation function returns (float32 for a PCA of float32
tokens), and histogram edges / variances computed in float32 differ in the
last bits from float64 ones.
"""
from __future__ import annotations

import functools
import numbers
from typing import Callable, Sequence

import numpy as np
from sklearn import metrics as sk_metrics

from ..errors import EvaluationError, GroundTruthDataError, RepresentationError

# Attributes the metrics call on a ground-truth dataset (duck-typed; see
# datasets/ground_truth.py for the project's implementation).
GROUND_TRUTH_ATTRIBUTES = ("num_factors", "factors_num_values", "sample_factors",
                           "sample_observations_from_factors", "sample")


def one_line_errors(configurable: Callable) -> Callable:
    """Wrap a gin configurable so our bad-input errors keep their one-line message.

    gin re-raises any exception from a configurable as a proxy whose text has
    "In call to configurable ..." lines appended; for EvaluationError the
    original exception is raised instead. Other errors are left as gin made them.
    """
    @functools.wraps(configurable)
    def call(*args, **kwargs):
        try:
            return configurable(*args, **kwargs)
        except EvaluationError as error:
            raise error.original from None
    return call


def check_ground_truth_data(ground_truth_data) -> None:
    """Raise GroundTruthDataError unless the object can be sampled by factors."""
    missing = [name for name in GROUND_TRUTH_ATTRIBUTES if not hasattr(ground_truth_data, name)]
    name = type(ground_truth_data).__name__
    if missing:
        raise GroundTruthDataError(
            f"{name} has no ground-truth factors (missing {', '.join(missing)}); "
            "disentanglement metrics need a factor-labelled dataset such as "
            "shapes3d, mpi3d, dsprites or cars3d")
    num_factors = ground_truth_data.num_factors
    if not isinstance(num_factors, numbers.Integral) or num_factors < 1:
        raise GroundTruthDataError(
            f"{name}.num_factors is {num_factors!r}; disentanglement metrics need "
            "at least one ground-truth factor")
    sizes = list(ground_truth_data.factors_num_values)
    if len(sizes) != num_factors:
        raise GroundTruthDataError(
            f"{name} has num_factors={num_factors} but {len(sizes)} factors_num_values")


def check_random_state(random_state) -> np.random.RandomState:
    """The legacy RandomState the metrics draw from (an int seeds a new one)."""
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.RandomState(int(random_state))
    raise EvaluationError(
        f"random_state must be a np.random.RandomState (as in disentanglement_lib) or an "
        f"int seed, not {type(random_state).__name__}")


class CheckedRepresentation:
    """Wraps a representation function and validates every batch it returns.

    The output must be a finite 2-D array with one row per observation and
    the same number of columns on every call. The array is returned as given
    (no dtype change) so numbers match disentanglement_lib's.
    """

    def __init__(self, representation_function: Callable[[np.ndarray], np.ndarray]):
        if isinstance(representation_function, CheckedRepresentation):
            representation_function = representation_function.function
        if not callable(representation_function):
            raise RepresentationError(
                f"representation_function must be callable, got "
                f"{type(representation_function).__name__}")
        self.function = representation_function
        self.num_dims = None

    def __call__(self, observations) -> np.ndarray:
        num = len(observations)
        rep = self.function(observations)
        if hasattr(rep, "detach"):  # a torch tensor slipped through
            rep = rep.detach().cpu().numpy()
        rep = np.asarray(rep)
        if rep.ndim != 2:
            raise RepresentationError(
                f"representation_function must return a 2-D array (batch, dims); got shape "
                f"{tuple(rep.shape)} for a batch of {num} observations")
        if rep.shape[0] != num:
            raise RepresentationError(
                f"representation_function returned {rep.shape[0]} rows for a batch of {num} "
                "observations (one row per observation expected)")
        if self.num_dims is None:
            if rep.shape[1] < 1:
                raise RepresentationError("representation_function returned 0 dimensions")
            self.num_dims = rep.shape[1]
        elif rep.shape[1] != self.num_dims:
            raise RepresentationError(
                f"representation_function returned {rep.shape[1]} dims, earlier batches had "
                f"{self.num_dims}")
        if not np.issubdtype(rep.dtype, np.number) or np.issubdtype(rep.dtype, np.complexfloating):
            raise RepresentationError(
                f"representation_function returned dtype {rep.dtype}; a real-valued array is needed")
        if not np.isfinite(rep).all():
            bad = int(np.size(rep) - np.count_nonzero(np.isfinite(rep)))
            raise RepresentationError(
                f"representation_function returned {bad} non-finite values (NaN or inf) in a "
                f"batch of {num} observations")
        return rep


def prepare(ground_truth_data, representation_function, random_state):
    """Validate the three common metric arguments; returns (checked fn, RandomState)."""
    check_ground_truth_data(ground_truth_data)
    return CheckedRepresentation(representation_function), check_random_state(random_state)


def check_positive(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, numbers.Integral) or value < 1:
            raise EvaluationError(f"{name} must be a positive integer, got {value!r}")


def train_test_codes(ground_truth_data, representation_function, random_state,
                     num_train: int, num_test: int, batch_size: int):
    """Validate the arguments, then draw the train and the test (codes, factors) sets in that
    order from one RandomState, as disentanglement_lib's DCI, SAP and explicitness do.
    Returns (mus_train, ys_train, mus_test, ys_test)."""
    representation_function, random_state = prepare(
        ground_truth_data, representation_function, random_state)
    mus_train, ys_train = generate_batch_factor_code(
        ground_truth_data, representation_function, num_train, random_state, batch_size)
    mus_test, ys_test = generate_batch_factor_code(
        ground_truth_data, representation_function, num_test, random_state, batch_size)
    return mus_train, ys_train, mus_test, ys_test


def generate_batch_factor_code(ground_truth_data, representation_function, num_points: int,
                               random_state: np.random.RandomState, batch_size: int):
    """Sample ``num_points`` (factors, codes) pairs, ``batch_size`` at a time.

    Each batch is one ``ground_truth_data.sample(n, random_state)`` call (factors,
    then observations) followed by one representation call, exactly as in
    disentanglement_lib, so the random stream is consumed identically.

    Returns codes ``(num_dims, num_points)`` and factors ``(num_factors, num_points)``.
    """
    check_positive(num_points=num_points, batch_size=batch_size)
    code_batches, factor_batches = [], []
    done = 0
    while done < num_points:
        num = min(num_points - done, batch_size)
        factors, observations = ground_truth_data.sample(num, random_state)
        factor_batches.append(np.asarray(factors))
        code_batches.append(representation_function(observations))
        done += num
    codes = np.vstack(code_batches)
    factors = np.vstack(factor_batches)
    return np.transpose(codes), np.transpose(factors)


def obtain_representation(observations, representation_function, batch_size: int) -> np.ndarray:
    """Codes ``(num_dims, num_points)`` of given observations, in batches."""
    check_positive(batch_size=batch_size)
    num_points = len(observations)
    parts = [representation_function(observations[start:start + batch_size])
             for start in range(0, num_points, batch_size)]
    return np.transpose(np.vstack(parts))


def histogram_discretize(target: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Bin each row into ``num_bins`` equal-width bins over its own [min, max].

    Labels are ``np.digitize(row, edges[:-1])`` with ``edges`` from
    ``np.histogram(row, num_bins)``, i.e. 1..num_bins, stored in an array of
    the input's dtype (as disentanglement_lib's ``_histogram_discretize``).
    """
    check_positive(num_bins=num_bins)
    target = np.asarray(target)
    discretized = np.zeros_like(target)
    for row in range(target.shape[0]):
        edges = np.histogram(target[row, :], num_bins)[1]
        discretized[row, :] = np.digitize(target[row, :], edges[:-1])
    return discretized


def identity_discretize(target: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """No discretisation (for representations that are already discrete)."""
    del num_bins
    return np.asarray(target)


DISCRETIZERS = {"histogram": histogram_discretize, "identity": identity_discretize}


def make_discretizer(target: np.ndarray, num_bins: int = 20,
                     discretizer_fn="histogram") -> np.ndarray:
    """Apply a discretiser given by name ('histogram', 'identity') or as a callable."""
    if isinstance(discretizer_fn, str):
        try:
            discretizer_fn = DISCRETIZERS[discretizer_fn]
        except KeyError:
            raise EvaluationError(f"unknown discretizer {discretizer_fn!r}; "
                             f"choose from {sorted(DISCRETIZERS)}") from None
    return discretizer_fn(target, num_bins)


def discrete_mutual_info(mus: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """MI matrix ``(num_codes, num_factors)`` in nats, sklearn's mutual_info_score(y, code)."""
    matrix = np.zeros([mus.shape[0], ys.shape[0]])
    for i in range(mus.shape[0]):
        for j in range(ys.shape[0]):
            matrix[i, j] = sk_metrics.mutual_info_score(ys[j, :], mus[i, :])
    return matrix


def discrete_entropy(ys: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row, computed as mutual_info_score(y, y)."""
    entropy = np.zeros(ys.shape[0])
    for j in range(ys.shape[0]):
        entropy[j] = sk_metrics.mutual_info_score(ys[j, :], ys[j, :])
    return entropy


def normalize_data(data: np.ndarray, mean=None, stddev=None):
    """Standardise each row; returns (normalised, mean, stddev).

    disentanglement_lib divides by the raw standard deviation; a constant row
    (stddev 0) would turn into NaNs and crash the classifier that follows, so
    here a zero stddev is replaced by 1 (the row is then all zeros). For every
    input on which disentanglement_lib runs, the result is identical.
    """
    if mean is None:
        mean = np.mean(data, axis=1)
    if stddev is None:
        stddev = np.std(data, axis=1)
        stddev = np.where(stddev == 0, np.ones_like(stddev), stddev)
    return (data - mean[:, np.newaxis]) / stddev[:, np.newaxis], mean, stddev


def resolve_n_jobs(n_jobs, num_tasks: int) -> int:
    """Number of worker processes for ``num_tasks`` independent fits (>= 1)."""
    if n_jobs is None:
        return 1
    import joblib
    if n_jobs < 0:
        n_jobs = max(1, joblib.cpu_count() + 1 + n_jobs)
    return max(1, min(int(n_jobs), num_tasks))


def parallel_map(function: Callable, tasks: Sequence[tuple], n_jobs, costs=None) -> list:
    """``[function(*task) for task in tasks]``, spread over processes with joblib.

    Results come back in task order; each task is a pure function of its
    arguments (estimators get fixed integer seeds), so the numbers do not
    depend on ``n_jobs``. With ``costs`` (one estimate per task, e.g. the number
    of classes a classifier must fit), tasks are handed out most expensive
    first, which shortens the run when one task dominates.
    """
    workers = resolve_n_jobs(n_jobs, len(tasks))
    if workers == 1:
        return [function(*task) for task in tasks]
    import joblib
    order = list(range(len(tasks)))
    if costs is not None:
        order.sort(key=lambda index: -costs[index])
    outputs = joblib.Parallel(n_jobs=workers)(
        joblib.delayed(function)(*tasks[index]) for index in order)
    results = [None] * len(tasks)
    for index, output in zip(order, outputs):
        results[index] = output
    return results
