"""matnet.sklearn trains exactly as scikit-learn's MLP does: same objective, same gradient, same
optimizer steps, same stopping rules.

From the same initial weights, with full-batch, unshuffled training (so no random draw differs),
matnet's loss curve, iteration count and final weights equal scikit-learn's to rounding error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import neural_network as sk  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import matnet.sklearn as mn  # noqa: E402


def _data(kind: str, n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    if kind == "multiclass":
        y = np.array(["ant", "bee", "cat"])[np.argmax(X[:, :3], axis=1)]
    elif kind == "binary":
        y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    elif kind == "multilabel":
        y = (X[:, :3] > 0).astype(int)
    elif kind == "regression":
        y = X @ rng.normal(size=5) + 0.1 * rng.normal(size=n)
    elif kind == "multioutput":
        y = X @ rng.normal(size=(5, 2))
    elif kind == "poisson":
        y = rng.poisson(np.exp(0.3 * X[:, 0]))
    return X, y


def _pair(kind: str, **params):
    """A scikit-learn MLP and a matnet one that start from the same weights."""
    name = "MLPClassifier" if kind in ("multiclass", "binary", "multilabel") else "MLPRegressor"
    if kind == "poisson":
        params["loss"] = "poisson"
    X, y = _data(kind)
    theirs = getattr(sk, name)(random_state=0, max_iter=1, warm_start=True, **params)
    ours = getattr(mn, name)(random_state=0, max_iter=1, warm_start=True, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(X, y)
        ours.fit(X, y)
    for i in range(len(theirs.coefs_)):
        ours.coefs_[i][...] = theirs.coefs_[i]  # coefs_ are views into matnet's flat vector
        ours.intercepts_[i][...] = theirs.intercepts_[i]
    if hasattr(theirs, "loss_curve_"):  # the stopping rule's memory, from the first iteration
        ours.loss_curve_ = list(theirs.loss_curve_)
        ours.best_loss_ = theirs.best_loss_
        ours._no_improvement_count = theirs._no_improvement_count
    return theirs, ours, X, y


KINDS = ["multiclass", "binary", "multilabel", "regression", "multioutput", "poisson"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_objective_and_gradient_equal_sklearns(kind, weighted):
    theirs, ours, X, y = _pair(kind, hidden_layer_sizes=(7, 4), alpha=0.3, activation="tanh")
    w = np.random.default_rng(1).uniform(0.2, 2.0, X.shape[0]) if weighted else None
    # scikit-learn's private backprop, on its own encoding of the targets.
    if kind in ("multiclass", "binary", "multilabel"):
        Y_sk = theirs._label_binarizer.transform(y).astype(float)
    else:
        Y_sk = np.asarray(y, dtype=float).reshape(X.shape[0], -1)
    n_layers = theirs.n_layers_
    activations = [X] + [None] * (n_layers - 1)
    deltas = [None] * (n_layers - 1)
    coef_grads = [np.empty_like(c) for c in theirs.coefs_]
    intercept_grads = [np.empty_like(b) for b in theirs.intercepts_]
    loss_sk, coef_grads, intercept_grads = theirs._backprop(
        X, Y_sk, w, activations, deltas, coef_grads, intercept_grads
    )
    Y, _ = ours._encode_targets(y, np.float64)
    loss_mn = ours._objective(X, Y, w, ours._make_loss())
    model = ours._model
    grads = {key: model.grads[key] for key in model.grads}
    dense = [i for i, layer in enumerate(model.layers) if hasattr(layer, "W")]
    np.testing.assert_allclose(loss_mn, loss_sk, rtol=1e-12)
    for j, i in enumerate(dense):
        np.testing.assert_allclose(grads[f"{i}.W"], coef_grads[j], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(
            grads[f"{i}.b"].ravel(), intercept_grads[j], rtol=1e-10, atol=1e-14
        )


@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression", "poisson"])
def test_gradient_matches_central_differences(kind):
    """The objective's gradient (data term rescaled to scikit-learn's, plus the L2 term) is proven
    by float64 central differences over every parameter."""
    _, ours, X, y = _pair(kind, hidden_layer_sizes=(6,), alpha=0.5, activation="logistic")
    X = X[:9]
    y = y[:9]
    w = np.random.default_rng(2).uniform(0.5, 1.5, X.shape[0])
    Y, _ = ours._encode_targets(y, np.float64)
    loss = ours._make_loss()
    p = ours._model.flat_params
    ours._objective(X, Y, w, loss)
    analytic = ours._model.flat_grads.copy()
    numeric = np.empty_like(p)
    eps = 1e-6
    for i in range(p.size):
        saved = p[i]
        p[i] = saved + eps
        plus = ours._objective(X, Y, w, loss)
        p[i] = saved - eps
        minus = ours._objective(X, Y, w, loss)
        p[i] = saved
        numeric[i] = (plus - minus) / (2 * eps)
    error = np.max(
        np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), 1e-8)
    )
    assert error <= 1e-6


TRAJECTORIES = [
    ("multiclass", {"solver": "adam"}),
    ("multiclass", {"solver": "sgd", "momentum": 0.9, "nesterovs_momentum": True}),
    ("binary", {"solver": "sgd", "momentum": 0.5, "nesterovs_momentum": False}),
    ("binary", {"solver": "sgd", "momentum": 0.0, "learning_rate": "invscaling"}),
    ("multilabel", {"solver": "adam", "activation": "logistic"}),
    ("regression", {"solver": "adam", "learning_rate_init": 0.01}),
    ("multioutput", {"solver": "sgd", "learning_rate_init": 0.001}),
    ("poisson", {"solver": "adam"}),
    # Stops on tol: n_iter_ and best_loss_ must agree too.
    ("multiclass", {"solver": "adam", "tol": 0.05, "n_iter_no_change": 2}),
    # 'adaptive' divides the rate by 5 on each plateau.
    (
        "regression",
        {"solver": "sgd", "learning_rate": "adaptive", "tol": 0.5, "n_iter_no_change": 1},
    ),
]


@pytest.mark.parametrize(("kind", "params"), TRAJECTORIES)
def test_training_trajectory_equals_sklearns(kind, params):
    params = {"hidden_layer_sizes": (8,), "alpha": 0.01, "shuffle": False, **params}
    theirs, ours, X, y = _pair(kind, **params)
    n = X.shape[0]
    for est in (theirs, ours):
        est.set_params(max_iter=60, batch_size=n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(ours.best_loss_, theirs.best_loss_, rtol=1e-9)
    for a, b in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)
    if params["solver"] == "sgd":  # (scikit-learn's Adam reports its bias-corrected step instead)
        assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_minibatch_weighted_step_equals_sklearns(kind):
    """Mini-batches (a smaller last batch) with sample weights: each batch divides by its own
    sum of weights, as scikit-learn does."""
    theirs, ours, X, y = _pair(kind, hidden_layer_sizes=(5,), shuffle=False, batch_size=15)
    w = np.random.default_rng(3).uniform(0.1, 3.0, X.shape[0])
    for est in (theirs, ours):
        est.set_params(max_iter=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_, theirs.coefs_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)


def test_lbfgs_equals_sklearns():
    theirs, ours, X, y = _pair("multiclass", hidden_layer_sizes=(6,), solver="lbfgs", alpha=0.1)
    for est in (theirs, ours):
        est.set_params(max_iter=30)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-5, atol=1e-8)


def test_initialization_follows_sklearns_distribution():
    """Glorot-uniform weights and biases: bound sqrt(6/(fan_in+fan_out)), sqrt(2/...) for logistic."""
    X, y = _data("multiclass", n=30)
    for activation, factor in (("relu", 6.0), ("logistic", 2.0)):
        est = mn.MLPClassifier((300,), activation=activation, random_state=0, max_iter=1)
        est._check_params()
        est._validate_input(X, y, incremental=False, reset=True)
        est.n_outputs_ = 3
        est._initialize(y, [5, 300, 3], np.float64, np.random.default_rng(0))
        bound = np.sqrt(factor / (5 + 300))
        W, b = est.coefs_[0], est.intercepts_[0]
        assert np.abs(W).max() <= bound and np.abs(b).max() <= bound
        assert np.abs(W).max() > 0.95 * bound and np.abs(b).max() > 0.9 * bound
        assert abs(W.mean()) < 0.1 * bound
