"""The article's operations: its worked examples, shapes, and every derivative by central differences."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from matnet import functional as F

A_PREV = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float64)
W = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
B = np.array([[0.1, 0.2]])


def test_article_example_1_linear_forward():
    Z = F.linear_forward(A_PREV, W, B)
    np.testing.assert_allclose(Z, [[2.3, 3.0], [5.0, 6.6]], rtol=0, atol=1e-12)


def test_article_example_2_relu_layer():
    A = F.linear_activation_forward(A_PREV, W, B, activation="relu")
    np.testing.assert_allclose(A, [[2.3, 3.0], [5.0, 6.6]], rtol=0, atol=1e-12)
    # The article left sigmoid unimplemented; it is here.
    S = F.linear_activation_forward(A_PREV, W, B, activation="sigmoid")
    np.testing.assert_allclose(S, 1 / (1 + np.exp(-np.array([[2.3, 3.0], [5.0, 6.6]]))))


def test_article_example_3_weight_gradient():
    dZ = np.array([[0.1, 0.2], [0.3, 0.4]])
    dA_prev, dW, db = F.linear_backward(dZ, A_PREV, W)
    np.testing.assert_allclose(dW, [[1.3, 1.8], [1.7, 2.4], [2.1, 3.0]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(db, [[0.4, 0.6]], atol=1e-12)
    np.testing.assert_allclose(dA_prev, dZ @ W.T)
    assert dW.shape == W.shape and db.shape == B.shape and dA_prev.shape == A_PREV.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(dtype):
    Z = F.linear_forward(A_PREV.astype(dtype), W.astype(dtype), B.astype(dtype))
    assert Z.dtype == dtype
    for name, (act, _) in F.ACTIVATIONS.items():
        assert act(Z).dtype == dtype, name


def test_misaligned_shapes_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 2\)"):
        F.linear_forward(A_PREV, np.ones((2, 2)), B)
    with pytest.raises(ValueError, match=r"b of shape \(2,\)"):
        F.linear_forward(A_PREV, W, np.ones(2))
    with pytest.raises(ValueError, match="dZ of shape"):
        F.linear_backward(np.ones((3, 2)), A_PREV, W)


def test_unknown_activation_lists_choices():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*relu"):
        F.linear_activation_forward(A_PREV, W, B, activation="swish")


def test_sigmoid_extremes_are_exact_and_silent():
    Z = np.array([[-1e4, -800.0, 0.0, 800.0, 1e4]])
    for dtype in (np.float32, np.float64):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                S = F.sigmoid(Z.astype(dtype))
        assert S[0, 0] == 0.0 and S[0, -1] == 1.0 and S[0, 2] == 0.5
        assert np.all(np.isfinite(F.sigmoid_derivative(Z.astype(dtype))))


def test_softmax_is_stable_and_rows_sum_to_one():
    Z = np.array([[1e4, 0.0, -1e4], [1.0, 2.0, 3.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        P = F.softmax(Z)
        L = F.log_softmax(Z)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_allclose(P[0], [1.0, 0.0, 0.0])
    assert np.all(np.isfinite(L))
    np.testing.assert_allclose(np.exp(L[1]), P[1])


def _numeric_elementwise_derivative(fn, Z, eps=1e-6):
    return (fn(Z + eps) - fn(Z - eps)) / (2 * eps)


@pytest.mark.parametrize("name", ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu"])
def test_elementwise_derivatives_match_central_differences(name, rng):
    act, derivative = F.ACTIVATIONS[name]
    Z = rng.normal(scale=2.0, size=(7, 5))
    Z[np.abs(Z) < 1e-3] = 0.5  # stay away from the kinks of ReLU-like functions
    np.testing.assert_allclose(
        derivative(Z), _numeric_elementwise_derivative(act, Z), rtol=1e-6, atol=1e-9
    )


def test_softmax_backward_matches_jacobian(rng):
    Z = rng.normal(size=(4, 6))
    dA = rng.normal(size=(4, 6))
    A = F.softmax(Z)
    numeric = np.zeros_like(Z)
    eps = 1e-6
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            Zp, Zm = Z.copy(), Z.copy()
            Zp[i, j] += eps
            Zm[i, j] -= eps
            numeric[i, j] = np.sum(dA * (F.softmax(Zp) - F.softmax(Zm))) / (2 * eps)
    np.testing.assert_allclose(F.softmax_backward(dA, A), numeric, rtol=1e-6, atol=1e-9)


def test_linear_backward_matches_central_differences(rng):
    A_prev, W_, b = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=(1, 4))
    dZ = rng.normal(size=(5, 4))  # cost = sum(dZ * Z), so dCost/dZ = dZ
    dA_prev, dW, db = F.linear_backward(dZ, A_prev, W_)
    eps = 1e-6
    for array, grad in ((A_prev, dA_prev), (W_, dW), (b, db)):
        numeric = np.zeros_like(array)
        for idx in np.ndindex(array.shape):
            saved = array[idx]
            array[idx] = saved + eps
            plus = np.sum(dZ * F.linear_forward(A_prev, W_, b))
            array[idx] = saved - eps
            minus = np.sum(dZ * F.linear_forward(A_prev, W_, b))
            array[idx] = saved
            numeric[idx] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


def test_gelu_is_close_to_erf_form():
    from math import erf, sqrt

    z = np.linspace(-5, 5, 101)
    exact = np.array([0.5 * v * (1 + erf(v / sqrt(2))) for v in z])
    assert np.max(np.abs(F.gelu(z) - exact)) < 1e-3
