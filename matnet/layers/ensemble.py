"""An ensemble of k networks in one model (BatchEnsemble, as in TabM) and the mean of its members.

The layers keep the library's matrix form: a batch is an (n, width) matrix, and an ensemble of k
members lays its k hidden matrices side by side, (n, k·width), member k in columns
``[k·width, (k+1)·width)``, so activations and dropout act on it unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matnet.backend import array_namespace
from matnet.layers.base import Description, Equation, Layer, Symbols, shape_text
from matnet.validation import check_positive_int

__all__ = ["BatchEnsemble", "EnsembleMean"]

Array = Any


def _positive_int(owner: str, name: str, value: Any) -> int:
    return check_positive_int(f"{owner} {name}", value)


def _check_input(layer: Layer, A_prev: Array, width: int) -> None:
    if A_prev.ndim != 2 or A_prev.shape[1] != width:
        raise ValueError(
            f"{layer!r} got input of shape {tuple(A_prev.shape)}; expected (n, {width})"
        )


class BatchEnsemble(Layer):
    """k fully connected layers as one (BatchEnsemble, Wen et al. 2020; TabM, Gorishniy et al. 2025):
    member k computes ``Z_k = ((A_k ⊙ r_k) · W) ⊙ s_k + b_k`` around one shared ``W`` (n_in, n_out)
    with its own rank-1 adapter ``r_k`` (1, n_in), ``s_k`` (1, n_out) and bias ``b_k``; that is the
    member weight ``W_k = diag(r_k) · W · diag(s_k)``.

    All k members run as one matrix product: the inputs ``A_k ⊙ r_k`` of every member stacked as
    rows, ``(n·k, n_in) · (n_in, n_out)``. The output lays the members side by side, (n, k·n_out).
    With ``P = (A ⊙ R) · W`` and ``G = dZ ⊙ S`` (members stacked as rows):
    ``db_k = Σrows dZ_k``, ``ds_k = Σrows dZ_k ⊙ P_k``, ``dW = (A ⊙ R)ᵀ · G`` (summed over all
    members' rows: W is shared), ``dr_k = Σrows (G_k · Wᵀ) ⊙ A_k``, ``dA_k = (G_k · Wᵀ) ⊙ r_k``
    (summed over k when every member reads the same input).

    Parameters
    ----------
    n_in, n_out : int
        The widths of one member.
    k : int
        The number of members.
    shared_input : bool
        True for the first layer: every member reads the same (n, n_in) input. False: the input is
        (n, k·n_in), one block per member (the output of a previous BatchEnsemble).
    init : {"he_normal", "glorot_normal"}
        How the shared W is drawn. The adapters start at 1, except ``r`` of a shared-input layer,
        whose random signs (±1) make the members differ from the first step (TabM's choice).
    """

    owns_output = True  # Z is a buffer of this layer, which its backward pass does not read

    def __init__(
        self, n_in: int, n_out: int, k: int = 8, shared_input: bool = False, init: str = "he_normal"
    ) -> None:
        super().__init__()
        self.n_units = _positive_int("BatchEnsemble", "n_in", n_in)
        self.n_out = _positive_int("BatchEnsemble", "n_out", n_out)
        self.k = _positive_int("BatchEnsemble", "k", k)
        if init not in ("he_normal", "glorot_normal"):
            raise ValueError(f"unknown init {init!r}; choose he_normal or glorot_normal")
        self.shared_input, self.init = bool(shared_input), init
        self.n_in: int = self.n_units if self.shared_input else self.k * self.n_units
        self.W: Array = None
        self.R: Array = None
        self.S: Array = None
        self.b: Array = None
        self.dW: Array = None
        self.dR: Array = None
        self.dS: Array = None
        self.db: Array = None

    def param_specs(self):
        i, o, k = self.n_units, self.n_out, self.k
        return [
            ("W", (i, o), True),
            ("r", (k, i), False),
            ("s", (k, o), False),
            ("b", (k, o), False),
        ]

    def bind(self, params, grads):
        self.W, self.R, self.S, self.b = params["W"], params["r"], params["s"], params["b"]
        self.dW, self.dR, self.dS, self.db = grads["W"], grads["r"], grads["s"], grads["b"]

    def initialize(self, rng):
        i, o = self.n_units, self.n_out
        var = 2.0 / i if self.init == "he_normal" else 2.0 / (i + o)
        xp = array_namespace(self.W)
        self.W[...] = xp.asarray(rng.normal(0.0, np.sqrt(var), size=(i, o)), dtype=self.W.dtype)
        if self.shared_input:
            signs = rng.choice(np.array([-1.0, 1.0]), size=(self.k, i))
            self.R[...] = xp.asarray(signs, dtype=self.R.dtype)
        else:
            self.R[...] = 1
        self.S[...] = 1
        self.b[...] = 0

    def output_width(self, n_in):
        if n_in != self.n_in:
            raise ValueError(f"{self!r} follows a layer of width {n_in}; expected {self.n_in}")
        return self.k * self.n_out

    def config(self):
        return {
            "type": "BatchEnsemble",
            "n_in": self.n_units,
            "n_out": self.n_out,
            "k": self.k,
            "shared_input": self.shared_input,
            "init": self.init,
        }

    def forward(self, A_prev, training=False, rng=None, rows=None):
        _check_input(self, A_prev, self.n_in)
        n, k, i, o = A_prev.shape[0], self.k, self.n_units, self.n_out
        W, R, S = self.W, self.R, self.S
        A3 = A_prev[:, None, :] if self.shared_input else A_prev.reshape(n, k, i)
        # Reused buffers, as Dense's workspace: fresh (n·k, ·) arrays every step cost page faults
        # that took longer than the elementwise work itself.
        AR = self._buffer("AR", n * k, i, A_prev)  # every member's input, stacked as rows
        np.multiply(A3, R, out=AR.reshape(n, k, i))
        P = np.matmul(AR, W, out=self._buffer("P", n * k, o, A_prev)).reshape(n, k, o)
        Z = self._buffer("Z", n, k * o, A_prev).reshape(n, k, o)  # one product for all k members
        np.multiply(P, S, out=Z)
        Z += self.b

        def backward(dZ: Array) -> Array | None:
            # einsum contracts the row sums without the (n, k, ·) temporaries of "(X * Y).sum()".
            G3 = dZ.reshape(n, k, o)
            self.db[...] = G3.sum(axis=0)
            self.dS[...] = np.einsum("nko,nko->ko", G3, P)
            G3 *= S  # dZ is this layer's to overwrite, as an activation's dA is
            G = G3.reshape(n * k, o)
            np.matmul(AR.T, G, out=self.dW)
            dAR = np.matmul(G, W.T, out=self._buffer("dAR", n * k, i, G)).reshape(n, k, i)
            if self.shared_input:
                self.dR[...] = np.einsum("nki,ni->ki", dAR, A_prev)
                return np.einsum("nki,ki->ni", dAR, R) if self.needs_input_grad else None
            self.dR[...] = np.einsum("nki,nki->ki", dAR, A3)
            if not self.needs_input_grad:
                return None
            dAR *= R
            return dAR.reshape(n, k * i)

        return Z.reshape(n, k * o), backward

    def describe(self, symbols: Symbols) -> Description:
        n, k, i, o, ell, A = (
            symbols.n,
            self.k,
            self.n_units,
            self.n_out,
            symbols.index,
            symbols.input,
        )
        Z, nk = f"Z{ell}", n * k
        product = 2 * nk * i * o
        A_k = f"{A}" if self.shared_input else f"{A}_k"
        forward = [
            Equation(
                f"X{ell} = stack_k({A_k} ⊙ r{ell}_k)",
                f"k={k} × ({shape_text(n, i)} ⊙ {shape_text(1, i)}) → {shape_text(nk, i)}",
                "the members' inputs as rows of one matrix",
                f"X{ell}",
            ),
            Equation(
                f"P{ell} = X{ell} · W{ell}",
                f"{shape_text(nk, i)}·{shape_text(i, o)} → {shape_text(nk, o)}",
                f"one product for all {k} members: W{ell} is shared",
                f"P{ell}",
            ),
            Equation(
                f"{Z}_k = P{ell}_k ⊙ s{ell}_k + b{ell}_k",
                f"→ {shape_text(n, k * o)}",
                f"= {A_k} · diag(r{ell}_k) · W{ell} · diag(s{ell}_k) + b{ell}_k, members side by side",
                Z,
            ),
        ]
        backward = [
            Equation(f"db{ell}_k = Σrows d{Z}_k", f"→ {shape_text(k, o)}"),
            Equation(f"ds{ell}_k = Σrows d{Z}_k ⊙ P{ell}_k", f"→ {shape_text(k, o)}"),
            Equation(
                f"dW{ell} = X{ell}ᵀ · G,  G = stack_k(d{Z}_k ⊙ s{ell}_k)",
                f"{shape_text(i, nk)}·{shape_text(nk, o)} → {shape_text(i, o)}",
                "the shared weight sums every member's gradient",
                f"dW{ell}",
            ),
            Equation(
                f"dX{ell} = G · W{ell}ᵀ",
                f"{shape_text(nk, o)}·{shape_text(o, i)} → {shape_text(nk, i)}",
            ),
            Equation(f"dr{ell}_k = Σrows dX{ell}_k ⊙ {A_k}", f"→ {shape_text(k, i)}"),
        ]
        if self.needs_input_grad:
            text = (
                f"d{A} = Σ_k dX{ell}_k ⊙ r{ell}_k"
                if self.shared_input
                else f"d{A}_k = dX{ell}_k ⊙ r{ell}_k"
            )
            backward.append(Equation(text, f"→ {shape_text(n, self.n_in)}", "", f"d{A}"))
        return Description(
            output=Z,
            forward=forward,
            backward=backward,
            flops=(product, product, product),
            kept=[(f"X{ell} {shape_text(nk, i)}, P{ell} {shape_text(nk, o)}", nk * (i + o))],
            grad_numbers=n * self.n_in if self.needs_input_grad else 0,
            other_ops=nk * (2 * i + 6 * o),
            parameters=[
                (f"W{ell}", "W", f"W{ell} {i}×{o} = {i * o:,}"),
                (f"r{ell}", "r", f"r{ell} {k}×{i} = {k * i:,}"),
                (f"s{ell}", "s", f"s{ell} {k}×{o} = {k * o:,}"),
                (f"b{ell}", "b", f"b{ell} {k}×{o} = {k * o:,}"),
            ],
        )

    def __repr__(self) -> str:
        return f"BatchEnsemble({self.n_units} -> {self.n_out}, k={self.k})"


class EnsembleMean(Layer):
    """The mean of k members' outputs laid side by side: (n, k·c) → (n, c), ``Y = (1/k) Σ_k Z_k``;
    backward ``dZ_k = dY / k`` for every member.

    The members' logits are averaged before the loss, so the k members train as one model whose
    output is their mean (TabM instead averages the k members' losses in training; the prediction,
    a mean over members, is the same form).

    Parameters
    ----------
    k : int
        The number of members.
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = _positive_int("EnsembleMean", "k", k)

    def output_width(self, n_in):
        if n_in % self.k:
            raise ValueError(f"EnsembleMean(k={self.k}) follows a layer of width {n_in}, not k·c")
        return n_in // self.k

    def config(self):
        return {"type": "EnsembleMean", "k": self.k}

    def forward(self, A_prev, training=False, rng=None, rows=None):
        n, width = A_prev.shape
        if width % self.k:
            raise ValueError(f"{self!r} got input of width {width}, not a multiple of k={self.k}")
        c = width // self.k
        out = A_prev.reshape(n, self.k, c).mean(axis=1)

        def backward(dA: Array) -> Array:
            return np.repeat((dA / self.k)[:, None, :], self.k, axis=1).reshape(n, width)

        return out, backward

    def describe(self, symbols: Symbols) -> Description:
        A, n, k, ell = symbols.input, symbols.n, self.k, symbols.index
        c = symbols.n_in // k
        Y = f"Y{ell}"
        return Description(
            output=Y,
            forward=[
                Equation(
                    f"{Y} = (1/{k}) Σ_k {A}_k",
                    f"{shape_text(n, k * c)} → {shape_text(n, c)}",
                    "the members' mean",
                    Y,
                )
            ],
            backward=[Equation(f"d{A}_k = d{Y} / {k}", f"→ {shape_text(n, k * c)}", "", f"d{A}")],
            other_ops=n * k * c,
        )

    def __repr__(self) -> str:
        return f"EnsembleMean(k={self.k})"
