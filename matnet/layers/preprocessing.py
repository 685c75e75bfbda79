"""Preprocessing that belongs to the model: layers whose non-trainable state is fitted from the
training rows (:meth:`~matnet.layers.Layer.adapt`) and saved in the model file, so a saved model
takes raw rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from matnet.backend import array_namespace, to_host
from matnet.errors import NotFittedError
from matnet.layers.base import Description, Equation, Layer, Symbols, shape_text
from matnet.validation import check_positive_int, standardization_overflows

__all__ = ["Standardize"]

Array = Any


class Standardize(Layer):
    """Standardize each feature: ``S = (A_prev − μ) ⊘ σ``, with ``μ`` and ``σ`` the mean and standard
    deviation of the training rows (a constant feature gets ``σ = 1``).

    ``μ`` and ``σ`` are non-trainable state: :func:`matnet.fit` fits them from the training rows
    before the first step (or call :meth:`adapt` yourself); model files and checkpoints keep them.

    Parameters
    ----------
    n_features : int
        The input width.
    """

    owns_output = True
    row_blocks = True

    def __init__(self, n_features: int) -> None:
        super().__init__()
        check_positive_int("Standardize n_features", n_features)
        self.n_in: int = int(n_features)
        self.mean: Array = None
        self.scale: Array = None
        self.n_seen: Array = None

    def state_specs(self):
        d = self.n_in
        return [("mean", (1, d)), ("scale", (1, d)), ("n_seen", (1,))]

    def bind_state(self, state):
        self.mean, self.scale, self.n_seen = state["mean"], state["scale"], state["n_seen"]

    def needs_adapt(self):
        return float(self.n_seen[0]) == 0

    def adapt(self, A_prev):
        A = np.asarray(A_prev, dtype=np.float64)  # statistics in float64 whatever the model's dtype
        mean, scale = A.mean(axis=0), A.std(axis=0)
        scale[scale == 0] = 1.0  # a constant feature: centred, not divided by zero
        xp = array_namespace(self.mean)
        self.mean[...] = xp.asarray(mean[None, :], dtype=self.mean.dtype)
        self.scale[...] = xp.asarray(scale[None, :], dtype=self.scale.dtype)
        self.n_seen[...] = A.shape[0]

    def set_statistics(self, mean: Any, scale: Any) -> None:
        """Set ``μ`` and ``σ`` directly (each of shape (n_features,)); ``σ`` must be non-zero."""
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        for name, values in (("mean", mean), ("scale", scale)):
            if values.shape != (self.n_in,) or not np.all(np.isfinite(values)):
                raise ValueError(
                    f"Standardize {name} must hold {self.n_in} finite numbers, got shape "
                    f"{values.shape}"
                )
        if np.any(scale == 0):
            raise ValueError("Standardize scale must be non-zero for every feature")
        problem = standardization_overflows(mean, scale, self.mean.dtype)
        if problem is not None:  # the model file could not be read back
            raise ValueError(f"Standardize statistics: the mean and scale {problem}")
        xp = array_namespace(self.mean)
        self.mean[...] = xp.asarray(mean[None, :], dtype=self.mean.dtype)
        self.scale[...] = xp.asarray(scale[None, :], dtype=self.scale.dtype)
        self.n_seen[...] = max(1.0, float(to_host(self.n_seen)[0]))

    def output_width(self, n_in):
        if n_in != self.n_in:
            raise ValueError(f"Standardize({self.n_in}) follows a layer of width {n_in}")
        return n_in

    def forward(self, A_prev, training=False, rng=None, rows=None):
        if self.needs_adapt():
            raise NotFittedError(
                f"{self!r} has no statistics yet: train the model with matnet.fit (which fits "
                "them from the training rows) or call its adapt(X) first"
            )
        n, d = A_prev.shape
        S = self._buffer("S", n, d, A_prev)
        part = slice(None) if rows is None else rows
        np.subtract(A_prev[part], self.mean, out=S[part])
        S[part] /= self.scale
        scale = self.scale

        def backward(dS: Array) -> Array | None:
            if not self.needs_input_grad:
                return None
            return np.divide(dS, scale, out=dS)  # dA_prev = dS ⊘ σ

        return S, backward

    def describe(self, symbols: Symbols) -> Description:
        A, n, d, ell = symbols.input, symbols.n, symbols.n_in, symbols.index
        S, mu, sigma, shape = f"S{ell}", f"μ{ell}", f"σ{ell}", shape_text(n, d)
        backward = (
            Equation(
                f"d{A} = d{S} ⊘ {sigma}", f"{shape} ⊘ {shape_text(1, d)} → {shape}", "", f"d{A}"
            )
            if self.needs_input_grad
            else Equation(f"(no d{A} = d{S} ⊘ {sigma})", "", "the input needs no gradient")
        )
        return Description(
            output=S,
            forward=[
                Equation(
                    f"{S} = ({A} − {mu}) ⊘ {sigma}",
                    f"({shape} − {shape_text(1, d)}) ⊘ {shape_text(1, d)} → {shape}",
                    "μ, σ: the training rows' mean and standard deviation (not trained)",
                    S,
                )
            ],
            backward=[backward],
            kept=[(f"{S} {shape}", n * d)],
            grad_numbers=0,
            state=[(mu, "mean"), (sigma, "scale")],
        )

    def config(self):
        return {"type": "Standardize", "n_features": self.n_in}

    def __repr__(self) -> str:
        return f"Standardize({self.n_in})"
