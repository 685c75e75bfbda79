"""Parity with scikit-learn's own MLP on its bundled datasets: same split, scaling and hyperparameters,
mean test score over 5 seeds; matnet may be at most 0.01 below."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import matnet.sklearn as mn  # noqa: E402

CASES = [
    ("digits", load_digits, "MLPClassifier", {"hidden_layer_sizes": (64,), "max_iter": 300}),
    ("breast_cancer", load_breast_cancer, "MLPClassifier", {"hidden_layer_sizes": (64,)}),
    ("wine", load_wine, "MLPClassifier", {"hidden_layer_sizes": (64,)}),
    (
        "diabetes",
        load_diabetes,
        "MLPRegressor",
        {"hidden_layer_sizes": (64,), "learning_rate_init": 0.01, "max_iter": 1000},
    ),
]


def mean_test_scores(loader, estimator_name, params, seeds=range(5)):
    X, y = loader(return_X_y=True)
    classify = estimator_name == "MLPClassifier"
    scores = {"matnet": [], "sklearn": []}
    for seed in seeds:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, random_state=seed, stratify=y if classify else None
        )
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
        for lib, module in (("matnet", mn), ("sklearn", sk)):
            estimator = getattr(module, estimator_name)(random_state=seed, **params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                estimator.fit(X_train, y_train)
            scores[lib].append(estimator.score(X_test, y_test))
    return float(np.mean(scores["matnet"])), float(np.mean(scores["sklearn"]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "loader", "estimator_name", "params"), CASES, ids=[c[0] for c in CASES]
)
def test_parity_with_sklearn_mlp(name, loader, estimator_name, params):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # steady on a shared 2-core machine; results do not depend on it
        ours, theirs = mean_test_scores(loader, estimator_name, params)
    assert ours >= theirs - 0.01, f"{name}: matnet {ours:.4f} vs scikit-learn {theirs:.4f}"
    floor = 0.3 if estimator_name == "MLPRegressor" else 0.9
    assert ours > floor, f"{name}: matnet's mean test score {ours:.4f} is implausibly low"
