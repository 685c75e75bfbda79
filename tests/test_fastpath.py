"""The fast path (layers, losses and optimizers working in reused buffers) computes the article's
formulas: forward, backward and one optimizer step agree with :mod:`matnet.functional` to float
tolerance, in float32 and float64, including through ``fit``'s own step; each test runs through
matnet's C kernels and through its NumPy path."""

from __future__ import annotations

import numpy as np
import pytest
from tolerance import assert_close

import matnet
from matnet import functional as F
from matnet.losses import SoftmaxCrossEntropy

pytestmark = pytest.mark.usefixtures("compute_path")

SIZES = [20, 16, 12, 5]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
DERIVATIVES = {
    "relu": F.relu_derivative,
    "tanh": F.tanh_derivative,
    "sigmoid": F.sigmoid_derivative,
    "leaky_relu": F.leaky_relu_derivative,
    "gelu": F.gelu_derivative,
}


def article_step(model, X, y):
    """Forward, softmax cross-entropy and backward with the article's formulas, from scratch."""
    dense = model.dense_layers
    act_name = model.layers[1].fn.name
    act = F.ACTIVATIONS[act_name][0]
    A, cache = X, []
    for i, layer in enumerate(dense):
        Z = F.linear_forward(A, layer.W, layer.b)
        cache.append((A, Z))
        A = act(Z) if i < len(dense) - 1 else Z
    n = X.shape[0]
    Y = np.eye(SIZES[-1], dtype=X.dtype)[y]
    value = float(-np.sum(F.log_softmax(A) * Y) / n)
    dZ = (F.softmax(A) - Y) / n  # valid for softmax + cross-entropy only
    grads = {}
    for i in reversed(range(len(dense))):
        A_prev, _ = cache[i]
        dA_prev, dW, db = F.linear_backward(dZ, A_prev, dense[i].W)
        grads[i] = (dW, db)
        if i > 0:
            dZ = dA_prev * DERIVATIVES[act_name](cache[i - 1][1])
    return A, value, grads


def data(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, SIZES[0])).astype(dtype)
    y = rng.integers(0, SIZES[-1], n)
    return X, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "gelu"])
@pytest.mark.parametrize("n", [1, 7, 130])
def test_forward_and_backward_match_functional(dtype, activation, n):
    model = matnet.MLP(SIZES, activation, loss="cross_entropy", dtype=dtype, seed=1)
    X, y = data(n, dtype)
    Z_ref, value_ref, grads_ref = article_step(model, X, y)
    Z, backward = model.forward(X, training=True)
    assert_close(Z, Z_ref, RTOL[dtype])
    value, dZ = model.loss(Z, y)
    assert value == pytest.approx(value_ref, rel=1e-5 if dtype == np.float32 else 1e-12)
    backward(dZ)
    for i, layer in enumerate(model.dense_layers):
        dW, db = grads_ref[i]
        assert_close(layer.dW, dW, RTOL[dtype])
        assert_close(layer.db, db, RTOL[dtype])


def test_buffers_reused_across_batch_sizes_give_the_same_numbers():
    """A smaller last batch slices the workspaces; a larger one after it still computes correctly."""
    model = matnet.MLP(SIZES, loss="cross_entropy", dtype=np.float64, seed=2)
    for n in (9, 3, 9, 12, 1):
        X, y = data(n, np.float64, seed=n)
        Z_ref, value_ref, grads_ref = article_step(model, X, y)
        Z, backward = model.forward(X, training=True)
        value, dZ = model.loss(Z, y)
        backward(dZ)
        assert value == pytest.approx(value_ref, rel=1e-12)
        for i, layer in enumerate(model.dense_layers):
            assert_close(layer.dW, grads_ref[i][0], RTOL[np.float64])
            assert_close(layer.db, grads_ref[i][1], RTOL[np.float64])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_matches_log_softmax(dtype):
    rng = np.random.default_rng(3)
    loss = SoftmaxCrossEntropy()
    for n in (6, 2, 6):
        Z = (rng.standard_normal((n, 4)) * 5).astype(dtype)
        y = rng.integers(0, 4, n)
        Y = np.eye(4, dtype=dtype)[y]
        w = rng.uniform(0.1, 2.0, n).astype(dtype)
        logp = F.log_softmax(Z.astype(np.float64))
        P = F.softmax(Z.astype(np.float64))
        for targets in (y, Y):
            value, dZ = loss(Z, targets)
            assert value == pytest.approx(-np.mean(np.sum(logp * Y, axis=1)), rel=1e-5)
            assert_close(dZ, (P - Y) / n, RTOL[dtype])
            value, dZ = loss(Z, targets, w)
            assert value == pytest.approx(-np.sum(np.sum(logp * Y, axis=1) * w) / n, rel=1e-5)
            assert_close(dZ, (P - Y) * w[:, None] / n, RTOL[dtype])


def test_softmax_cross_entropy_extreme_logits_stay_finite():
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=np.float32)
    value, dZ = SoftmaxCrossEntropy()(Z, np.array([1, 2]))
    assert np.isfinite(value) and np.all(np.isfinite(dZ))
    assert value == pytest.approx((2e4 + np.log(3)) / 2, rel=1e-6)


def adam_reference(p, g, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    step = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    return p - step * m / (np.sqrt(v) + eps), m, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_one_optimizer_step_matches_the_formulas(dtype, optimizer):
    model = matnet.MLP(SIZES, loss="cross_entropy", dtype=dtype, seed=4)
    X, y = data(11, dtype)
    _, _, grads_ref = article_step(model, X, y)
    g = np.zeros_like(model.flat_grads)
    for i, layer in enumerate(model.dense_layers):
        index = model.layers.index(layer)
        g[model.slices[f"{index}.W"]] = grads_ref[i][0].ravel()
        g[model.slices[f"{index}.b"]] = grads_ref[i][1].ravel()
    p0 = model.flat_params.astype(np.float64)
    g64 = g.astype(np.float64)
    lr = 0.05
    opt = {
        "sgd": matnet.SGD(lr),
        "momentum": matnet.SGD(lr, momentum=0.9),
        "nesterov": matnet.SGD(lr, momentum=0.9, nesterov=True),
        "adam": matnet.Adam(lr),
        "adamw": matnet.AdamW(lr, weight_decay=0.1),
    }[optimizer]
    if optimizer == "sgd":
        expected = p0 - lr * g64
    elif optimizer == "momentum":
        expected = p0 + (-lr * g64)  # v = 0.9 * 0 - lr g
    elif optimizer == "nesterov":
        expected = p0 + 0.9 * (-lr * g64) - lr * g64
    else:
        start = p0.copy()
        if optimizer == "adamw":
            start[: model.n_decay] *= 1 - lr * 0.1
        expected, _, _ = adam_reference(start, g64, 0.0, 0.0, 1, lr)
    # Through fit's own step: one full batch, no shuffling, the optimizer above.
    model.fit(X, y, epochs=1, batch_size=11, shuffle=False, optimizer=opt, verbose=0)
    assert_close(model.flat_params, expected, RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_minibatch_epoch_matches_article_sgd(dtype):
    """Three mini-batches (the last one smaller) through ``fit`` equal the article's loop."""
    model = matnet.MLP(SIZES, loss="cross_entropy", dtype=dtype, seed=5)
    reference = model.copy()
    X, y = data(25, dtype)
    lr = 0.1
    for start in range(0, 25, 10):
        xb, yb = X[start : start + 10], y[start : start + 10]
        _, _, grads = article_step(reference, xb, yb)
        for i, layer in enumerate(reference.dense_layers):
            layer.W -= lr * grads[i][0]
            layer.b -= lr * grads[i][1]
    model.fit(X, y, epochs=1, batch_size=10, shuffle=False, optimizer=matnet.SGD(lr), verbose=0)
    assert_close(model.flat_params, reference.flat_params, RTOL[dtype])
