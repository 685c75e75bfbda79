"""Layers of the tabular recipe that act on each input column (RealMLP): a learnable per-column
scale and periodic numerical embeddings."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from matnet.backend import array_namespace
from matnet.layers.base import Description, Equation, Layer, Symbols, shape_text

__all__ = ["Scale", "Periodic"]

Array = Any

TWO_PI = 2.0 * math.pi


def _positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner} {name}={value!r} must be a positive integer")
    return int(value)


def _check_input(layer: Layer, A_prev: Array, width: int) -> None:
    if A_prev.ndim != 2 or A_prev.shape[1] != width:
        raise ValueError(
            f"{layer!r} got input of shape {tuple(A_prev.shape)}; expected (n, {width})"
        )


class Scale(Layer):
    """A learnable scale per input column: ``A = X ⊙ s`` with ``s`` of shape (1, n_in), starting at 1.

    RealMLP puts it first so that the optimizer can turn an unhelpful column down (a soft feature
    selection); its gradient is ``ds = Σrows X ⊙ dA`` and the input's ``dX = dA ⊙ s``.

    Parameters
    ----------
    n_in : int
        The number of columns.
    """

    def __init__(self, n_in: int) -> None:
        super().__init__()
        self.n_in: int = _positive_int("Scale", "n_in", n_in)
        self.s: Array = None
        self.ds: Array = None

    def param_specs(self):
        return [("s", (1, self.n_in), False)]

    def bind(self, params, grads):
        self.s, self.ds = params["s"], grads["s"]

    def initialize(self, rng):
        self.s[...] = 1

    def output_width(self, n_in):
        if n_in != self.n_in:
            raise ValueError(f"Scale({self.n_in}) follows a layer of width {n_in}")
        return n_in

    def config(self):
        return {"type": "Scale", "n_in": self.n_in}

    def forward(self, A_prev, training=False, rng=None, rows=None):
        _check_input(self, A_prev, self.n_in)
        s = self.s

        def backward(dA: Array) -> Array | None:
            self.ds[...] = (A_prev * dA).sum(axis=0, keepdims=True)
            return dA * s if self.needs_input_grad else None

        return A_prev * s, backward

    def describe(self, symbols: Symbols) -> Description:
        A, n, d, ell = symbols.input, symbols.n, self.n_in, symbols.index
        S, nd = f"S{ell}", shape_text(n, d)
        backward = [Equation(f"ds{ell} = Σrows {A} ⊙ d{S}", f"{nd} → {shape_text(1, d)}")]
        if self.needs_input_grad:
            backward.append(Equation(f"d{A} = d{S} ⊙ s{ell}", f"{nd} ⊙ {shape_text(1, d)}"))
        return Description(
            output=S,
            forward=[
                Equation(
                    f"{S} = {A} ⊙ s{ell}",
                    f"{nd} ⊙ {shape_text(1, d)} → {nd}",
                    "a learnable scale per column",
                    S,
                )
            ],
            backward=backward,
            other_ops=3 * n * d,
            parameters=[(f"s{ell}", "s", f"s{ell} {d:,}")],
        )

    def __repr__(self) -> str:
        return f"Scale({self.n_in})"


class Periodic(Layer):
    """Periodic numerical embeddings (Gorishniy et al. 2022; RealMLP's PBLD without its own linear
    layer, which the next Dense provides): every column ``x_j`` becomes
    ``[x_j, cos(2π x_j F_j1), …, cos(2π x_j F_jm), sin(2π x_j F_j1), …, sin(2π x_j F_jm)]``.

    Output width ``n_in · (2m + 1)`` (``2m`` without ``include_input``), column ``j``'s block at
    ``[j(2m+1), (j+1)(2m+1))``. With ``V = 2π X_j F_j`` (n, m) per column, ``C = cos V`` and
    ``S = sin V``, the backward pass is ``dV = −S ⊙ dC + C ⊙ dS``, ``dF_j = 2π X_jᵀ dV`` (one row
    of F per column) and ``dX_j = dX_j(direct) + 2π dV · F_jᵀ``.

    Parameters
    ----------
    n_in : int
        The number of columns (standardized: the frequencies assume unit scale).
    n_frequencies : int
        ``m``, the frequencies per column.
    sigma : float
        Frequencies start as draws from N(0, sigma²): small sigma gives smooth functions of x.
    include_input : bool
        Keep ``x_j`` itself beside its embedding (the "densenet" part of PBLD).
    """

    def __init__(
        self, n_in: int, n_frequencies: int = 8, sigma: float = 0.1, include_input: bool = True
    ) -> None:
        super().__init__()
        self.n_in: int = _positive_int("Periodic", "n_in", n_in)
        self.m = _positive_int("Periodic", "n_frequencies", n_frequencies)
        ok = isinstance(sigma, (int, float)) and not isinstance(sigma, bool)
        if not ok or not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"Periodic sigma={sigma!r} must be a positive number")
        self.sigma, self.include_input = float(sigma), bool(include_input)
        self.F: Array = None
        self.dF: Array = None

    @property
    def block(self) -> int:
        """Output columns per input column."""
        return 2 * self.m + int(self.include_input)

    def param_specs(self):
        return [("F", (self.n_in, self.m), False)]

    def bind(self, params, grads):
        self.F, self.dF = params["F"], grads["F"]

    def initialize(self, rng):
        values = rng.normal(0.0, self.sigma, size=(self.n_in, self.m))
        self.F[...] = array_namespace(self.F).asarray(values, dtype=self.F.dtype)

    def output_width(self, n_in):
        if n_in != self.n_in:
            raise ValueError(f"Periodic({self.n_in}) follows a layer of width {n_in}")
        return self.n_in * self.block

    def config(self):
        return {
            "type": "Periodic",
            "n_in": self.n_in,
            "n_frequencies": self.m,
            "sigma": self.sigma,
            "include_input": self.include_input,
        }

    def forward(self, A_prev, training=False, rng=None, rows=None):
        _check_input(self, A_prev, self.n_in)
        n, d, m, F = A_prev.shape[0], self.n_in, self.m, self.F
        V = (TWO_PI * A_prev)[:, :, None] * F[None]  # (n, d, m)
        C, S = np.cos(V), np.sin(V)
        parts = [A_prev[:, :, None], C, S] if self.include_input else [C, S]
        out = np.concatenate(parts, axis=2).reshape(n, d * self.block)

        def backward(dA: Array) -> Array | None:
            dA3 = dA.reshape(n, d, self.block)
            off = int(self.include_input)
            dV = C * dA3[:, :, off + m :]
            dV -= S * dA3[:, :, off : off + m]
            self.dF[...] = TWO_PI * np.einsum("nd,ndm->dm", A_prev, dV)
            if not self.needs_input_grad:
                return None
            dX = TWO_PI * np.einsum("ndm,dm->nd", dV, F)
            if self.include_input:
                dX += dA3[:, :, 0]
            return dX

        return out, backward

    def describe(self, symbols: Symbols) -> Description:
        A, n, d, m, ell = symbols.input, symbols.n, self.n_in, self.m, symbols.index
        E, w = f"E{ell}", d * self.block
        ndm = shape_text(n, d, m)
        keep = f"[{A}_j, cos V_j, sin V_j]" if self.include_input else "[cos V_j, sin V_j]"
        backward = [
            Equation("dV = −sin V ⊙ dC + cos V ⊙ dS", f"{ndm}", "dC, dS: the cos and sin columns"),
            Equation(f"dF{ell}_j = 2π {A}_jᵀ · dV_j", f"per column j → {shape_text(d, m)}"),
        ]
        if self.needs_input_grad:
            backward.append(
                Equation(
                    f"d{A}_j = 2π dV_j · F{ell}_jᵀ"
                    + (f" + d{E}[x_j]" if self.include_input else ""),
                    f"→ {shape_text(n, d)}",
                )
            )
        return Description(
            output=E,
            forward=[
                Equation(f"V_j = 2π {A}_j F{ell}_j", f"→ {ndm}", "m frequencies per column", "V"),
                Equation(f"{E} = {keep} per column j", f"→ {shape_text(n, w)}", "", E),
            ],
            backward=backward,
            kept=[(f"cos V, sin V {ndm} each", 2 * n * d * m)],
            grad_numbers=n * d if self.needs_input_grad else 0,
            other_ops=12 * n * d * m,
            parameters=[(f"F{ell}", "F", f"F{ell} {d}×{m} = {d * m:,}")],
        )

    def __repr__(self) -> str:
        return f"Periodic({self.n_in}, m={self.m})"
