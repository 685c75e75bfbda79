"""Layers of the tabular recipe that act on each input column (RealMLP): a learnable per-column
scale and periodic numerical embeddings."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from matnet.backend import array_namespace
from matnet.layers.base import Description, Equation, Layer, Symbols, shape_text
from matnet.validation import check_positive_int

__all__ = ["Scale", "Periodic", "PeriodicLinear"]

Array = Any

TWO_PI = 2.0 * math.pi


def _positive_int(owner: str, name: str, value: Any) -> int:
    return check_positive_int(f"{owner} {name}", value)


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

    def __init__(self, n_in: int, gain: float = 1.0) -> None:
        super().__init__()
        self.n_in: int = _positive_int("Scale", "n_in", n_in)
        ok = isinstance(gain, (int, float)) and not isinstance(gain, bool)
        if not ok or not math.isfinite(gain) or gain <= 0:
            raise ValueError(f"Scale gain={gain!r} must be a positive number")
        self.gain = float(gain)
        self.s: Array = None
        self.ds: Array = None

    def param_specs(self):
        return [("s", (1, self.n_in), False)]

    def bind(self, params, grads):
        self.s, self.ds = params["s"], grads["s"]

    def initialize(self, rng):
        self.s[...] = 1.0 / self.gain

    def output_width(self, n_in):
        if n_in != self.n_in:
            raise ValueError(f"Scale({self.n_in}) follows a layer of width {n_in}")
        return n_in

    def config(self):
        return {"type": "Scale", "n_in": self.n_in, "gain": self.gain}

    def forward(self, A_prev, training=False, rng=None, rows=None):
        _check_input(self, A_prev, self.n_in)
        g = self.gain
        s = self.s * g if g != 1 else self.s

        def backward(dA: Array) -> Array | None:
            self.ds[...] = (A_prev * dA).sum(axis=0, keepdims=True)
            if g != 1:
                self.ds *= g
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


class PeriodicLinear(Layer):
    """RealMLP's PBLD numerical embedding (periodic, bias, linear, densenet): every column ``x_j``
    becomes ``[x_j, cos(2π x_j f_j + φ_j) · L_j + c_j]``, ``m`` phase-shifted cosines per column
    mapped by the column's own (m, o) linear layer to ``o`` values.

    Only the first ``n_embedded`` columns ``d`` are embedded (RealMLP embeds the numeric columns; a
    preprocessor puts them first, before missing indicators and one-hot blocks); the other
    ``n_in − d`` pass through unchanged after the embedded blocks.

    Output width ``d · (1 + o) + (n_in − d)``, column ``j``'s block at ``[j(1+o), (j+1)(1+o))``.
    Narrower than
    :class:`Periodic` (``1 + o`` columns per input column instead of ``1 + 2m``), so the next layer's
    product is cheaper. Per column j, with ``V_j = 2π x_j f_j + φ_j`` (n, m) and ``C_j = cos V_j``:
    ``dL_j = C_jᵀ · dH_j``, ``dc_j = Σrows dH_j``, ``dV_j = −sin V_j ⊙ (dH_j · L_jᵀ)``,
    ``df_j = 2π Σrows x_j ⊙ dV_j``, ``dφ_j = Σrows dV_j`` and ``dx_j = 2π dV_j · f_jᵀ + dE[x_j]``.

    Parameters
    ----------
    n_in : int
        The number of columns (standardized: the frequencies assume unit scale).
    n_frequencies : int
        ``m``, cosines per column (RealMLP: 16).
    n_out : int
        ``o``, values per column after the linear map (RealMLP: 3, plus x itself).
    sigma : float
        Frequencies start as draws from N(0, sigma²); phases uniform in [−π, π].
    n_embedded : int, optional
        How many leading columns are embedded (default all ``n_in``).
    """

    def __init__(
        self,
        n_in: int,
        n_frequencies: int = 16,
        n_out: int = 3,
        sigma: float = 0.1,
        n_embedded: int | None = None,
    ) -> None:
        super().__init__()
        self.n_in: int = _positive_int("PeriodicLinear", "n_in", n_in)
        d = self.n_in if n_embedded is None else n_embedded
        self.d = _positive_int("PeriodicLinear", "n_embedded", d)
        if self.d > self.n_in:
            raise ValueError(
                f"PeriodicLinear n_embedded={n_embedded!r} exceeds n_in={self.n_in}; embed at most "
                "the columns it receives"
            )
        self.m = _positive_int("PeriodicLinear", "n_frequencies", n_frequencies)
        self.o = _positive_int("PeriodicLinear", "n_out", n_out)
        ok = isinstance(sigma, (int, float)) and not isinstance(sigma, bool)
        if not ok or not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"PeriodicLinear sigma={sigma!r} must be a positive number")
        self.sigma = float(sigma)
        self.f: Array = None
        self.phi: Array = None
        self.L: Array = None
        self.c: Array = None
        self.df: Array = None
        self.dphi: Array = None
        self.dL: Array = None
        self.dc: Array = None

    def param_specs(self):
        d, m, o = self.d, self.m, self.o
        return [
            ("f", (d, m), False),
            ("phi", (d, m), False),
            ("L", (d, m, o), False),
            ("c", (d, o), False),
        ]

    def bind(self, params, grads):
        self.f, self.phi, self.L, self.c = params["f"], params["phi"], params["L"], params["c"]
        self.df, self.dphi, self.dL, self.dc = grads["f"], grads["phi"], grads["L"], grads["c"]

    def initialize(self, rng):
        d, m, o = self.d, self.m, self.o
        xp, dtype = array_namespace(self.f), self.f.dtype
        bound = 1.0 / math.sqrt(m)  # PyTorch's Linear default, as RealMLP
        self.f[...] = xp.asarray(rng.normal(0.0, self.sigma, size=(d, m)), dtype=dtype)
        self.phi[...] = xp.asarray(rng.uniform(-math.pi, math.pi, size=(d, m)), dtype=dtype)
        self.L[...] = xp.asarray(rng.uniform(-bound, bound, size=(d, m, o)), dtype=dtype)
        self.c[...] = xp.asarray(rng.uniform(-bound, bound, size=(d, o)), dtype=dtype)

    @property
    def block(self) -> int:
        """Output columns per input column."""
        return 1 + self.o

    def output_width(self, n_in):
        if n_in != self.n_in:
            raise ValueError(f"PeriodicLinear({self.n_in}) follows a layer of width {n_in}")
        return self.d * self.block + self.n_in - self.d

    def config(self):
        return {
            "type": "PeriodicLinear",
            "n_in": self.n_in,
            "n_frequencies": self.m,
            "n_out": self.o,
            "sigma": self.sigma,
            "n_embedded": self.d,
        }

    def forward(self, A_prev, training=False, rng=None, rows=None):
        _check_input(self, A_prev, self.n_in)
        n, d = A_prev.shape[0], self.d
        e = d * self.block  # the embedded blocks' width; the passed-through columns follow
        xp = array_namespace(A_prev)
        # Layout (d, m, n): the rows innermost, so every elementwise loop runs over n contiguous
        # values, and the per-column linear maps are one batched product of d small matrices.
        Xt = xp.ascontiguousarray(A_prev[:, :d].T)[:, None, :]  # (d, 1, n)
        V = Xt * (TWO_PI * self.f)[:, :, None]
        V += self.phi[:, :, None]  # (d, m, n)
        C = xp.cos(V)
        H = xp.matmul(self.L.transpose(0, 2, 1), C)  # (d, o, n)
        H += self.c[:, :, None]
        out = xp.empty((n, e + self.n_in - d), dtype=A_prev.dtype)
        out3 = out[:, :e].reshape(n, d, self.block)
        out3[:, :, 0] = A_prev[:, :d]
        out3[:, :, 1:] = H.transpose(2, 0, 1)
        out[:, e:] = A_prev[:, d:]

        def backward(dA: Array) -> Array | None:
            dA3 = dA[:, :e].reshape(n, d, self.block)
            dH = xp.ascontiguousarray(dA3[:, :, 1:].transpose(1, 2, 0))  # (d, o, n)
            self.dc[...] = dH.sum(axis=2)
            xp.matmul(C, dH.transpose(0, 2, 1), out=self.dL)  # (d, m, o)
            dV = xp.matmul(self.L, dH)  # (d, m, n)
            dV *= -xp.sin(V)
            self.dphi[...] = dV.sum(axis=2)
            self.df[...] = TWO_PI * xp.matmul(dV, Xt.transpose(0, 2, 1))[:, :, 0]
            if not self.needs_input_grad:
                return None
            dX = TWO_PI * xp.matmul(self.f[:, None, :], dV)[:, 0, :]  # (d, n)
            if d == self.n_in:
                return dX.T + dA3[:, :, 0]
            return xp.concatenate([dX.T + dA3[:, :, 0], dA[:, e:]], axis=1)

        return out, backward

    def describe(self, symbols: Symbols) -> Description:
        A, n, d, m, o, ell = symbols.input, symbols.n, self.d, self.m, self.o, symbols.index
        E, w, rest = f"E{ell}", self.output_width(self.n_in), self.n_in - self.d
        ndm = shape_text(n, d, m)
        j = "j < d" if rest else "j"  # the columns it embeds
        backward = [
            Equation(f"dL{ell}_j = C_jᵀ · dH_j", f"per column j → {shape_text(m, o)}"),
            Equation(f"dV_j = −sin V_j ⊙ (dH_j · L{ell}_jᵀ)", f"→ {ndm}"),
            Equation(
                f"df{ell}_j = 2π Σrows {A}_j ⊙ dV_j,  dφ{ell}_j = Σrows dV_j",
                f"→ {shape_text(d, m)} each",
            ),
        ]
        if self.needs_input_grad:
            backward.append(
                Equation(f"d{A}_j = 2π dV_j · f{ell}_jᵀ + d{E}[x_j]", f"→ {shape_text(n, d)}")
            )
            if rest:
                backward.append(
                    Equation(f"d{A}_j = d{E}[x_j] for j ≥ d", f"→ {shape_text(n, rest)}")
                )
        return Description(
            output=E,
            forward=[
                Equation(
                    f"V_j = 2π {A}_j f{ell}_j + φ{ell}_j", f"→ {ndm}", "m phases per column", "V"
                ),
                Equation(
                    f"H_j = cos V_j · L{ell}_j + c{ell}_j",
                    f"→ {shape_text(n, d, o)}",
                    "a linear map per column",
                    "H",
                ),
                Equation(
                    f"{E} = [{A}_j, H_j] per column {j}"
                    + (f", then {A}_j for j ≥ d (passed through)" if rest else ""),
                    f"→ {shape_text(n, w)}",
                    f"d = {d} embedded columns" if rest else "",
                    E,
                ),
            ],
            backward=backward,
            kept=[(f"V, cos V {ndm} each", 2 * n * d * m)],
            grad_numbers=n * d if self.needs_input_grad else 0,
            other_ops=10 * n * d * m + 6 * n * d * m * o,
            parameters=[
                (f"f{ell}", "f", f"f{ell} {d}×{m} = {d * m:,}"),
                (f"φ{ell}", "phi", f"φ{ell} {d}×{m} = {d * m:,}"),
                (f"L{ell}", "L", f"L{ell} {d}×{m}×{o} = {d * m * o:,}"),
                (f"c{ell}", "c", f"c{ell} {d}×{o} = {d * o:,}"),
            ],
        )

    def __repr__(self) -> str:
        embedded = f", embeds {self.d}" if self.d < self.n_in else ""
        return f"PeriodicLinear({self.n_in}, m={self.m}, o={self.o}{embedded})"
