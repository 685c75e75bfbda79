"""Losses: values against the textbook formulas, stability at extreme logits, target handling."""

from __future__ import annotations

import numpy as np
import pytest
from tolerance import assert_close

from matnet.losses import BinaryCrossEntropy, MeanSquaredError, SoftmaxCrossEntropy, get_loss


def _naive_ce(Z, y):
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    return -np.mean(np.log(P[np.arange(len(y)), y]))


def test_softmax_cross_entropy_value_and_gradient(rng):
    Z, y = rng.normal(size=(6, 4)), rng.integers(0, 4, 6)
    value, dZ = SoftmaxCrossEntropy()(Z.copy(), y)
    assert value == pytest.approx(_naive_ce(Z, y), rel=1e-12)
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    P[np.arange(6), y] -= 1
    np.testing.assert_allclose(dZ, P / 6, rtol=1e-12)


def test_one_hot_and_index_labels_agree(rng):
    Z, y = rng.normal(size=(5, 3)), rng.integers(0, 3, 5)
    loss = SoftmaxCrossEntropy()
    v1, g1 = loss(Z, y)
    g1 = g1.copy()
    v2, g2 = loss(Z, np.eye(3)[y])
    assert v1 == pytest.approx(v2)
    np.testing.assert_allclose(g1, g2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_finite_at_extreme_logits(dtype):
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, dZ = SoftmaxCrossEntropy()(Z, np.array([1, 1]))
    assert value == pytest.approx(1e4, rel=1e-6)  # first row wrong by 2e4 / 2 rows
    assert np.all(np.isfinite(dZ))
    assert_close(dZ[0], [0.5, -0.5, 0.0], rtol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_is_stable_and_multilabel(dtype):
    Z = np.array([[1e4, -1e4], [-1e4, 0.0]], dtype=dtype)
    Y = np.array([[1.0, 0.0], [1.0, 1.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, dZ = BinaryCrossEntropy()(Z, Y)
    # Row 0 is exactly right; row 1 costs 1e4 (wrong by 1e4) + log 2; mean over 2 rows.
    assert value == pytest.approx((1e4 + np.log(2)) / 2, rel=1e-6)
    assert_close(dZ, [[0, 0], [-0.5, -0.25]], rtol=2e-7)


def test_binary_cross_entropy_matches_naive_formula(rng):
    Z, Y = rng.normal(size=(8, 3)), rng.integers(0, 2, size=(8, 3)).astype(float)
    P = 1 / (1 + np.exp(-Z))
    naive = -np.sum(Y * np.log(P) + (1 - Y) * np.log(1 - P)) / 8
    value, _ = BinaryCrossEntropy()(Z, Y)
    assert value == pytest.approx(naive, rel=1e-12)


def test_mse_value_gradient_and_weights(rng):
    Z, Y = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    value, dZ = MeanSquaredError()(Z, Y)
    assert value == pytest.approx(np.mean((Z - Y) ** 2))
    np.testing.assert_allclose(dZ, 2 * (Z - Y) / 8)
    w = np.array([1.0, 0.0, 2.0, 1.0])
    value_w, _ = MeanSquaredError()(Z, Y, w)
    assert value_w == pytest.approx(np.sum(w[:, None] * (Z - Y) ** 2) / 8)


def test_sample_weights_of_one_change_nothing(rng):
    Z, y = rng.normal(size=(5, 3)), rng.integers(0, 3, 5)
    loss = SoftmaxCrossEntropy()
    v1, g1 = loss(Z, y)
    g1 = g1.copy()
    v2, g2 = loss(Z, y, np.ones(5))
    assert v1 == pytest.approx(v2)
    np.testing.assert_allclose(g1, g2)


def test_target_validation_messages():
    ce = SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 2\]"):
        ce.encode_targets(np.array([0, 3]), 3, np.float32)
    with pytest.raises(ValueError, match="non-integer"):
        ce.encode_targets(np.array([0.5, 1.0]), 3, np.float32)
    with pytest.raises(ValueError, match="one-hot"):
        ce.encode_targets(np.zeros((2, 4)), 3, np.float32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BinaryCrossEntropy().encode_targets(np.array([0, 2]), 1, np.float32)
    with pytest.raises(ValueError, match="NaN"):
        MeanSquaredError().encode_targets(np.array([0.0, np.nan]), 1, np.float32)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        get_loss("hinge")


def test_metrics():
    Z = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert SoftmaxCrossEntropy().metric(Z, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    Y = np.array([[1.0], [2.0], [3.0]])
    assert MeanSquaredError().metric(Y.copy(), Y) == pytest.approx(1.0)


@pytest.mark.parametrize("loss", [SoftmaxCrossEntropy(), BinaryCrossEntropy(), MeanSquaredError()])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_link_matches_functional_new_and_in_place(loss, dtype, rng):
    """``link(Z)`` is the functional link; ``link(Z, out=Z)`` writes the same numbers over Z, also
    at logits of +-1e4 and for one row or one column."""
    from matnet import functional as F

    expected = {"softmax_cross_entropy": F.softmax, "binary_cross_entropy": F.sigmoid}.get(
        loss.name, lambda Z: Z
    )
    for shape in [(7, 4), (1, 3), (5, 1), (3000, 10)]:
        Z = (rng.normal(size=shape) * 3).astype(dtype)
        Z[0, 0], Z[-1, -1] = 1e4, -1e4
        want = expected(Z.astype(np.float64))
        got = loss.link(Z)
        assert got.dtype == dtype and (got is not Z or loss.name == "mse")  # identity: Z itself
        assert_close(got, want, rtol=2e-6 if dtype == np.float32 else 1e-12)
        in_place = Z.copy()
        assert loss.link(in_place, out=in_place) is in_place
        np.testing.assert_array_equal(in_place, got)
