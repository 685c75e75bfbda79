"""Every layer x activation x loss, proven by float64 central differences at batch sizes 1 and 7."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import matnet
from matnet import Activation, Dense, Dropout, Sequential

ACTIVATIONS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax"]
LOSSES = ["cross_entropy", "binary_cross_entropy", "mse", "poisson"]


def _targets(loss: str, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    if loss == "cross_entropy":
        return rng.integers(0, k, size=n)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, size=(n, k)).astype(float)
    if loss == "poisson":
        return rng.poisson(1.5, size=(n, k)).astype(float)
    return rng.normal(size=(n, k))


def _kink_free_input(model: Sequential, n: int, rng: np.random.Generator) -> np.ndarray:
    """Inputs whose hidden pre-activations stay clear of 0, where ReLU-like derivatives jump."""
    for _ in range(100):
        X = rng.normal(size=(n, model.n_features))
        A, ok = X, True
        for layer in model.layers:
            A, _ = layer.forward(A)
            if isinstance(layer, Dense) and np.min(np.abs(A)) < 1e-3:
                ok = False
            A = A.copy()
        if ok:
            return X
    raise AssertionError("could not draw kink-free inputs")


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradcheck_every_layer_activation_and_loss(activation, loss, batch):
    # A stable seed per case (hash() of strings changes from process to process).
    rng = np.random.default_rng(zlib.crc32(f"{activation}-{loss}-{batch}".encode()))
    layers = [Dense(4, 5), Activation(activation), Dropout(0.3), Dense(5, 3)]
    model = Sequential(layers, dtype="float64", seed=1)
    model.params["0.b"][...] = rng.normal(scale=0.1, size=(1, 5))
    model.params["3.b"][...] = rng.normal(scale=0.1, size=(1, 3))
    X = _kink_free_input(model, batch, rng)
    y = _targets(loss, batch, 3, rng)
    error = matnet.gradcheck(model, X, y, loss)
    assert error <= 1e-6, f"{activation} + {loss} at batch {batch}: relative error {error:.2e}"


class _WrongBiasGradient(Dense):
    """A Dense layer whose backward reports twice the true bias gradient."""

    def forward(self, A_prev, training=False, rng=None, rows=None):
        Z, backward = super().forward(A_prev, training, rng, rows)

        def wrong_backward(dZ):
            dA_prev = backward(dZ)
            self.db *= 2
            return dA_prev

        return Z, wrong_backward


def test_gradcheck_catches_a_wrong_gradient(rng):
    X, y = rng.normal(size=(5, 3)), rng.integers(0, 2, 5)
    good = Sequential([Dense(3, 4), Activation("tanh"), Dense(4, 2)], dtype="float64")
    assert matnet.gradcheck(good, X, y, "cross_entropy") < 1e-6
    bad = Sequential([_WrongBiasGradient(3, 4), Activation("tanh"), Dense(4, 2)], dtype="float64")
    bad.params["0.b"][...] = 0.3  # a non-zero bias gradient to double
    assert matnet.gradcheck(bad, X, y, "cross_entropy") > 1e-2


def test_gradcheck_float32_model_is_checked_in_float64(rng):
    model = matnet.MLP([3, 6, 2], "sigmoid", dtype="float32", seed=0)
    before = model.flat_params.copy()
    X, y = rng.normal(size=(7, 3)), rng.integers(0, 2, 7)
    assert matnet.gradcheck(model, X, y, "cross_entropy") <= 1e-6
    np.testing.assert_array_equal(model.flat_params, before)
    assert model.flat_params.dtype == np.float32


# Every registered layer, activation and loss through every path: tests/test_layer_contract.py.
