import os

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from evaluation import RepresentationError, representation as rp, toy_data
from evaluation.metrics import mig
from tests.evaluation.reference_representation import make_representation_function


class FakeEncoder:
    """Concept tokens (B, 4, 6) from images (B, 3, H, W): fixed random nonlinear map."""

    def __init__(self, height=2, width=2, concepts=4, dim=6, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(concepts, dim, 3 * height * width, generator=generator)
        self.calls = 0
        self.images_seen = 0

    def __call__(self, images):
        self.calls += 1
        self.images_seen += len(images)
        flat = images.flatten(1)
        return torch.tanh(torch.einsum("cdk,bk->bcd", self.weight, flat)) + 0.5


class TinyImages(toy_data.ToyGroundTruthData):
    """2x2 RGB images whose pixels are functions of 3 factors; has a full factor grid."""

    def __init__(self):
        super().__init__((3, 4, 5))

    def sample_observations_from_factors(self, factors, random_state):
        f = np.asarray(factors, dtype=np.float32) / np.array([2.0, 3.0, 4.0], np.float32)
        pixels = np.stack([f[:, 0], f[:, 1], f[:, 2], f[:, 0] * f[:, 1],
                           f[:, 1] * f[:, 2], f[:, 0] * f[:, 2], f[:, 0] ** 2, f[:, 1] ** 2,
                           f[:, 2] ** 2, 1 - f[:, 0], 1 - f[:, 1], 1 - f[:, 2]], axis=1)
        return pixels.reshape(len(f), 2, 2, 3)

    @property
    def num_observations(self):
        return 60

    def index_to_factors(self, indices):
        return np.stack(np.unravel_index(indices, (3, 4, 5)), axis=1).astype(np.int64)

    def factors_to_index(self, factors):
        return np.ravel_multi_index(np.asarray(factors).T, (3, 4, 5))


@pytest.fixture
def images():
    data = TinyImages()
    return data.sample(200, np.random.RandomState(0))[1]


def test_observations_are_sent_as_nchw_in_minus_one_to_one():
    seen = []

    def encode(batch):
        seen.append(batch)
        return torch.zeros(len(batch), 2, 3)

    obs = np.random.RandomState(0).rand(5, 2, 2, 3).astype(np.float32)
    tokens = rp.encode_observations(encode, obs, batch_size=2, progress=False)
    assert tokens.shape == (5, 2, 3) and [len(b) for b in seen] == [2, 2, 1]
    torch.testing.assert_close(torch.cat(seen), torch.from_numpy(obs).permute(0, 3, 1, 2) * 2 - 1)


def test_pca_per_concept_matches_sklearn(images):
    tokens = rp.encode_observations(FakeEncoder(), images, progress=False)
    projector = rp.fit_pca_per_concept(tokens, batch_size=37)  # streamed in uneven batches
    codes = projector.transform(tokens)
    assert codes.shape == (200, 4) and codes.dtype == np.float32
    for concept in range(4):
        reference = PCA(n_components=1).fit(tokens[:, concept, :])
        np.testing.assert_allclose(codes[:, concept], reference.transform(tokens[:, concept, :])[:, 0],
                                   atol=1e-5)
        np.testing.assert_allclose(projector.explained_variance_[concept],
                                   reference.explained_variance_[0], rtol=1e-5)
        component = projector.components_[concept]
        assert component[np.argmax(np.abs(component))] > 0  # documented sign convention
        assert np.linalg.norm(component) == pytest.approx(1.0)


def test_pca_is_accurate_far_from_the_origin():
    rng = np.random.RandomState(0)
    direction = np.array([3.0, 4.0]) / 5.0
    tokens = (1e5 + rng.randn(1000, 1, 1) * direction + 1e-3 * rng.randn(1000, 1, 2))
    projector = rp.fit_pca_per_concept(tokens.astype(np.float64), batch_size=100)
    np.testing.assert_allclose(projector.components_[0], direction, atol=1e-4)


def test_norm_alternative():
    tokens = np.array([[[3.0, 4.0], [0.0, 1.0]]], dtype=np.float32)
    np.testing.assert_allclose(rp.concept_norms(tokens), [[5.0, 1.0]])
    encoder = FakeEncoder()
    rep = make_representation_function(encoder, method="norm", progress=False)
    assert encoder.calls == 0  # nothing to fit
    obs = TinyImages().sample(3, np.random.RandomState(0))[1]
    expected = np.linalg.norm(rp.encode_observations(encoder, obs, progress=False), axis=2)
    np.testing.assert_allclose(rep(obs), expected, rtol=1e-6)


def test_representation_function_projects_new_observations(images):
    encoder = FakeEncoder()
    rep = make_representation_function(encoder, images, batch_size=64, progress=False)
    assert encoder.images_seen == 200
    new = TinyImages().sample(10, np.random.RandomState(5))[1]
    expected = rep.projector.transform(rp.encode_observations(encoder, new, progress=False))
    np.testing.assert_array_equal(rep(new), expected)
    assert rep(new).shape == (10, 4)


def test_fit_on_seeded_samples_of_a_dataset():
    data = TinyImages()
    first = make_representation_function(FakeEncoder(), ground_truth_data=data, num_fit=100,
                                            fit_seed=0, batch_size=32, progress=False)
    again = make_representation_function(FakeEncoder(), ground_truth_data=data, num_fit=100,
                                            fit_seed=0, batch_size=32, progress=False)
    other = make_representation_function(FakeEncoder(), ground_truth_data=data, num_fit=100,
                                            fit_seed=1, batch_size=32, progress=False)
    np.testing.assert_array_equal(first.projector.mean_, again.projector.mean_)
    assert not np.array_equal(first.projector.mean_, other.projector.mean_)
    assert first.projector.num_samples_ == 100


def test_fit_on_the_whole_factor_grid():
    data = TinyImages()
    encoder = FakeEncoder()
    rep = make_representation_function(encoder, ground_truth_data=data, num_fit=None,
                                          batch_size=16, progress=False)
    assert encoder.images_seen == 60 and rep.projector.num_samples_ == 60
    grid = data.sample_observations_from_factors(data.index_to_factors(np.arange(60)), None)
    direct = rp.fit_pca_per_concept(rp.encode_observations(encoder, grid, progress=False))
    np.testing.assert_allclose(rep.projector.components_, direct.components_, atol=1e-8)


def test_bad_encoder_output_is_reported(images):
    with pytest.raises(RepresentationError, match=r"concept tokens \(batch=64, C, D\)"):
        rp.encode_observations(lambda x: torch.zeros(len(x), 5), images, progress=False)
    with pytest.raises(RepresentationError, match="non-finite"):
        rp.tabulate_representation(lambda x: torch.full((len(x), 2, 3), float("nan")),
                                   TinyImages(), progress=False)
    with pytest.raises(ValueError, match="num_fit must be >= 2"):
        rp.tabulate_representation(FakeEncoder(), TinyImages(), num_fit=1, progress=False)


def test_plugs_into_the_metrics():
    data = TinyImages()
    rep = make_representation_function(FakeEncoder(), ground_truth_data=data, num_fit=200,
                                          progress=False)
    score = mig.compute_mig(data, rep, np.random.RandomState(0), num_train=300)
    assert 0.0 <= score["discrete_mig"] <= 1.0


def test_tabulated_codes_give_the_same_metric_numbers():
    from evaluation import runner
    data = TinyImages()
    encoder = FakeEncoder()
    settings = dict(metrics=("factor_vae", "mig"),
                    factor_vae={"batch_size": 8, "num_train": 40, "num_eval": 20,
                                "num_variance_estimate": 100},
                    mig={"num_train": 200})
    view, table = rp.tabulate_representation(encoder, data, num_fit=None, batch_size=16,
                                             progress=False)
    assert encoder.images_seen == 120  # fit pass + table pass over the 60 images
    assert table.codes.shape == (60, 4)
    direct = make_representation_function(encoder, ground_truth_data=data, num_fit=None,
                                             batch_size=16, progress=False)
    np.testing.assert_array_equal(table.projector.components_, direct.projector.components_)
    encoder.images_seen = 0
    tabulated = runner.run_metrics(view, table, **settings)
    assert encoder.images_seen == 0  # metrics only look codes up
    on_the_fly = runner.run_metrics(data, direct, **settings)
    for name in ("factor_vae", "mig"):
        assert tabulated[name] == pytest.approx(on_the_fly[name], rel=1e-6)
    with pytest.raises(RepresentationError, match="by image index"):
        table(data.sample(2, np.random.RandomState(0))[1])


def test_tabulated_codes_are_cached(tmp_path):
    data = TinyImages()
    encoder = FakeEncoder()
    kwargs = dict(batch_size=16, cache_dir=str(tmp_path), progress=False)
    _, first = rp.tabulate_representation(encoder, data, num_fit=30, cache_key="ckpt-a", **kwargs)
    assert not first.cache_hit and os.path.exists(first.cache_path)
    encoder.calls = 0
    _, again = rp.tabulate_representation(encoder, data, num_fit=30, cache_key="ckpt-a", **kwargs)
    assert encoder.calls == 0 and again.cache_hit and again.cache_path == first.cache_path
    np.testing.assert_array_equal(again.codes, first.codes)
    np.testing.assert_array_equal(again.projector.components_, first.projector.components_)
    _, other = rp.tabulate_representation(encoder, data, num_fit=30, cache_key="ckpt-b", **kwargs)
    assert encoder.calls > 0 and not other.cache_hit
    # same key, different fit set -> a different entry
    _, refit = rp.tabulate_representation(encoder, data, num_fit=40, cache_key="ckpt-a", **kwargs)
    assert not refit.cache_hit
    assert len(os.listdir(tmp_path)) == 3  # and no temporary file left behind


def test_tabulation_needs_an_indexed_dataset():
    from evaluation import EvaluationError
    with pytest.raises(EvaluationError, match="cannot be tabulated"):
        rp.tabulate_representation(FakeEncoder(), toy_data.IdentityObservations((2, 2)))
