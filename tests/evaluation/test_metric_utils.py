import numpy as np
import pytest

from evaluation import EvaluationError, GroundTruthDataError, RepresentationError, toy_data
from evaluation.metrics import METRICS, utils

ALL_METRICS = sorted(METRICS)


def _drop_one_row(x):
    return x.reshape(len(x), -1)[:-1]


def _with_nan(x):
    codes = x.reshape(len(x), -1).astype(np.float64)
    codes[0, 0] = np.nan
    return codes


def _with_inf(x):
    codes = x.reshape(len(x), -1).astype(np.float64)
    codes[-1, -1] = np.inf
    return codes


def _one_dimensional(x):
    return x.reshape(len(x), -1)[:, 0]


def _run(name, data, rep):
    return METRICS[name](data, rep, np.random.RandomState(0))


@pytest.mark.parametrize("name", ALL_METRICS)
@pytest.mark.parametrize("bad_rep, message", [
    (_drop_one_row, r"returned \d+ rows for a batch of \d+"),
    (_with_nan, "non-finite"),
    (_with_inf, "non-finite"),
    (_one_dimensional, "2-D array"),
])
def test_bad_representation_raises_one_line_error(name, bad_rep, message):
    data = toy_data.IdentityObservations((3, 4))
    with pytest.raises(RepresentationError, match=message) as info:
        _run(name, data, bad_rep)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ALL_METRICS)
def test_dataset_without_factors_is_refused(name):
    with pytest.raises(GroundTruthDataError, match="no ground-truth factors") as info:
        _run(name, toy_data.NoGroundTruthFactors(), lambda x: x)
    assert "\n" not in str(info.value)
    assert "NoGroundTruthFactors" in str(info.value)


def test_dataset_with_inconsistent_factor_sizes_is_refused():
    class Inconsistent(toy_data.IdentityObservations):
        num_factors = 2

    data = Inconsistent((3,))
    with pytest.raises(GroundTruthDataError, match="num_factors=2 but 1"):
        utils.check_ground_truth_data(data)


def test_code_size_must_not_change_between_batches():
    sizes = iter([3, 3, 4])
    rep = utils.CheckedRepresentation(lambda x: np.zeros((len(x), next(sizes))))
    rep(np.zeros((2, 1))), rep(np.zeros((2, 1)))
    with pytest.raises(RepresentationError, match="returned 4 dims, earlier batches had 3"):
        rep(np.zeros((2, 1)))


def test_checked_representation_keeps_dtype_and_accepts_tensors():
    import torch
    rep = utils.CheckedRepresentation(lambda x: torch.ones(len(x), 2))
    out = rep(np.zeros((5, 1)))
    assert out.dtype == np.float32 and out.shape == (5, 2)
    rep32 = utils.CheckedRepresentation(lambda x: np.ones((len(x), 2), np.float32))
    assert rep32(np.zeros((3, 1))).dtype == np.float32


def test_random_state_must_be_legacy_random_state_or_int():
    assert isinstance(utils.check_random_state(3), np.random.RandomState)
    state = np.random.RandomState(0)
    assert utils.check_random_state(state) is state
    with pytest.raises(EvaluationError, match="RandomState"):
        utils.check_random_state(np.random.default_rng(0))


def test_generate_batch_factor_code_samples_batch_by_batch():
    data = toy_data.NoisyObservations((5, 7), noise=0.1)
    calls = []

    def rep(x):
        calls.append(len(x))
        return x.reshape(len(x), -1)

    codes, factors = utils.generate_batch_factor_code(data, rep, 10, np.random.RandomState(0), 4)
    assert calls == [4, 4, 2]
    assert codes.shape == (2, 10) and factors.shape == (2, 10)
    replay = np.random.RandomState(0)
    expected = [data.sample(n, replay)[0] for n in (4, 4, 2)]
    np.testing.assert_array_equal(factors.T, np.vstack(expected))


def test_mutual_information_and_entropy_in_nats():
    y = np.array([[0, 0, 1, 1, 2, 2, 3, 3]])
    assert utils.discrete_entropy(y)[0] == pytest.approx(np.log(4))
    codes = np.array([[5, 5, 5, 5, 9, 9, 9, 9], [1, 2, 1, 2, 1, 2, 1, 2]])
    mi = utils.discrete_mutual_info(codes, y)
    assert mi.shape == (2, 1)
    assert mi[0, 0] == pytest.approx(np.log(2))  # knows the high bit only
    assert mi[1, 0] == pytest.approx(0.0)


def test_unknown_discretizer_is_a_value_error():
    with pytest.raises(ValueError, match="unknown discretizer"):
        utils.make_discretizer(np.zeros((1, 3)), 5, "quantile")


def test_parallel_map_keeps_task_order():
    assert utils.parallel_map(pow, [(2, 3), (3, 2), (5, 1)], n_jobs=2) == [8, 9, 5]
    # handed out most expensive first, still returned in task order
    assert utils.parallel_map(pow, [(2, 3), (3, 2), (5, 1)], n_jobs=2, costs=[1, 3, 2]) == [8, 9, 5]
    assert utils.resolve_n_jobs(-1, 1) == 1
    assert utils.resolve_n_jobs(None, 10) == 1
