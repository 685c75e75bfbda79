"""A Dense forward pass over many rows runs in row blocks (product, then bias, per block); the
outputs equal the article's ``Z = A_prev @ W + b`` in one product, and the backward pass still sees
the whole batch."""

import numpy as np
import pytest

import matnet
from matnet import functional as F
from matnet.layers import ROW_BLOCK


@pytest.mark.parametrize("n", [2 * ROW_BLOCK, 2 * ROW_BLOCK + 1, 3 * ROW_BLOCK + 7])
def test_blocked_forward_matches_functional(n):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 20))
    model = matnet.MLP([20, 16, 3], loss="cross_entropy", dtype="float64", seed=0)
    dense0, dense1 = model.dense_layers
    expected = F.linear_forward(
        F.ACTIVATIONS["relu"][0](F.linear_forward(X, dense0.W, dense0.b)), dense1.W, dense1.b
    )
    Z, _ = model.forward(X)
    np.testing.assert_allclose(Z, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.logits(X), expected, rtol=1e-12, atol=1e-12)


def test_blocked_forward_backward_matches_functional():
    n = 2 * ROW_BLOCK + 5
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, 6))
    y = rng.integers(0, 3, n)
    model = matnet.MLP([6, 5, 3], loss="cross_entropy", dtype="float64", seed=0)
    Z, backward = model.forward(X, training=True)
    _, dZ = model.loss(Z, y)
    backward(dZ.copy())
    (dense0, dense1) = model.dense_layers
    Z1 = F.linear_forward(X, dense0.W, dense0.b)
    A1 = np.maximum(Z1, 0)
    dW1 = A1.T @ dZ
    dA1 = dZ @ dense1.W.T
    dZ1 = dA1 * (Z1 > 0)
    np.testing.assert_allclose(dense1.dW, dW1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dense0.dW, X.T @ dZ1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dense0.db, dZ1.sum(axis=0, keepdims=True), rtol=1e-10, atol=1e-12)
