"""A forward pass over many rows runs all layers one block of rows at a time (product, bias and
activation per block, while the block is in cache); the outputs equal the article's formulas on the
whole batch, and the backward pass still sees the whole batch."""

import numpy as np
import pytest

import matnet
from matnet import functional as F
from matnet.layers import Activation, Dense, Dropout, Layer
from matnet.model import ROW_BLOCK


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


@pytest.mark.parametrize(
    "activation", ["relu", "identity", "sigmoid", "tanh", "gelu", "leaky_relu"]
)
def test_blocked_equals_unblocked_for_every_activation(activation):
    """Each activation per block gives the numbers of one pass over the batch (bit for bit: every
    row is computed by the same operations either way), forward and backward."""
    n = 2 * ROW_BLOCK + 9
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((n, 7)), rng.integers(0, 3, n)
    model = matnet.MLP([7, 6, 5, 3], activation, loss="cross_entropy", dtype="float64", seed=0)
    Z_blocked, backward = model.forward(X)
    Z_blocked = Z_blocked.copy()
    _, dZ = model.loss(Z_blocked, y)
    backward(dZ.copy())
    grads_blocked = model.flat_grads.copy()
    model._row_blocks = False  # the same model, one pass over the whole batch
    Z_whole, backward = model.forward(X)
    backward(dZ.copy())
    np.testing.assert_array_equal(Z_blocked, Z_whole)
    np.testing.assert_allclose(model.flat_grads, grads_blocked, rtol=1e-13, atol=1e-15)


def test_dropout_is_blocked_only_at_inference():
    n = 2 * ROW_BLOCK + 3
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, 5))
    model = matnet.MLP([5, 8, 2], dropout=0.5, loss="cross_entropy", dtype="float64", seed=0)
    dense0, _, _, dense1 = model.layers
    expected = F.linear_forward(
        np.maximum(F.linear_forward(X, dense0.W, dense0.b), 0), dense1.W, dense1.b
    )
    np.testing.assert_allclose(model.forward(X)[0], expected, rtol=1e-12)
    # Training draws one mask for the whole batch, as an unblocked pass does.
    Z1, _ = model.forward(X, training=True, rng=np.random.default_rng(4))
    Z1 = Z1.copy()
    model._row_blocks = False
    Z2, _ = model.forward(X, training=True, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(Z1, Z2)
    with pytest.raises(ValueError, match="whole batch"):
        Dropout(0.5).forward(X, training=True, rng=rng, rows=slice(0, 2))


def test_a_custom_layer_without_row_blocks_is_never_called_with_rows():
    class Double(Layer):  # row_blocks is False by default
        def forward(self, A_prev, training=False, rng=None, rows=None):
            assert rows is None
            return 2 * A_prev, lambda dA: 2 * dA

    n = 2 * ROW_BLOCK + 1
    X = np.random.default_rng(5).standard_normal((n, 4))
    model = matnet.Sequential(
        [Dense(4, 3), Double(), Activation("relu"), Dense(3, 2)], dtype="float64"
    )
    dense0, dense1 = model.dense_layers
    expected = F.linear_forward(
        np.maximum(2 * F.linear_forward(X, dense0.W, dense0.b), 0), dense1.W, dense1.b
    )
    np.testing.assert_allclose(model.forward(X)[0], expected, rtol=1e-12)


def test_a_dense_subclass_that_overrides_forward_works_on_many_rows():
    """A subclass with its own forward is called through it (never through Dense's fused form)."""

    class Scaled(Dense):
        def forward(self, A_prev, training=False, rng=None, rows=None):
            Z, backward = super().forward(A_prev, training, rng, rows)
            return Z, backward

    n = 2 * ROW_BLOCK + 3
    X = np.random.default_rng(6).standard_normal((n, 4))
    model = matnet.Sequential(
        [Scaled(4, 3), Activation("relu"), Dense(3, 2)], dtype="float64", loss="cross_entropy"
    )
    dense0, dense1 = model.dense_layers
    expected = F.linear_forward(
        np.maximum(F.linear_forward(X, dense0.W, dense0.b), 0), dense1.W, dense1.b
    )
    np.testing.assert_allclose(model.forward(X)[0], expected, rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(X), F.softmax(expected), rtol=1e-10)
    X[5, 1] = np.nan
    with pytest.raises(ValueError, match="row 5, column 1"):
        model.predict(X)
