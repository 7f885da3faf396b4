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
    mean, std = features[train].mean(0), features[train].std(0)
    std[std == 0] = 1.0  # constant features carry nothing; keep them finite
    x = (features - mean) / std
    accuracy, chance = {}, {}
    for j, name in enumerate(names):
        y = factors[:, j]
        values, counts = np.unique(y[test], return_counts=True)
        chance[name] = float(counts.max() / len(test))
        if len(np.unique(y[train])) < 2:  # a constant factor: nothing to learn
            accuracy[name] = float(np.mean(y[test] == y[train][0]))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(max_iter=max_iter).fit(x[train], y[train])
        accuracy[name] = float(model.score(x[test], y[test]))
    return {"accuracy": accuracy, "chance": chance, "min_accuracy": min(accuracy.values()),
            "num_train": int(len(train)), "num_test": int(len(test))}
