"""From concept tokens to the per-image codes the disentanglement metrics read.

VCT's published protocol: encode images to concept tokens (B, C, D), fit PCA
with one component per concept over the evaluation images, and use the C
projections as the code of an image. Every image of the dataset is encoded
once into a code table; the metrics draw factors as usual and look the codes
up by image index. This module does that with any ``encode_fn`` (it never
imports models/ or training/):

    encode_fn(images: torch.Tensor (B, 3, H, W) in [-1, 1]) -> torch.Tensor (B, C, D)

- ``tabulate_representation``: the protocol; returns the pair
  (``IndexedGroundTruthView``, ``CodeTable``) the metrics run on, cached per
  checkpoint.
- ``encode_observations``: batched encoding under ``torch.no_grad()``.
- ``fit_projector`` / ``pca_fit_set``: the code map and the images it is fit
  on (every image, or seeded samples).
- ``fit_pca_per_concept`` / ``ConceptPCA``: the PCA(1) per concept. The
  covariance is accumulated in float64 batch by batch (shifted by the first
  batch's mean against cancellation), so the fit set never has to be held in
  memory; the component is the top eigenvector of each concept's covariance.
- ``concept_norms`` / ``ConceptNorm``: the raw alternative, the L2 norm of each
  concept token.

``encode_fn`` is called under ``torch.no_grad()``; putting the model in eval
mode is the caller's job.

Sign convention: a principal direction has no sign of its own. Each
component is flipped so that its largest-magnitude coordinate is positive
(the convention of recent sklearn ``PCA``, 1.5 and later), so codes equal
``sklearn.decomposition.PCA(1).fit_transform`` of the same concept up to float
rounding. VCT's sklearn 0.23.2 chose the sign from the data instead; BetaVAE,
FactorVAE and DCI do not depend on the sign, and MIG only through the rounding
of histogram edges.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from typing import Callable

import numpy as np
import torch

from common.atomic import atomic_write

from .errors import EvaluationError, RepresentationError
from .metrics.utils import check_ground_truth_data
from .progress import progress_bar

EncodeFn = Callable[[torch.Tensor], torch.Tensor]

CACHE_FORMAT_VERSION = 1
METHODS = ("pca", "norm")

__all__ = ["ConceptPCA", "ConceptNorm", "CodeTable", "IndexedGroundTruthView",
           "GridObservations", "encode_observations", "fit_pca_per_concept", "concept_norms",
           "fit_projector", "pca_fit_set", "tabulate_representation", "observations_to_images"]


def observations_to_images(observations) -> torch.Tensor:
    """(B, H, W, C) in [0, 1] (numpy) -> float32 tensor (B, C, H, W) in [-1, 1]."""
    array = np.asarray(observations, dtype=np.float32)
    if array.ndim != 4:
        raise RepresentationError(
            f"observations must be (batch, H, W, C) images, got shape {tuple(array.shape)}")
    images = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
    return images * 2.0 - 1.0


def _check_tokens(tokens: torch.Tensor, batch: int) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor):
        raise RepresentationError(
            f"encode_fn must return a torch.Tensor (B, C, D), got {type(tokens).__name__}")
    if tokens.dim() != 3 or tokens.shape[0] != batch:
        raise RepresentationError(
            f"encode_fn must return concept tokens (batch={batch}, C, D), got shape "
            f"{tuple(tokens.shape)}")
    if not torch.isfinite(tokens).all():
        raise RepresentationError("encode_fn returned non-finite concept tokens (NaN or inf)")
    return tokens


def _iter_token_batches(encode_fn: EncodeFn, observations, batch_size: int, device=None,
                        progress: bool = False, desc: str = "encoding"):
    """Yield float32 numpy tokens (b, C, D) for consecutive slices of ``observations``."""
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be >= 1, got {batch_size}")
    num = len(observations)
    starts = range(0, num, batch_size)
    with torch.no_grad():
        for start in progress_bar(starts, progress, desc=desc, unit="batch"):
            chunk = observations[start:start + batch_size]
            images = observations_to_images(chunk)
            if device is not None:
                images = images.to(device)
            tokens = _check_tokens(encode_fn(images), len(images))
            yield tokens.detach().to("cpu", torch.float32).numpy()


def encode_observations(encode_fn: EncodeFn, observations, batch_size: int = 64, device=None,
                        progress: bool = True, desc: str = "encoding") -> np.ndarray:
    """Concept tokens float32 (N, C, D) of observations (N, H, W, C) in [0, 1].

    ``observations`` may be any sliceable array-like (numpy array, memmap,
    h5py dataset); it is read ``batch_size`` rows at a time.
    """
    parts = list(_iter_token_batches(encode_fn, observations, batch_size, device, progress, desc))
    if not parts:
        raise EvaluationError("no observations to encode")
    return np.concatenate(parts, axis=0)


class ConceptPCA:
    """One principal component per concept; ``transform`` gives (N, C) codes."""

    method = "pca"

    def __init__(self, mean: np.ndarray, components: np.ndarray,
                 explained_variance: np.ndarray, num_samples: int):
        self.mean_ = np.asarray(mean, dtype=np.float64)                   # (C, D)
        self.components_ = np.asarray(components, dtype=np.float64)       # (C, D), unit rows
        self.explained_variance_ = np.asarray(explained_variance, dtype=np.float64)  # (C,)
        self.num_samples_ = int(num_samples)

    @property
    def num_concepts(self) -> int:
        return self.mean_.shape[0]

    def transform(self, tokens) -> np.ndarray:
        """float32 (N, C): projection of each centred concept token on its component."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 3 or tokens.shape[1:] != self.mean_.shape:
            raise RepresentationError(
                f"tokens must have shape (N, {self.mean_.shape[0]}, {self.mean_.shape[1]}) like "
                f"the fit set, got {tuple(tokens.shape)}")
        centred = tokens.astype(np.float64) - self.mean_[np.newaxis]
        return np.einsum("ncd,cd->nc", centred, self.components_).astype(np.float32)

    def state(self) -> dict:
        return {"mean": self.mean_, "components": self.components_,
                "explained_variance": self.explained_variance_,
                "num_samples": np.asarray(self.num_samples_)}

    @classmethod
    def from_state(cls, state) -> "ConceptPCA":
        return cls(state["mean"], state["components"], state["explained_variance"],
                   int(state["num_samples"]))


class ConceptNorm:
    """The raw alternative: the L2 norm of each concept token (nothing to fit)."""

    method = "norm"

    def transform(self, tokens) -> np.ndarray:
        return concept_norms(tokens)


def concept_norms(tokens) -> np.ndarray:
    """float32 (N, C): L2 norm of each concept token of (N, C, D) tokens."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 3:
        raise RepresentationError(f"tokens must be (N, C, D), got shape {tuple(tokens.shape)}")
    return np.linalg.norm(tokens.astype(np.float64), axis=2).astype(np.float32)


class _CovarianceAccumulator:
    """Per-concept mean and covariance of streamed (b, C, D) batches, in float64."""

    def __init__(self):
        self.count = 0
        self.shift = None
        self.sum = None
        self.outer = None

    def update(self, tokens: np.ndarray) -> None:
        tokens = np.asarray(tokens, dtype=np.float64)
        if tokens.ndim != 3:
            raise RepresentationError(f"tokens must be (N, C, D), got shape {tuple(tokens.shape)}")
        if self.shift is None:
            self.shift = tokens.mean(axis=0)
            self.sum = np.zeros_like(self.shift)
            self.outer = np.zeros(self.shift.shape + self.shift.shape[-1:])
        elif tokens.shape[1:] != self.shift.shape:
            raise RepresentationError(
                f"token shape changed during the fit: {tuple(tokens.shape[1:])} after "
                f"{tuple(self.shift.shape)}")
        centred = tokens - self.shift[np.newaxis]
        self.count += tokens.shape[0]
        self.sum += centred.sum(axis=0)
        self.outer += np.einsum("ncd,nce->cde", centred, centred)

    def finalize(self) -> ConceptPCA:
        if self.count < 2:
            raise EvaluationError(f"PCA needs at least 2 fit samples, got {self.count}")
        mean_offset = self.sum / self.count
        covariance = (self.outer - self.count * np.einsum("cd,ce->cde", mean_offset, mean_offset))
        covariance /= self.count - 1
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)   # ascending, batched over C
        components = eigenvectors[:, :, -1]                      # (C, D)
        largest = np.argmax(np.abs(components), axis=1)
        signs = np.sign(components[np.arange(len(components)), largest])
        signs[signs == 0] = 1.0
        components = components * signs[:, np.newaxis]
        explained = np.maximum(eigenvalues[:, -1], 0.0)
        return ConceptPCA(self.shift + mean_offset, components, explained, self.count)


def fit_pca_per_concept(tokens, batch_size: int = 4096) -> ConceptPCA:
    """Fit PCA(1 component) per concept on tokens (N, C, D)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 3:
        raise RepresentationError(f"tokens must be (N, C, D), got shape {tuple(tokens.shape)}")
    accumulator = _CovarianceAccumulator()
    for start in range(0, len(tokens), batch_size):
        accumulator.update(tokens[start:start + batch_size])
    return accumulator.finalize()


class _SampledObservations:
    """Sliceable view of ``num`` seeded samples of a ground-truth dataset.

    Slices must be read in order (as the encoder does); each slice draws its
    batch from one RandomState(seed), so the fit set is a pure function of
    (dataset, num, seed, slice size).
    """

    def __init__(self, ground_truth_data, num: int, seed: int):
        self.data = ground_truth_data
        self.num = int(num)
        self.random_state = np.random.RandomState(seed)
        self.position = 0

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, item):
        if not isinstance(item, slice) or item.start != self.position:
            raise RuntimeError("sampled observations must be read in consecutive slices")
        stop = min(item.stop, self.num)
        self.position = stop
        return self.data.sample(stop - item.start, self.random_state)[1]


class GridObservations:
    """Sliceable view of every image of a dataset, in grid-index order.

    ``grid[a:b]`` is ``sample_observations_from_factors(index_to_factors(range(a, b)))``.
    """

    def __init__(self, ground_truth_data):
        for name in ("num_observations", "index_to_factors"):
            if not hasattr(ground_truth_data, name):
                raise EvaluationError(
                    f"reading every image needs a dataset with {name}; "
                    f"{type(ground_truth_data).__name__} has none")
        self.data = ground_truth_data
        self.num = int(ground_truth_data.num_observations)
        self.random_state = np.random.RandomState(0)  # unused by deterministic datasets

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, item):
        if not isinstance(item, slice):
            raise TypeError("grid observations are read in slices")
        indices = np.arange(*item.indices(self.num))
        factors = self.data.index_to_factors(indices)
        return self.data.sample_observations_from_factors(factors, self.random_state)


def pca_fit_set(ground_truth_data, num_fit: int | None = None, fit_seed: int = 0):
    """The images the PCA is fit on, as a sliceable view: every image of the factor grid
    (``num_fit=None``, the published protocol) or ``num_fit`` samples drawn with
    ``np.random.RandomState(fit_seed)``, one draw per slice the encoder reads."""
    check_ground_truth_data(ground_truth_data)
    if num_fit is None:
        return GridObservations(ground_truth_data)
    if num_fit < 2:
        raise EvaluationError(f"num_fit must be >= 2, got {num_fit}")
    return _SampledObservations(ground_truth_data, num_fit, fit_seed)


def fit_projector(encode_fn: EncodeFn, observations, method: str = "pca", batch_size: int = 64,
                  device=None, progress: bool = True):
    """The map from concept tokens to codes: a ``ConceptPCA`` fit on the tokens of
    ``observations`` (images (N, H, W, C) in [0, 1], any sliceable array-like, encoded
    ``batch_size`` at a time and never held in memory), or for ``method='norm'`` a
    ``ConceptNorm``, which fits nothing (``observations`` is then not read)."""
    if method not in METHODS:
        raise EvaluationError(f"method must be one of {METHODS}, got {method!r}")
    if method == "norm":
        return ConceptNorm()
    accumulator = _CovarianceAccumulator()
    for tokens in _iter_token_batches(encode_fn, observations, batch_size, device, progress,
                                      desc="encoding PCA fit set"):
        accumulator.update(tokens)
    return accumulator.finalize()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:80] or "checkpoint"


def _cache_file(cache_dir: str, cache_key: str, settings: dict) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"{_safe_name(cache_key)}-{settings['method']}-{digest}.npz")


def _load_cache(path: str | None, required: tuple) -> dict | None:
    """Arrays of a cache file, or None when absent or unreadable (then it is rebuilt)."""
    if path is None or not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if not all(name in stored.files for name in required):
                return None
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


class IndexedGroundTruthView:
    """A ground-truth dataset whose observations are their row indices in the factor grid.

    Paired with a ``CodeTable`` this is VCT's published evaluation: every
    image is encoded once and the metrics look codes up by image index. Factor
    sampling is the wrapped dataset's own (same random draws); observations
    are ``factors_to_index(factors)`` and draw nothing, so a metric draws the
    same random numbers as on the images themselves for datasets whose images
    are a deterministic function of the factors (Shapes3D, MPI3D, dSprites,
    Cars3D).
    """

    def __init__(self, ground_truth_data):
        check_ground_truth_data(ground_truth_data)
        missing = [name for name in ("num_observations", "factors_to_index", "index_to_factors")
                   if not hasattr(ground_truth_data, name)]
        if missing:
            raise EvaluationError(
                f"{type(ground_truth_data).__name__} cannot be tabulated (missing "
                f"{', '.join(missing)}): its images are not indexed by a factor grid")
        self.data = ground_truth_data

    def __getattr__(self, name):
        if name == "data":
            raise AttributeError(name)
        return getattr(self.data, name)

    @property
    def num_factors(self) -> int:
        return self.data.num_factors

    @property
    def factors_num_values(self):
        return self.data.factors_num_values

    @property
    def factor_names(self):
        return self.data.factor_names

    def sample_factors(self, num, random_state):
        return self.data.sample_factors(num, random_state)

    def sample_observations_from_factors(self, factors, random_state):
        return np.asarray(self.data.factors_to_index(np.asarray(factors)), dtype=np.int64)

    def sample(self, num, random_state):
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def sample_observations(self, num, random_state):
        return self.sample(num, random_state)[1]


class CodeTable:
    """``representation_function`` over grid indices: codes[indices] (float32 (B, C))."""

    def __init__(self, codes: np.ndarray, projector=None):
        self.codes = np.asarray(codes)
        self.projector = projector
        self.cache_path: str | None = None
        self.cache_hit = False

    def __call__(self, indices) -> np.ndarray:
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise RepresentationError(
                f"a CodeTable looks codes up by image index and got an array of shape "
                f"{tuple(indices.shape)} dtype {indices.dtype}; pair it with the "
                "IndexedGroundTruthView returned by tabulate_representation")
        return self.codes[indices]


def tabulate_representation(encode_fn: EncodeFn, ground_truth_data, *, method: str = "pca",
                            num_fit: int | None = None, fit_seed: int = 0, batch_size: int = 64,
                            device=None, cache_dir: str | None = None,
                            cache_key: str | None = None, progress: bool = True):
    """Encode every image of the dataset once; returns ``(data_view, code_table)``.

    Pass both to the metrics (``run_metrics(data_view, code_table)``) instead of
    the dataset and a representation function that encodes the images it is
    given: the numbers are the same (same factor draws, same codes), but each
    image is encoded once instead of once per draw -- the BetaVAE + FactorVAE
    protocol alone draws ~2.9M images from Shapes3D's 480k. "Same codes" holds to the last bit only if the encoder's
    output for an image does not depend on the batch it is in; float32 kernels
    often round differently per batch size, which can move a score by a few
    test points.

    The PCA is fit on ``pca_fit_set(ground_truth_data, num_fit, fit_seed)``:
    ``num_fit=None`` (the published protocol) fits on every image, which costs a
    second pass over the dataset; an integer fits on that many seeded samples.
    With ``cache_dir`` and ``cache_key`` the table (num_observations x C float32)
    and the PCA are stored in ``cache_dir`` under a file named from the key
    (e.g. checkpoint path + step), the method and a hash of the settings; a later
    call with the same key and settings loads them instead of encoding. The key
    must change when the weights change.
    """
    view = IndexedGroundTruthView(ground_truth_data)
    if method not in METHODS:
        raise EvaluationError(f"method must be one of {METHODS}, got {method!r}")
    cache_path = None
    if cache_dir is not None and cache_key is not None:
        settings = {"version": CACHE_FORMAT_VERSION, "key": str(cache_key), "method": method,
                    "table": True, "sample_batch": int(batch_size),
                    "dataset": type(ground_truth_data).__name__,
                    "path": str(getattr(ground_truth_data, "path", "")),
                    "factors_num_values": [int(v) for v in ground_truth_data.factors_num_values],
                    "observation_shape": [int(v) for v in
                                          getattr(ground_truth_data, "observation_shape", ())],
                    "num_fit": None if num_fit is None else int(num_fit),
                    "fit_seed": int(fit_seed)}
        cache_path = _cache_file(cache_dir, str(cache_key), settings)
    elif (cache_dir is None) != (cache_key is None):
        raise EvaluationError("caching needs both cache_dir and cache_key")

    stored = _load_cache(cache_path, ("codes",))
    if stored is not None:
        projector = ConceptPCA.from_state(stored) if method == "pca" else ConceptNorm()
        table = CodeTable(stored["codes"], projector)
        table.cache_path, table.cache_hit = cache_path, True
        return view, table

    fit_set = pca_fit_set(ground_truth_data, num_fit, fit_seed) if method == "pca" else None
    projector = fit_projector(encode_fn, fit_set, method, batch_size, device, progress)
    codes = np.concatenate([projector.transform(tokens) for tokens in _iter_token_batches(
        encode_fn, GridObservations(ground_truth_data), batch_size, device, progress,
        desc="encoding every image")], axis=0)
    table = CodeTable(codes, projector)
    if cache_path is not None:
        arrays = {"codes": codes}
        if method == "pca":
            arrays.update(projector.state())
        with atomic_write(cache_path, "wb") as file:
            np.savez(file, **arrays)
        table.cache_path = cache_path
    return view, table
