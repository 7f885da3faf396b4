"""How much of each ground-truth factor a fixed representation holds: a linear probe.

Per factor, a multinomial logistic regression is fitted on standardised features of a random
``train_fraction`` of the items and scored (accuracy) on the rest. Used on a frozen tokenizer's
image tokens: a factor the probe cannot read from the tokens is one no concept token can carry.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression


class FactorClassifier:
    """One multinomial logistic regression per factor on standardised features, fitted on the
    items given (a factor with one value there is predicted as that value)."""

    def __init__(self, features: np.ndarray, factors: np.ndarray, max_iter: int = 300):
        features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        self.mean, self.std = features.mean(0), features.std(0)
        self.std[self.std == 0] = 1.0  # constant features carry nothing; keep them finite
        x = (features - self.mean) / self.std
        self.models = []
        for y in np.asarray(factors).T:
            if len(np.unique(y)) < 2:
                self.models.append(y[0])
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.models.append(LogisticRegression(max_iter=max_iter).fit(x, y))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N, F) predicted factor values."""
        x = (np.asarray(features, dtype=np.float64).reshape(len(features), -1) - self.mean) / self.std
        return np.stack([np.full(len(x), m) if not hasattr(m, "predict") else m.predict(x)
                         for m in self.models], axis=1)


def factor_probe(features: np.ndarray, factors: np.ndarray, factor_names=None, train_fraction: float = 0.8,
                 seed: int = 0, max_iter: int = 300) -> dict:
    """``features`` (N, D), integer ``factors`` (N, F) -> {"accuracy": {name: held-out
    accuracy}, "chance": {name: majority-class rate on the held-out items}, "min_accuracy",
    "num_train", "num_test"}."""
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    factors = np.asarray(factors)
    if factors.ndim != 2 or len(factors) != len(features):
        raise ValueError(f"factors must be (N, F) with N = {len(features)}, got {factors.shape}")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    names = list(factor_names) if factor_names is not None else [f"factor_{j}" for j in range(factors.shape[1])]
    order = np.random.RandomState(seed).permutation(len(features))
    cut = int(round(train_fraction * len(features)))
    if not 0 < cut < len(features):
        raise ValueError(f"{len(features)} items are too few to split {train_fraction:.0%} / rest")
    train, test = order[:cut], order[cut:]
    predicted = FactorClassifier(features[train], factors[train], max_iter).predict(features[test])
    accuracy, chance = {}, {}
    for j, name in enumerate(names):
        values, counts = np.unique(factors[test, j], return_counts=True)
        chance[name] = float(counts.max() / len(test))
        accuracy[name] = float(np.mean(predicted[:, j] == factors[test, j]))
    return {"accuracy": accuracy, "chance": chance, "min_accuracy": min(accuracy.values()),
            "num_train": int(len(train)), "num_test": int(len(test))}
