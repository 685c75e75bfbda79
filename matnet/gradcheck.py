"""Gradient checking: backpropagation against central differences, in float64."""

from __future__ import annotations

from typing import Any

import numpy as np

from matnet.losses import Loss, get_loss
from matnet.model import Sequential
from matnet.validation import check_sample_weight, check_targets

__all__ = ["gradcheck", "numerical_gradient"]


def _loss_and_grad(
    model: Sequential, X: np.ndarray, Y: np.ndarray, loss: Loss, seed: int, W: Any = None
) -> tuple[float, np.ndarray]:
    # A fresh generator per evaluation: dropout draws the same mask every time.
    Z, backward = model.forward(X, training=True, rng=np.random.default_rng(seed))
    value, dZ = loss(Z, Y, W)
    backward(dZ)
    return value, model.flat_grads.copy()


def _as_float64(model: Sequential) -> Sequential:
    # A float64 model is checked as it is (every perturbed entry is restored exactly), so custom layer
    # subclasses are checked too; a float32 model is copied.
    return model if model.dtype == np.float64 else model.astype(np.float64)


def numerical_gradient(
    model: Sequential,
    X: Any,
    y: Any,
    loss: str | Loss,
    *,
    eps: float = 1e-6,
    seed: int = 0,
    sample_weight: Any = None,
) -> np.ndarray:
    """Central differences ``(L(p + eps) - L(p - eps)) / (2 eps)`` for every entry of the model's flat
    parameter vector (same order as ``model.flat_params``), on a float64 copy of the model; ``L`` is
    the weighted mean loss when ``sample_weight`` (n,) is given."""
    model64 = _as_float64(model)
    loss = get_loss(loss)
    X = model64.input_matrix(X)
    Y = check_targets(loss, y, X.shape[0], model64.n_outputs, np.float64)
    W = _weights(sample_weight, X.shape[0])
    p = model64.flat_params
    numeric = np.empty_like(p)
    for i in range(p.size):
        saved = p[i]
        p[i] = saved + eps
        plus, _ = _loss_and_grad(model64, X, Y, loss, seed, W)
        p[i] = saved - eps
        minus, _ = _loss_and_grad(model64, X, Y, loss, seed, W)
        p[i] = saved
        numeric[i] = (plus - minus) / (2 * eps)
    return numeric


def gradcheck(
    model: Sequential,
    X: Any,
    y: Any,
    loss: str | Loss | None = None,
    *,
    eps: float = 1e-6,
    seed: int = 0,
    sample_weight: Any = None,
) -> float:
    """Compare backpropagation with central differences over every parameter, in float64.

    A float32 model is copied to float64 first (the original is untouched), so the check is meaningful
    for it too: in float32, finite differences are too coarse to trust. A float64 model is perturbed in
    place and restored exactly.

    Parameters
    ----------
    model : Sequential
    X : array-like of shape (n, n_features)
    y : array-like of targets, as for :func:`matnet.fit`
    loss : str or Loss, optional
        Defaults to the model's loss.
    eps : float
        The finite-difference step.
    seed : int
        Seeds the dropout masks, identical in every evaluation.
    sample_weight : array-like of shape (n,), optional
        Check the gradient of the weighted mean loss (what ``fit(sample_weight=...)`` trains on).

    Returns
    -------
    float
        The largest relative error over the model's parameter arrays,
        ``max_k ||g_k - n_k|| / max(||g_k|| + ||n_k||, 1e-12)``, where ``g_k`` is the backpropagated and
        ``n_k`` the numerical gradient of parameter ``k`` (``"0.W"``, ``"0.b"``, ...). Around 1e-9 for a
        correct gradient; a wrong one gives 1e-2 or more.
    """
    loss = get_loss(loss) if loss is not None else model.loss
    if loss is None:
        raise ValueError("gradcheck needs a loss: pass loss=... or give the model one")
    model64 = _as_float64(model)
    X64 = model64.input_matrix(X)
    Y64 = check_targets(loss, y, X64.shape[0], model64.n_outputs, np.float64)
    W = _weights(sample_weight, X64.shape[0])
    _, analytic = _loss_and_grad(model64, X64, Y64, loss, seed, W)
    numeric = numerical_gradient(
        model64, X, y, loss, eps=eps, seed=seed, sample_weight=sample_weight
    )
    worst = 0.0
    for where in model64.slices.values():
        a, b = analytic[where], numeric[where]
        denom = max(float(np.linalg.norm(a) + np.linalg.norm(b)), 1e-12)
        worst = max(worst, float(np.linalg.norm(a - b)) / denom)
    return worst


def _weights(sample_weight: Any, n: int) -> np.ndarray | None:
    return None if sample_weight is None else check_sample_weight(sample_weight, n, np.float64)
