"""Layers: each ``forward`` returns its output and a ``backward`` closure.

The closure captures exactly what the gradient needs (``A_prev`` for a Dense layer, the output for an
activation, the mask for dropout), so nothing stale is cached between steps. Outputs and input
gradients live in buffers the layer reuses: an output stays valid until the layer's next forward
call. Parameters and their gradients are views into the model's two flat vectors (see
:class:`matnet.model.Sequential`), bound with :meth:`Layer.bind`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from matnet import _accel
from matnet.activations import Activation as ActivationFunction
from matnet.activations import get_activation
from matnet.backend import all_finite, array_namespace
from matnet.errors import NonFiniteProductError

__all__ = ["Layer", "Dense", "Activation", "Dropout", "INITIALIZERS", "layer_from_config"]

Array = Any
Backward = Callable[[Array], Array | None]

INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform")


class Layer:
    """Base class: a layer with no parameters unless it declares some in :meth:`param_specs`."""

    #: True when the output is a buffer the layer owns, so the next layer may overwrite it.
    owns_output = False
    #: True when ``forward`` accepts ``rows`` (see :meth:`forward`), so a model may run a large batch
    #: through all its layers a block of rows at a time.
    row_blocks = False

    def __init__(self) -> None:
        self._buffers: dict[str, Array] = {}
        #: False for the first layer of a model: nobody needs the gradient of the input data.
        self.needs_input_grad = True

    def param_specs(self) -> list[tuple[str, tuple[int, ...], bool]]:
        """``(name, shape, decayed)`` for each parameter; ``decayed`` marks weights for L2/decay."""
        return []

    def state_specs(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(name, shape)`` for each piece of non-trainable state (running statistics, a scaler):
        saved with the model, never touched by an optimizer or gradcheck."""
        return []

    def bind(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """Receive views into the model's flat parameter and gradient vectors."""

    def bind_state(self, state: dict[str, Array]) -> None:
        """Receive views into the model's flat state vector (see :meth:`state_specs`)."""

    def initialize(self, rng: np.random.Generator) -> None:
        """Draw initial parameter values into the bound views."""

    def needs_adapt(self) -> bool:
        """True while non-trainable state must still be fitted from data (see :meth:`adapt`)."""
        return False

    def adapt(self, A_prev: Array) -> None:
        """Fit the non-trainable state from this layer's input over the training rows."""

    def output_width(self, n_in: int) -> int:
        """Width of the output for an input of width ``n_in``."""
        return n_in

    def config(self) -> dict[str, Any]:
        """The constructor arguments, as plain JSON values (used by model files)."""
        return {"type": type(self).__name__}

    def forward(
        self,
        A_prev: Array,
        training: bool = False,
        rng: np.random.Generator | None = None,
        rows: slice | None = None,
    ) -> tuple[Array, Backward]:
        """Return ``(A, backward)`` where ``backward(dA)`` returns ``dA_prev`` (None for the first layer).

        With ``rows`` (layers with :attr:`row_blocks` only), ``A_prev`` is the whole batch but only
        those rows are computed into the whole-batch output; the model calls each layer once per
        block of rows and backpropagates through the last call's closure, which sees the whole batch.
        """
        return A_prev, lambda dA: dA

    def _buffer(self, name: str, n_rows: int, n_cols: int, like: Array) -> Array:
        """A reusable (n_rows, n_cols) buffer: grown when needed, sliced when smaller."""
        buf = self._buffers.get(name)
        if (
            buf is None
            or buf.shape[0] < n_rows
            or buf.shape[1] != n_cols
            or buf.dtype != like.dtype
        ):
            buf = array_namespace(like).empty((n_rows, n_cols), dtype=like.dtype)
            self._buffers[name] = buf
        return buf[:n_rows]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_buffers"] = {}  # workspaces are rebuilt on demand
        return state


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
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Dense {name}={value!r} must be a positive integer")
        if init not in INITIALIZERS:
            raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITIALIZERS)}")
        self.n_in, self.n_out, self.init = int(n_in), int(n_out), init
        self.W = self.b = self.dW = self.db = None

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

    def forward(self, A_prev, training=False, rng=None, rows=None, relu=False, check_finite=False):
        """As :meth:`Layer.forward`; ``relu=True`` also does the work of a ReLU layer that follows,
        in one pass with the bias (and with ``db`` in the backward pass), through matnet's C
        kernels (see :class:`matnet.model.Sequential`, which decides). ``check_finite=True`` raises
        :class:`NonFiniteProductError` when the product has a NaN or an infinity."""
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
                # temporary and on every thread, 2-3x faster than NumPy's reduction here.
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

    def __repr__(self) -> str:
        return f"Dense({self.n_in} -> {self.n_out})"


class Activation(Layer):
    """An elementwise (or row-wise, for softmax) activation ``A = act(Z)`` as a layer.

    Parameters
    ----------
    activation : str or matnet.activations.Activation
        A registry name: "identity", "relu", "leaky_relu", "sigmoid" (or "logistic"), "tanh",
        "gelu", "softmax".
    """

    owns_output = True
    row_blocks = True

    def __init__(self, activation: str | dict | ActivationFunction) -> None:
        super().__init__()
        self.fn = get_activation(activation)
        #: Set by the model when the input is a buffer of the previous layer that nobody else reads.
        self.inplace = False

    def config(self):
        return {"type": "Activation", "activation": self.fn.config()}

    def forward(self, Z, training=False, rng=None, rows=None):
        fn = self.fn
        if fn.name == "identity":
            return Z, lambda dA: dA
        if self.inplace and fn.overwrites_input:
            out = Z
        else:
            out = self._buffer("A", Z.shape[0], Z.shape[1], Z)
        if rows is None:
            A = fn.forward(Z, out)
        else:
            fn.forward(Z[rows], out[rows])
            A = out

        def backward(dA: Array) -> Array:
            return fn.backward(dA, Z, A)

        return A, backward

    def __repr__(self) -> str:
        return f"Activation({self.fn.name})"


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
        mask = self._buffer("mask", n, width, A_prev)
        if isinstance(mask, np.ndarray):
            rng.random(dtype=mask.dtype, out=mask)
        else:  # on a GPU: drawn on the host from the same generator, so the masks match the CPU's
            mask[...] = array_namespace(mask).asarray(rng.random((n, width), dtype=mask.dtype))
        np.greater_equal(mask, self.rate, out=mask)  # 1.0 keeps a unit, 0.0 drops it
        mask *= 1.0 / (1.0 - self.rate)
        A = np.multiply(A_prev, mask, out=self._buffer("A", n, width, A_prev))

        def backward(dA: Array) -> Array:
            return np.multiply(dA, mask, out=dA)

        return A, backward

    def __repr__(self) -> str:
        return f"Dropout({self.rate})"


_LAYER_TYPES = {"Dense": Dense, "Activation": Activation, "Dropout": Dropout}


def layer_from_config(config: dict[str, Any]) -> Layer:
    """Rebuild a layer from :meth:`Layer.config`; only matnet's own layer types are accepted."""
    if not isinstance(config, dict) or config.get("type") not in _LAYER_TYPES:
        kind = config.get("type") if isinstance(config, dict) else config
        raise ValueError(f"unknown layer type {kind!r}; expected one of {', '.join(_LAYER_TYPES)}")
    kwargs = {k: v for k, v in config.items() if k != "type"}
    return _LAYER_TYPES[config["type"]](**kwargs)
