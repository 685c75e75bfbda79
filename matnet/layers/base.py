"""The layer protocol, the description every layer gives of itself, and the layer registry.

A layer is called one way only: ``forward(A_prev, training, rng, rows) -> (A, backward)``, where
``backward(dA)`` returns ``dA_prev`` (None when the model needs no gradient of this layer's input). The
closure captures exactly what the gradient needs, so nothing stale is cached between steps. Parameters
and their gradients are views into the model's two flat vectors (:meth:`Layer.bind`); non-trainable
state (a scaler, running statistics) is a view into a third (:meth:`Layer.bind_state`).

A layer also describes itself (:meth:`Layer.describe`): its equations with the live shapes, the
floating-point operations of its matrix products and the memory it holds for the backward pass.
:func:`matnet.explain` prints those descriptions and knows no layer by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matnet.backend import array_namespace
from matnet.equations import Equation, shape_text

__all__ = [
    "BatchShare",
    "draw_rows",
    "Layer",
    "Equation",
    "Description",
    "Symbols",
    "register_layer",
    "layer_from_config",
    "layer_types",
    "shape_text",
]

Array = Any
Backward = Callable[[Array], Array | None]


@dataclass
class Symbols:
    """What a layer needs to name its arrays in a description.

    ``input`` is the name of the layer's input (``"A0"`` for the batch), ``index`` the layer's number in
    the article's notation (the count of layers with parameters so far, this one included), ``n`` the
    batch rows and ``n_in`` the input width.
    """

    input: str
    index: int
    n: int
    n_in: int


@dataclass
class Description:
    """A layer's account of itself for a batch of ``n`` rows.

    Attributes
    ----------
    output : str
        The name of the layer's output (``"Z1"``, ``"A1"``).
    forward, backward : list of Equation
        The equations in the order they run (backward: within this layer).
    flops : (int, int, int)
        Matrix-product floating-point operations of the forward pass, the weight gradients and the
        input gradient (an (m×k)·(k×p) product costs 2·m·k·p).
    kept : list of (str, int)
        Arrays held from the forward pass for the backward pass: text and number count.
    overwrites_input : str
        When the output is written over the input buffer: the note to append to the input's entry.
    grad_numbers : int
        Numbers of the input gradient this layer's backward pass allocates.
    other_ops : int
        Floating-point operations besides the matrix products that the bias adds and sums take.
    parameters : list of (str, str, str)
        ``(symbol, parameter name, text)`` per parameter: ``("W1", "W", "W1 64×32 = 2,048")``.
    state : list of (str, str)
        ``(symbol, state name)`` per piece of non-trainable state (shown with ``values=True``).
    """

    output: str
    forward: list[Equation]
    backward: list[Equation]
    flops: tuple[int, int, int] = (0, 0, 0)
    kept: list[tuple[str, int]] = field(default_factory=list)
    overwrites_input: str = ""
    grad_numbers: int = 0
    other_ops: int = 0
    parameters: list[tuple[str, str, str]] = field(default_factory=list)
    state: list[tuple[str, str]] = field(default_factory=list)


class BatchShare:
    """The ``rng`` a random layer gets under data parallelism: this rank's rows of the global batch,
    and the stream every rank shares (the one that shuffles).

    A random layer draws through :func:`draw_rows`: every rank then draws the numbers of the whole
    global batch, in the order one process would, and keeps its own rows, so ``mpiexec -n k``
    trains the same model as one process (dropout masks included). The cost is that each rank
    draws k times the numbers it uses.
    """

    def __init__(self, generator: np.random.Generator, rank: int, size: int) -> None:
        self.generator, self.rank, self.size = generator, rank, size
        self.n_global = 0

    def for_batch(self, n_global: int) -> BatchShare:
        """Set the global batch's row count (the training loop calls this every step)."""
        self.n_global = n_global
        return self

    def rows(self) -> slice:
        """This rank's rows of the global batch (the same split as the rank's data, see
        ``Communicator.shard``); the first row for a rank without a share, which the gradient
        weighs zero."""
        n, r, k = self.n_global, self.rank, self.size
        lo, hi = n * r // k, n * (r + 1) // k
        return slice(lo, hi) if hi > lo else slice(0, 1)


def draw_rows(
    rng: np.random.Generator | BatchShare, n: int, draw: Callable[[np.random.Generator, int], Array]
) -> Array:
    """``draw(generator, n_rows)`` for a batch of ``n`` rows (its result has ``n_rows`` rows).

    With a :class:`BatchShare` (data-parallel training) it draws for the global batch from the
    shared stream and returns this rank's rows, so every rank's numbers are the ones one process
    would draw for those rows; with a plain generator it is ``draw(rng, n)``.
    """
    if isinstance(rng, BatchShare):
        return draw(rng.generator, rng.n_global)[rng.rows()]
    return draw(rng, n)


class Layer:
    """Base class of every layer: no parameters, no state, the identity.

    A subclass overrides what it has: :meth:`param_specs` and :meth:`bind` (trainable parameters),
    :meth:`state_specs`, :meth:`bind_state`, :meth:`needs_adapt` and :meth:`adapt` (non-trainable
    state fitted from data), :meth:`initialize`, :meth:`output_width`, :meth:`forward`,
    :meth:`describe` and :meth:`config`; then :func:`register_layer` lets model files rebuild it.

    Attributes
    ----------
    owns_output : bool
        True when ``forward`` returns a buffer the layer owns, so the next layer may overwrite it
        (an in-place activation).
    row_blocks : bool
        True when ``forward`` honours ``rows``: the model may then run a large inference batch through
        all layers one block of rows at a time (see :meth:`forward`).
    needs_input_grad : bool
        Set by the model: False for the first layer, whose input (the data) needs no gradient.
    """

    owns_output = False
    row_blocks = False
    #: True when training mode draws from ``rng`` (dropout): such a batch is never split into
    #: blocks. Such a layer draws per row through :func:`draw_rows`, so that data-parallel
    #: training draws what one process would.
    random = False
    #: The input width when the layer fixes it (a model's first layer must), else None.
    n_in: int | None = None
    #: True for a first layer that reads a raw table (:class:`~matnet.layers.TableInput`): the
    #: model then hands its ``encode`` the table given to fit and predict.
    takes_table = False

    def __init__(self) -> None:
        self._buffers: dict[str, Array] = {}
        self.needs_input_grad = True

    # --- parameters and state --------------------------------------------------------------

    def param_specs(self) -> list[tuple[str, tuple[int, ...], bool]]:
        """``(name, shape, decayed)`` for each parameter; ``decayed`` marks weights for L2/decay."""
        return []

    def bind(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """Receive views into the model's flat parameter and gradient vectors."""

    def state_specs(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(name, shape)`` for each piece of non-trainable state (running statistics, a scaler):
        saved with the model, never touched by an optimizer or gradcheck."""
        return []

    def bind_state(self, state: dict[str, Array]) -> None:
        """Receive views into the model's flat state vector (see :meth:`state_specs`)."""

    def initialize(self, rng: np.random.Generator) -> None:
        """Draw initial parameter values into the bound views."""

    def needs_adapt(self) -> bool:
        """True while non-trainable state must still be fitted from data (see :meth:`adapt`)."""
        return False

    def adapt(self, A_prev: Array) -> None:
        """Fit the non-trainable state from this layer's input over the training rows."""

    # --- computation -------------------------------------------------------------------------

    def output_width(self, n_in: int) -> int:
        """Width of the output for an input of width ``n_in``; raises ValueError when the layer
        cannot follow a layer of that width."""
        return n_in

    def forward(
        self,
        A_prev: Array,
        training: bool = False,
        rng: np.random.Generator | None = None,
        rows: slice | None = None,
    ) -> tuple[Array, Backward]:
        """Return ``(A, backward)`` where ``backward(dA)`` returns ``dA_prev`` (None for the first layer).

        Parameters
        ----------
        A_prev : array of shape (n, n_in)
        training : bool
            Training mode (dropout draws masks; inference is deterministic).
        rng : numpy.random.Generator or None
            The source of randomness in training mode.
        rows : slice or None
            Only for layers with :attr:`row_blocks`: ``A_prev`` is the whole batch but only these rows
            are computed into the whole-batch output; the model calls each layer once per block and
            backpropagates through the last call's closure, which sees the whole batch.

        Returns
        -------
        A : array of shape (n, output_width(n_in))
        backward : callable ``dA -> dA_prev``
        """
        return A_prev, lambda dA: dA

    def describe(self, symbols: Symbols) -> Description:
        """The layer's equations, costs and memory for a batch (see :class:`Description`).

        A layer that does not override this is shown as opaque, by name (``LayerNorm: no
        equations given``), never as an identity it may not be; its parameters are still listed,
        so explain's parameter total is the model's.
        """
        A, ell, n = symbols.input, symbols.index, symbols.n
        name = type(self).__name__
        out = f"{A}'"
        width = self.output_width(symbols.n_in) if symbols.n_in else symbols.n_in
        shape_in, shape_out = shape_text(n, symbols.n_in), shape_text(n, width)
        parameters = [
            (f"{p}{ell}", p, f"{p}{ell} {'×'.join(map(str, shape))} = {int(np.prod(shape)):,}")
            for p, shape, _ in self.param_specs()
        ]
        return Description(
            output=out,
            forward=[
                Equation(
                    f"{out} = {name}({A})",
                    f"{shape_in} → {shape_out}",
                    f"{name}: no equations given (opaque)",
                    out,
                )
            ],
            backward=[
                Equation(
                    f"d{A} = {name}′(d{out})",
                    shape_in,
                    f"{name}: no equations given (opaque)",
                    f"d{A}",
                )
            ],
            parameters=parameters,
        )

    @property
    def describes_itself(self) -> bool:
        """False when the layer gives no equations (``describe`` is the base's opaque one)."""
        return type(self).describe is not Layer.describe

    def config(self) -> dict[str, Any]:
        """The constructor arguments as plain JSON values, with ``type`` (used by model files)."""
        return {"type": type(self).__name__}

    # --- buffers ----------------------------------------------------------------------------

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_LAYER_TYPES: dict[str, type[Layer]] = {}


def register_layer(cls: type[Layer]) -> type[Layer]:
    """Let model files and checkpoints rebuild layers of this class (usable as a decorator).

    ``cls(**config)`` (without ``type``) must rebuild the layer from :meth:`Layer.config`.

    Raises
    ------
    ValueError
        When another class is already registered under the same name.
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer needs a Layer subclass, got {cls!r}")
    name = cls.__name__
    if _LAYER_TYPES.get(name, cls) is not cls:
        raise ValueError(f"a different layer class is already registered as {name!r}")
    _LAYER_TYPES[name] = cls
    return cls


def layer_types() -> tuple[str, ...]:
    """The names of every registered layer class."""
    return tuple(_LAYER_TYPES)


def layer_from_config(config: dict[str, Any]) -> Layer:
    """Rebuild a layer from :meth:`Layer.config`; only registered layer types are accepted."""
    if not isinstance(config, dict) or config.get("type") not in _LAYER_TYPES:
        kind = config.get("type") if isinstance(config, dict) else config
        raise ValueError(
            f"unknown layer type {kind!r}; expected one of {', '.join(_LAYER_TYPES)} "
            "(a custom layer must be registered with matnet.register_layer before loading)"
        )
    kwargs = {k: v for k, v in config.items() if k != "type"}
    return _LAYER_TYPES[config["type"]](**kwargs)
