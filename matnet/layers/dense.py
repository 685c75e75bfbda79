"""The fully connected layer: ``Z = A_prev @ W + b``, and its three gradient formulas."""

from __future__ import annotations

from typing import Any

import numpy as np

from matnet import _accel
from matnet.backend import all_finite, array_namespace
from matnet.errors import NonFiniteProductError
from matnet.layers.base import Backward, Description, Equation, Layer, Symbols, shape_text
from matnet.validation import check_positive_int

__all__ = ["Dense", "INITIALIZERS"]

Array = Any

INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform")


class Dense(Layer):
    """A fully connected layer: ``Z = A_prev @ W + b``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths; ``W`` has shape (n_in, n_out) and ``b`` (1, n_out).
    init : {"he_normal", "he_uniform", "glorot_normal", "glorot_uniform"}
        How ``W`` is drawn; biases start at zero. He suits ReLU-like activations, Glorot the others.
    """

    owns_output = True
    row_blocks = True

    def __init__(self, n_in: int, n_out: int, init: str = "he_normal") -> None:
        super().__init__()
        for name, value in (("n_in", n_in), ("n_out", n_out)):
            check_positive_int(f"Dense {name}", value)
        if init not in INITIALIZERS:
            raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITIALIZERS)}")
        self.n_in: int = int(n_in)
        self.n_out, self.init = int(n_out), init
        self.W: Array = None
        self.b: Array = None
        self.dW: Array = None
        self.db: Array = None

    def param_specs(self):
        return [("W", (self.n_in, self.n_out), True), ("b", (1, self.n_out), False)]

    def bind(self, params, grads):
        self.W, self.b = params["W"], params["b"]
        self.dW, self.db = grads["W"], grads["b"]

    def initialize(self, rng):
        fan_in, fan_out = self.n_in, self.n_out
        if self.init.startswith("he"):
            var = 2.0 / fan_in
        else:
            var = 2.0 / (fan_in + fan_out)
        shape = (fan_in, fan_out)
        # Drawn in float64 so float32 and float64 models from one seed start from the same weights.
        if self.init.endswith("normal"):
            values = rng.normal(0.0, np.sqrt(var), size=shape)
        else:
            limit = np.sqrt(3.0 * var)
            values = rng.uniform(-limit, limit, size=shape)
        self.W[...] = array_namespace(self.W).asarray(values, dtype=self.W.dtype)
        self.b[...] = 0

    def output_width(self, n_in):
        if n_in != self.n_in:
            raise ValueError(f"Dense({self.n_in} -> {self.n_out}) follows a layer of width {n_in}")
        return self.n_out

    def config(self):
        return {"type": "Dense", "n_in": self.n_in, "n_out": self.n_out, "init": self.init}

    def forward(self, A_prev, training=False, rng=None, rows=None):
        return self.fused_forward(A_prev, rows, relu=False, check_finite=False)

    def fused_forward(
        self, A_prev: Array, rows: slice | None, *, relu: bool, check_finite: bool
    ) -> tuple[Array, Backward]:
        """:meth:`forward` with two options the model's plan chooses (see
        :class:`matnet.model.Sequential`): ``relu=True`` also does the work of a ReLU layer that
        follows, in one pass with the bias (and with ``db`` in the backward pass), through matnet's C
        kernels; ``check_finite=True`` raises :class:`~matnet.errors.NonFiniteProductError` when the
        product has a NaN or an infinity."""
        if A_prev.ndim != 2 or A_prev.shape[1] != self.n_in:
            raise ValueError(
                f"Dense({self.n_in} -> {self.n_out}) got input of shape {tuple(A_prev.shape)}; "
                f"expected (n, {self.n_in})"
            )
        W, b = self.W, self.b
        Z, ones, dA_buf = self._workspace(A_prev.shape[0], W)
        if rows is None:
            Z_rows = np.matmul(A_prev, W, out=Z)  # Z = A_prev @ W + b
        else:
            Z_rows = np.matmul(A_prev[rows], W, out=Z[rows])
        if relu:  # A = max(Z + b, 0), written over Z
            finite = _accel.kernels.bias_relu(Z_rows, b, check_finite)
        else:
            finite = not check_finite or all_finite(Z_rows)
            Z_rows += b
        if check_finite and not finite:
            raise NonFiniteProductError(f"{self!r}: the product has a NaN or an infinity")

        def backward(dZ: Array) -> Array | None:
            if relu:  # dZ arrives as the ReLU's dA: dZ = dA * (A > 0), and db = its column sums
                if _accel.usable(dZ, Z):
                    _accel.kernels.relu_backward_sum(dZ, Z, self.db)
                else:
                    np.multiply(dZ, Z > 0, out=dZ)
                    np.matmul(ones, dZ, out=self.db)
            else:
                # db = dZ.sum(axis=0, keepdims=True), as ones(1, n) @ dZ: BLAS does it without a
                # temporary and on every thread, faster than NumPy's reduction here.
                np.matmul(ones, dZ, out=self.db)
            np.matmul(A_prev.T, dZ, out=self.dW)  # dW = A_prev.T @ dZ
            if not self.needs_input_grad:
                return None
            return np.matmul(dZ, W.T, out=dA_buf)  # dA_prev = dZ @ W.T

        return Z, backward

    def _workspace(self, n: int, W: Array) -> tuple[Array, Array, Array | None]:
        """Output and input-gradient buffers and a row of ones for a batch of ``n``, reused while
        ``n`` and the dtype stay the same (every step but an epoch's last)."""
        cached = self._buffers.get("workspace")
        if cached is not None and cached[0] == n and cached[1] == W.dtype:
            return cached[2]
        dA = self._buffer("dA_prev", n, self.n_in, W) if self.needs_input_grad else None
        work = (self._buffer("Z", n, self.n_out, W), self._ones(n, W), dA)
        self._buffers["workspace"] = (n, W.dtype, work)
        return work

    def _ones(self, n: int, like: Array) -> Array:
        """A reused (1, n) row of ones."""
        ones = self._buffers.get("ones")
        if ones is None or ones.shape[1] < n or ones.dtype != like.dtype:
            ones = self._buffers["ones"] = array_namespace(like).ones((1, n), dtype=like.dtype)
        return ones[:, :n]

    def describe(self, symbols: Symbols) -> Description:
        n, i, o, ell, A = symbols.n, self.n_in, self.n_out, symbols.index, symbols.input
        Z = f"Z{ell}"
        product = 2 * n * i * o  # (m×k)·(k×p) costs 2·m·k·p
        backward = [
            Equation(
                f"dW{ell} = {A}ᵀ · d{Z}",
                f"{shape_text(i, n)}·{shape_text(n, o)} → {shape_text(i, o)}",
                f"{n} outer products, one per row, summed" if n > 1 else "one outer product",
                f"dW{ell}",
            ),
            Equation(
                f"db{ell} = Σrows d{Z}",
                f"{shape_text(n, o)} → {shape_text(1, o)}",
                "sum over the batch",
                f"db{ell}",
            ),
        ]
        if self.needs_input_grad:
            backward.append(
                Equation(
                    f"d{A} = d{Z} · W{ell}ᵀ",
                    f"{shape_text(n, o)}·{shape_text(o, i)} → {shape_text(n, i)}",
                    f"the error sent back through W{ell}",
                    f"d{A}",
                )
            )
        else:
            backward.append(
                Equation(
                    f"(no d{A} = d{Z} · W{ell}ᵀ)",
                    "",
                    f"the input needs no gradient: saves {product:,} flops",
                )
            )
        return Description(
            output=Z,
            forward=[
                Equation(
                    f"{Z} = {A} · W{ell} + b{ell}",
                    f"{shape_text(n, i)}·{shape_text(i, o)} + {shape_text(1, o)} → {shape_text(n, o)}",
                    "",
                    Z,
                )
            ],
            backward=backward,
            flops=(product, product, product if self.needs_input_grad else 0),
            kept=[(f"{Z} {shape_text(n, o)}", n * o)],
            grad_numbers=n * i if self.needs_input_grad else 0,
            other_ops=2 * n * o,  # the bias add forward and the bias sum backward
            parameters=[
                (f"W{ell}", "W", f"W{ell} {i}×{o} = {i * o:,}"),
                (f"b{ell}", "b", f"b{ell} {o:,}"),
            ],
        )

    def __repr__(self) -> str:
        return f"Dense({self.n_in} -> {self.n_out})"
