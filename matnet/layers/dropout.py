"""Inverted dropout: ``D = A ⊙ M`` with ``M = (U ≥ p) / (1 − p)`` in training, the identity after."""

from __future__ import annotations

from typing import Any

import numpy as np

from matnet.backend import array_namespace
from matnet.layers.base import Description, Equation, Layer, Symbols, draw_rows, shape_text

__all__ = ["Dropout"]

Array = Any


# A unit is kept when a 16-bit draw is at least rate · 2^16: the rate is rounded to a multiple of
# 2^-16 (an error below 8e-6), and four draws come from each 64-bit output of the generator, 2-3x
# faster than uniform floats, which made the mask a tenth of a tabular model's step.
_LEVELS = 1 << 16


def _keep_mask(rng: np.random.Generator, n: int, width: int, rate: float) -> np.ndarray:
    """(n, width) bool, True where a unit is kept (probability ``1 − rate``)."""
    words = rng.bit_generator.random_raw(-(-n * width // 4))
    draws = np.asarray(words, dtype=np.uint64).view(np.uint16)[: n * width]
    return (draws >= round(rate * _LEVELS)).reshape(n, width)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``rate`` and scale the rest
    by ``1 / (1 - rate)``; at inference, the identity.

    Parameters
    ----------
    rate : float in [0, 1)
        Probability of dropping a unit.
    """

    owns_output = True
    row_blocks = True  # at inference, where dropout is the identity (training is never blocked)
    random = True

    def __init__(self, rate: float) -> None:
        super().__init__()
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"dropout rate={rate!r} must be a number in [0, 1)")
        self.rate = float(rate)

    def config(self):
        return {"type": "Dropout", "rate": self.rate}

    def forward(self, A_prev, training=False, rng=None, rows=None):
        if not training or self.rate == 0:
            return A_prev, lambda dA: dA
        if rows is not None:
            raise ValueError("Dropout draws its mask for the whole batch; rows= is for inference")
        if rng is None:
            raise ValueError("Dropout needs a numpy.random.Generator in training mode (rng=...)")
        n, width = A_prev.shape
        # On the host, so a GPU run draws the same; per row of the global batch (draw_rows), so
        # data-parallel ranks draw what one process would.
        keep = draw_rows(rng, n, lambda g, m: _keep_mask(g, m, width, self.rate))
        mask = self._buffer("mask", n, width, A_prev)
        scale = 1.0 / (1.0 - self.rate)
        if isinstance(mask, np.ndarray):
            np.multiply(keep, mask.dtype.type(scale), out=mask)
        else:
            mask[...] = array_namespace(mask).asarray(keep) * scale
        A = np.multiply(A_prev, mask, out=self._buffer("A", n, width, A_prev))

        def backward(dA: Array) -> Array:
            return np.multiply(dA, mask, out=dA)

        return A, backward

    def describe(self, symbols: Symbols) -> Description:
        A, n, w, ell, p = symbols.input, symbols.n, symbols.n_in, symbols.index, self.rate
        D, shape = f"D{ell}", shape_text(symbols.n, symbols.n_in)
        return Description(
            output=D,
            forward=[
                Equation(
                    f"{D} = {A} ⊙ M{ell}",
                    f"{shape} ⊙ {shape} → {shape}",
                    f"M{ell} = (U ≥ {p:g}) / {1 - p:g}, U uniform: inverted dropout",
                    D,
                )
            ],
            backward=[
                Equation(f"d{A} = d{D} ⊙ M{ell}", f"{shape} ⊙ {shape} → {shape}", "", f"d{A}")
            ],
            kept=[(f"M{ell} {shape}, {D} {shape}", 2 * n * w)] if p > 0 else [],
        )

    def __repr__(self) -> str:
        return f"Dropout({self.rate})"
