"""Where each ground-truth factor sits in a set of concept tokens, read three ways with the
linear probe of factor_probe.py:

- ``all``: from all concept tokens together (is the factor in the representation at all?);
- ``best_token``: from the single concept token that reads it best, whole (is it in one token?);
- ``best_component``: from the single concept whose first principal component reads it best:
  that component is the one number per concept the VCT evaluation protocol keeps
  (``evaluation.representation``, method 'pca').

A factor high on ``best_token`` but low on ``best_component`` is held only in directions of
lesser variance, next to another factor: the metrics cannot see it.
"""
from __future__ import annotations

import numpy as np

from evaluation.factor_probe import factor_probe


def first_component(token: np.ndarray) -> np.ndarray:
    """(N, D) -> (N,): the projection on the first principal component."""
    centred = token - token.mean(0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    return centred @ direction


def concept_probe(concepts: np.ndarray, factors: np.ndarray, factor_names=None, seed: int = 0) -> dict:
    """``concepts`` (N, C, D), integer ``factors`` (N, F) -> {"all": {name: accuracy},
    "best_token": {name: [accuracy, concept]}, "best_component": {name: [accuracy, concept]},
    "chance": {name: rate}} (held-out accuracies)."""
    concepts = np.asarray(concepts, dtype=np.float64)
    if concepts.ndim != 3:
        raise ValueError(f"concepts must be (N, C, D), got shape {concepts.shape}")
    whole = factor_probe(concepts.reshape(len(concepts), -1), factors, factor_names, seed=seed)
    names = list(whole["accuracy"])
    best_token = {name: [0.0, -1] for name in names}
    best_component = {name: [0.0, -1] for name in names}
    for c in range(concepts.shape[1]):
        for best, features in ((best_token, concepts[:, c]), (best_component, first_component(concepts[:, c])[:, None])):
            for name, accuracy in factor_probe(features, factors, names, seed=seed)["accuracy"].items():
                if accuracy > best[name][0]:
                    best[name] = [accuracy, c]
    return {"all": whole["accuracy"], "best_token": best_token, "best_component": best_component,
            "chance": whole["chance"]}
