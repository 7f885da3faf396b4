"""The image-based way to get codes, kept as a reference for the code table.

``make_representation_function`` builds a disentanglement_lib-style
``representation_function(observations (B, H, W, C) in [0, 1]) -> (B, C)`` that encodes every
image a metric draws. ``evaluation.representation.tabulate_representation`` instead encodes
each image of the dataset once and lets the metrics look codes up by index; the tests check
that both give the same numbers. The fit and the projection are evaluation's own, so the
reference differs only in where the images come from.
"""
import numpy as np

from evaluation import EvaluationError
from evaluation import representation as rp


class ConceptRepresentation:
    """``representation_function``: observations (B, H, W, C) in [0, 1] -> float32 (B, C)."""

    def __init__(self, encode_fn, projector, batch_size=64, device=None):
        self.encode_fn = encode_fn
        self.projector = projector
        self.batch_size = int(batch_size)
        self.device = device

    def __call__(self, observations):
        if len(observations) == 0:
            return np.zeros((0, 0), np.float32)
        tokens = rp.encode_observations(self.encode_fn, observations, self.batch_size,
                                        self.device, progress=False)
        return self.projector.transform(tokens)


def make_representation_function(encode_fn, fit_observations=None, *, ground_truth_data=None,
                                 num_fit=10000, fit_seed=0, method="pca", batch_size=64,
                                 device=None, progress=False):
    """A representation function whose PCA is fit on ``fit_observations`` (images
    (N, H, W, C) in [0, 1]) or on ``rp.pca_fit_set(ground_truth_data, num_fit, fit_seed)``
    (``num_fit=None``: every image of the grid); ``method='norm'`` fits nothing."""
    if method == "pca" and (fit_observations is None) == (ground_truth_data is None):
        raise EvaluationError("give exactly one of fit_observations or ground_truth_data to fit the PCA")
    if ground_truth_data is not None:
        fit_observations = rp.pca_fit_set(ground_truth_data, num_fit, fit_seed)
    projector = rp.fit_projector(encode_fn, fit_observations, method, batch_size, device, progress)
    return ConceptRepresentation(encode_fn, projector, batch_size, device)
