"""The article's operations as pure functions, under the article's names.

Rows are examples (batch-major). For a layer with ``n_in`` inputs and ``n_out`` outputs and a batch of
``n`` examples::

    Z       = A_prev @ W + b          # (n, n_in) @ (n_in, n_out) + (1, n_out) -> (n, n_out)
    A       = act(Z)
    dW      = A_prev.T @ dZ           # (n_in, n) @ (n, n_out) -> (n_in, n_out)
    db      = dZ.sum(axis=0, keepdims=True)
    dA_prev = dZ @ W.T                # (n, n_out) @ (n_out, n_in) -> (n, n_in)

Everything here allocates its result and works for any array-API library (see :mod:`matnet.backend`).
The layers in :mod:`matnet.layers` compute the same numbers in preallocated buffers; a test holds the
two to the same results.
"""

from __future__ import annotations

import math
from typing import Any

from matnet.backend import array_namespace

__all__ = [
    "linear_forward",
    "linear_activation_forward",
    "linear_backward",
    "identity",
    "identity_derivative",
    "relu",
    "relu_derivative",
    "leaky_relu",
    "leaky_relu_derivative",
    "sigmoid",
    "sigmoid_derivative",
    "tanh",
    "tanh_derivative",
    "gelu",
    "gelu_derivative",
    "softmax",
    "softmax_backward",
    "log_softmax",
    "ACTIVATIONS",
]

Array = Any


def _check_linear_shapes(A_prev: Array, W: Array, b: Array | None = None) -> None:
    if A_prev.ndim != 2 or W.ndim != 2 or A_prev.shape[1] != W.shape[0]:
        raise ValueError(
            f"A_prev of shape {tuple(A_prev.shape)} and W of shape {tuple(W.shape)} do not align: "
            "A_prev must be (n, n_in) and W (n_in, n_out)"
        )
    if b is not None and tuple(b.shape) != (1, W.shape[1]):
        raise ValueError(
            f"b of shape {tuple(b.shape)} does not match W of shape {tuple(W.shape)}: "
            f"b must be (1, {W.shape[1]})"
        )


def linear_forward(A_prev: Array, W: Array, b: Array) -> Array:
    """The linear part of a layer: ``Z = A_prev @ W + b``.

    Parameters
    ----------
    A_prev : array of shape (n, n_in)
        Activations of the previous layer (or the input batch), one example per row.
    W : array of shape (n_in, n_out)
        Weights; row ``i`` belongs to input neuron ``i``, column ``j`` to output neuron ``j``.
    b : array of shape (1, n_out)
        Bias row, broadcast over the batch.

    Returns
    -------
    Z : array of shape (n, n_out)
    """
    _check_linear_shapes(A_prev, W, b)
    xp = array_namespace(A_prev, W, b)
    return xp.matmul(A_prev, W) + b


def linear_backward(dZ: Array, A_prev: Array, W: Array) -> tuple[Array, Array, Array]:
    """Backpropagate through ``Z = A_prev @ W + b``.

    Parameters
    ----------
    dZ : array of shape (n, n_out)
        Gradient of the cost with respect to ``Z``.
    A_prev : array of shape (n, n_in)
        The layer's input in the forward pass.
    W : array of shape (n_in, n_out)

    Returns
    -------
    dA_prev : array of shape (n, n_in)
        ``dZ @ W.T``
    dW : array of shape (n_in, n_out)
        ``A_prev.T @ dZ``, the outer products summed over the batch.
    db : array of shape (1, n_out)
        ``dZ`` summed over the batch.
    """
    _check_linear_shapes(A_prev, W)
    if dZ.ndim != 2 or tuple(dZ.shape) != (A_prev.shape[0], W.shape[1]):
        raise ValueError(
            f"dZ of shape {tuple(dZ.shape)} does not match A_prev {tuple(A_prev.shape)} and "
            f"W {tuple(W.shape)}: dZ must be ({A_prev.shape[0]}, {W.shape[1]})"
        )
    xp = array_namespace(dZ, A_prev, W)
    dW = xp.matmul(A_prev.T, dZ)
    db = xp.sum(dZ, axis=0, keepdims=True)
    dA_prev = xp.matmul(dZ, W.T)
    return dA_prev, dW, db


# --- activations: A = act(Z), and act'(Z) elementwise -----------------------------------------


def identity(Z: Array) -> Array:
    """``A = Z``."""
    return Z


def identity_derivative(Z: Array) -> Array:
    """``dA/dZ = 1``."""
    return array_namespace(Z).ones_like(Z)


def relu(Z: Array) -> Array:
    """``A = max(0, Z)``."""
    xp = array_namespace(Z)
    return xp.where(Z > 0, Z, xp.zeros_like(Z))


def relu_derivative(Z: Array) -> Array:
    """``dA/dZ = 1`` where ``Z > 0``, else 0 (0 at the kink, as every framework does)."""
    xp = array_namespace(Z)
    return xp.astype(Z > 0, Z.dtype)


def leaky_relu(Z: Array, alpha: float = 0.01) -> Array:
    """``A = Z`` where ``Z > 0``, else ``alpha * Z``."""
    xp = array_namespace(Z)
    return xp.where(Z > 0, Z, alpha * Z)


def leaky_relu_derivative(Z: Array, alpha: float = 0.01) -> Array:
    """``dA/dZ = 1`` where ``Z > 0``, else ``alpha``."""
    xp = array_namespace(Z)
    return xp.where(Z > 0, xp.ones_like(Z), xp.full_like(Z, alpha))


def sigmoid(Z: Array) -> Array:
    """``A = 1 / (1 + exp(-Z))``, computed without overflow.

    ``exp(-|Z|)`` never overflows, so inputs as large as ±1e4 give exactly 1 and 0 with no warning.
    """
    xp = array_namespace(Z)
    E = xp.exp(-xp.abs(Z))
    return xp.where(Z >= 0, 1 / (1 + E), E / (1 + E))


def sigmoid_derivative(Z: Array) -> Array:
    """``dA/dZ = A (1 - A)``."""
    A = sigmoid(Z)
    return A * (1 - A)


def tanh(Z: Array) -> Array:
    """``A = tanh(Z)``."""
    return array_namespace(Z).tanh(Z)


def tanh_derivative(Z: Array) -> Array:
    """``dA/dZ = 1 - A**2``."""
    A = tanh(Z)
    return 1 - A * A


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu(Z: Array) -> Array:
    """GELU in its tanh form: ``A = Z/2 (1 + tanh(c (Z + 0.044715 Z**3)))``, ``c = sqrt(2/pi)``.

    This is the approximation of Hendrycks & Gimpel used by GPT-2 and PyTorch's
    ``gelu(approximate="tanh")``; it differs from the erf form by less than 1e-3.
    """
    xp = array_namespace(Z)
    return 0.5 * Z * (1 + xp.tanh(_GELU_C * (Z + 0.044715 * Z * Z * Z)))


def gelu_derivative(Z: Array) -> Array:
    """Derivative of :func:`gelu` (the tanh form)."""
    xp = array_namespace(Z)
    T = xp.tanh(_GELU_C * (Z + 0.044715 * Z * Z * Z))
    return 0.5 * (1 + T) + 0.5 * Z * (1 - T * T) * _GELU_C * (1 + 3 * 0.044715 * Z * Z)


def softmax(Z: Array) -> Array:
    """Row-wise softmax, stable for any finite input (the row maximum is subtracted first)."""
    xp = array_namespace(Z)
    E = xp.exp(Z - xp.max(Z, axis=1, keepdims=True))
    return E / xp.sum(E, axis=1, keepdims=True)


def log_softmax(Z: Array) -> Array:
    """Row-wise ``log(softmax(Z))`` by log-sum-exp: finite wherever ``Z`` is."""
    xp = array_namespace(Z)
    shifted = Z - xp.max(Z, axis=1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def softmax_backward(dA: Array, A: Array) -> Array:
    """``dZ`` for ``A = softmax(Z)``: the Jacobian-vector product ``A * (dA - sum(dA * A, axis=1))``.

    Softmax mixes a row's entries, so its derivative is no elementwise factor; this is the one
    activation whose backward needs ``dA`` as well as the cached output ``A``.
    """
    xp = array_namespace(dA, A)
    return A * (dA - xp.sum(dA * A, axis=1, keepdims=True))


# name -> (activation, elementwise derivative or None for softmax)
ACTIVATIONS = {
    "identity": (identity, identity_derivative),
    "relu": (relu, relu_derivative),
    "leaky_relu": (leaky_relu, leaky_relu_derivative),
    "sigmoid": (sigmoid, sigmoid_derivative),
    "tanh": (tanh, tanh_derivative),
    "gelu": (gelu, gelu_derivative),
    "softmax": (softmax, None),
}


def linear_activation_forward(A_prev: Array, W: Array, b: Array, activation: str) -> Array:
    """One whole layer: ``A = act(A_prev @ W + b)`` with the activation named by a string.

    Parameters
    ----------
    A_prev : array of shape (n, n_in)
    W : array of shape (n_in, n_out)
    b : array of shape (1, n_out)
    activation : {"identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax"}

    Returns
    -------
    A : array of shape (n, n_out)
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; choose one of {', '.join(sorted(ACTIVATIONS))}"
        )
    act, _ = ACTIVATIONS[activation]
    return act(linear_forward(A_prev, W, b))
