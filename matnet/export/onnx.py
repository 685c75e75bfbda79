"""The whole model as an ONNX graph: preprocessing, every layer, and the loss's link with the
outputs skl2onnx gives a scikit-learn estimator.

Outputs follow skl2onnx's converters for ``MLPClassifier``/``MLPRegressor`` with ``zipmap=False``,
so code that serves a converted scikit-learn model serves a matnet one unchanged:

* a classifier: ``label`` (the model's classes, as int64, string, bool or double tensor; class
  indices as int64 when it has none), shape (N,), and ``probabilities``, float, shape (N, n_classes);
  a single-output binary model gives the two columns ``1 − p, p``. A multi-label model (binary
  cross-entropy over k > 1 outputs) gives 0/1 ``label`` of shape (N, k) and ``probabilities`` (N, k).
* a regressor: ``variable``, shape (N, n_outputs), in the target's own units (the model's target
  scaling undone; ``exp`` of the logits for Poisson).

The input is ``X`` of shape (N, n_features) with a dynamic batch dimension ``N``, in the graph's
dtype (float32 or float64). A table model (first layer :class:`~matnet.layers.TableInput`) takes
instead one input per raw column, named as the column, of shape (N, 1), as skl2onnx gives a
``ColumnTransformer``: a numeric column in the graph's dtype with NaN for a missing cell, a
categorical column as strings, each cell as :func:`~matnet.layers.tabular.category_key` writes it
(stripped text; ``2`` for the number 2; ``True``/``False``). Any text of
:data:`~matnet.layers.tabular.MISSING_TEXT` is a missing cell and any other text outside the
vocabulary an unknown one, as ``predict`` reads them; ONNX has no operator that strips text before
opset 20, so a cell with surrounding spaces, which ``predict`` strips, is an unknown category in the
graph: strip the cells before feeding them.

**Opset.** :data:`DEFAULT_OPSET` is 17: every operator used here (MatMul, Add, Sub, Div, Mul,
Relu, Where, Greater, Sigmoid, Tanh, Exp, Softmax, ArgMax, Gather, Concat, Reshape, Cast, Cos, Sin,
Sqrt, IsNaN, Equal, Unsqueeze, Squeeze, ReduceSum) has had its present meaning since opset 13 (the
axes of Unsqueeze, Squeeze and ReduceSum are inputs from 13 on; ReduceMean's only from 18, so the
ensemble's mean is ReduceSum then Div, which is also numpy's order); 17 came with onnx 1.12 and
ONNX Runtime 1.12 (2022), so current
runtimes all read it without the file asking for anything newer than it uses. Any opset from 13
(Softmax's per-axis meaning) to the installed onnx package's newest can be asked for; the runtime
must know it (the tests run 13 and 17).

**How layers are converted.** A dispatch table here, keyed by the layer's (and the activation's and
the loss's) exact class, with an explicit :class:`~matnet.errors.ConversionError` for any other. The
layers sit below this module in matnet's import order and know nothing of ONNX; one table keeps the
whole mapping readable in one place, and exact classes mean that a subclass that overrides
``forward`` is never exported with its parent's equations.

Each rule writes matnet's own formula, operation for operation, so the graph agrees with
:meth:`matnet.Sequential.predict` to rounding: leaky ReLU as ``Z ⊙ where(Z > 0, 1, α)`` with ``α``
in the graph's dtype (ONNX's ``LeakyRelu`` takes α as a float32 attribute, which would change a
float64 model's answers), GELU in the tanh form matnet uses, ``½ Z (1 + tanh(c (Z + 0.044715 Z³)))``
(not the erf form of ONNX's ``Gelu``). A table model's categories are mapped to their slots by
``ai.onnx.ml``'s LabelEncoder (domain opset 2, string keys to int64 values), the only operator
outside the default domain, imported only when the model has a categorical column.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from matnet import activations as acts
from matnet import losses
from matnet.backend import import_optional, resolve_dtype, to_host
from matnet.errors import ConversionError, NotFittedError
from matnet.io import atomic_write
from matnet.layers import (
    Activation,
    BatchEnsemble,
    Dense,
    Dropout,
    Embedding,
    EnsembleMean,
    OneHot,
    Periodic,
    PeriodicLinear,
    RobustScale,
    Scale,
    Standardize,
    TableInput,
)
from matnet.layers.embeddings import TWO_PI
from matnet.layers.tabular import (
    FIRST_CATEGORY,
    MISSING_SLOT,
    MISSING_TEXT,
    UNKNOWN_SLOT,
    format_text,
)
from matnet.model import Sequential
from matnet.validation import check_int_range

__all__ = ["to_onnx", "register_onnx", "OnnxGraph", "DEFAULT_OPSET", "MIN_OPSET"]

#: The opset written by default (see the module's notes for why).
DEFAULT_OPSET = 17
#: The oldest opset with every operator's present meaning (Softmax over one axis).
MIN_OPSET = 13


class _Graph:
    """The nodes and initializers of one graph, with fresh names for every value.

    A layer's export rule (:func:`register_onnx`) builds its part of the graph through three
    calls: ``g.const(stem, array)`` adds an initializer in the graph's float dtype (``float32`` or
    ``float64``) and returns its name, ``g.op(op_type, inputs, stem, **attributes)`` adds a node
    and returns its output's name, and ``g.name(stem)`` makes a fresh value name.
    """

    def __init__(self, onnx: Any, dtype: type[np.floating]) -> None:
        self.onnx, self.dtype = onnx, dtype
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        #: The graph's inputs: ``X`` unless a TableInput declares one per raw column.
        self.inputs: list[Any] = []
        #: Names that values of the graph may not take (a table's column names are its inputs').
        self.reserved: set[str] = set()
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        while f"{stem}_{self._count}" in self.reserved:  # a column could be named "cols_2"
            self._count += 1
        return f"{stem}_{self._count}"

    @property
    def float_type(self) -> int:
        """The TensorProto element type of the graph's float dtype."""
        return int(self.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(self.dtype)))

    def const(self, stem: str, value: Any, dtype: Any = None) -> str:
        """An initializer holding ``value`` (in the graph's float dtype unless ``dtype`` is given)."""
        array = np.asarray(value, dtype=dtype or self.dtype)
        name = self.name(stem)
        if array.dtype.kind == "U":  # ONNX strings are UTF-8 bytes
            tensor = self.onnx.helper.make_tensor(
                name,
                self.onnx.TensorProto.STRING,
                array.shape,
                [s.encode("utf-8") for s in array.reshape(-1).tolist()],
            )
        else:
            tensor = self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name)
        self.initializers.append(tensor)
        return name

    def op(self, op_type: str, inputs: list[str], stem: str = "", output: str = "", **attrs) -> str:
        """Add one node and return its output's name (``output`` when given)."""
        out = output or self.name(stem or op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], **attrs))
        return out


# --- layers ----------------------------------------------------------------------------------


def _dense(g: _Graph, layer: Any, x: str, index: int) -> str:
    W = g.const(f"W{index}", to_host(layer.W))  # (n_in, n_out), as matnet stores it
    b = g.const(f"b{index}", to_host(layer.b).reshape(-1))
    return g.op("Add", [g.op("MatMul", [x, W], f"XW{index}"), b], f"Z{index}")


def _standardize(g: _Graph, layer: Any, x: str, index: int) -> str:
    if layer.needs_adapt():
        raise NotFittedError(
            f"layer {index}, {layer!r}, has no statistics yet: train the model (or call its "
            "adapt(X)) before exporting it"
        )
    centred = g.op("Sub", [x, g.const(f"mean{index}", to_host(layer.mean).reshape(-1))])
    return g.op("Div", [centred, g.const(f"scale{index}", to_host(layer.scale).reshape(-1))])


def _dropout(g: _Graph, layer: Any, x: str, index: int) -> str:
    return x  # inverted dropout is the identity at inference


def _activation(g: _Graph, layer: Any, x: str, index: int) -> str:
    return _ACTIVATION_RULES[type(layer.fn)](g, layer.fn, x)


def _leaky_relu(g: _Graph, fn: Any, x: str) -> str:
    factor = g.op(
        "Where",
        [
            g.op("Greater", [x, g.const("zero", 0.0)]),
            g.const("one", 1.0),
            g.const("alpha", fn.alpha),
        ],
    )
    return g.op("Mul", [x, factor], "leaky_relu")


def _gelu(g: _Graph, fn: Any, x: str) -> str:
    # ½ Z (1 + tanh(c (Z + 0.044715 Z³))), in matnet.functional.gelu's order of operations
    cube = g.op("Mul", [g.op("Mul", [x, x]), x])
    inner = g.op("Add", [x, g.op("Mul", [g.const("k", 0.044715), cube])])
    t = g.op("Tanh", [g.op("Mul", [g.const("c", np.sqrt(2.0 / np.pi)), inner])])
    half_x = g.op("Mul", [g.const("half", 0.5), x])
    return g.op("Mul", [half_x, g.op("Add", [g.const("one", 1.0), t])], "gelu")


def _ints(g: _Graph, stem: str, values: list[int]) -> str:
    """An int64 initializer (shapes, axes, indices)."""
    return g.const(stem, values, np.int64)


def _scale(g: _Graph, layer: Any, x: str, index: int) -> str:
    s = g.const(f"s{index}", to_host(layer.s))
    if layer.gain != 1:  # matnet's order: x · (gain · s)
        s = g.op("Mul", [s, g.const(f"gain{index}", layer.gain)])
    return g.op("Mul", [x, s], f"scaled{index}")


def _periodic(g: _Graph, layer: Any, x: str, index: int) -> str:
    # matnet: V = (2π X)[:, :, None] ⊙ F[None] (n, d, m); [x, cos V, sin V] along the last axis,
    # then reshaped row-major to (n, d·block), so column j's block stays contiguous.
    two_pi_x = g.op("Mul", [g.const("two_pi", TWO_PI), x])
    x3 = g.op("Unsqueeze", [two_pi_x, _ints(g, "axis2", [2])])
    V = g.op("Mul", [x3, g.const(f"F{index}", to_host(layer.F))], f"V{index}")
    parts = [g.op("Cos", [V]), g.op("Sin", [V])]
    if layer.include_input:
        parts.insert(0, g.op("Unsqueeze", [x, _ints(g, "axis2", [2])]))
    joined = g.op("Concat", parts, axis=2)
    width = [-1, layer.n_in * layer.block]
    return g.op("Reshape", [joined, _ints(g, "shape", width)], f"E{index}")


def _periodic_linear(g: _Graph, layer: Any, x: str, index: int) -> str:
    # matnet: V = 2π X[:, :, None] ⊙ f + φ (n, d, m); H = cos V · L_j + c_j per column as one
    # batched MatMul (n, d, 1, m) · (d, m, o) → (n, d, 1, o); [x, H] per column, row-major;
    # columns past the first d (layer.d) pass through after the embedded blocks.
    d, o = layer.d, layer.o
    rest = list(range(d, layer.n_in))
    if rest:
        x, passed = _columns(g, x, list(range(d))), _columns(g, x, rest)
    x3 = g.op("Unsqueeze", [x, _ints(g, "axis2", [2])])
    two_pi_x3 = g.op("Mul", [g.const("two_pi", TWO_PI), x3])  # matnet's order: (2π x) · f
    V = g.op("Add", [g.op("Mul", [two_pi_x3, g.const(f"f{index}", to_host(layer.f))]),
                     g.const(f"phi{index}", to_host(layer.phi))], f"V{index}")  # fmt: skip
    C4 = g.op("Unsqueeze", [g.op("Cos", [V]), _ints(g, "axis2", [2])])
    H4 = g.op("MatMul", [C4, g.const(f"L{index}", to_host(layer.L))])
    H = g.op("Add", [g.op("Reshape", [H4, _ints(g, f"ndo{index}", [-1, d, o])]),
                     g.const(f"c{index}", to_host(layer.c))], f"H{index}")  # fmt: skip
    joined = g.op("Concat", [x3, H], axis=2)
    if not rest:
        return g.op(
            "Reshape", [joined, _ints(g, f"shape{index}", [-1, d * layer.block])], f"E{index}"
        )
    blocks = g.op("Reshape", [joined, _ints(g, f"shape{index}", [-1, d * layer.block])])
    return g.op("Concat", [blocks, passed], f"E{index}", axis=1)


def _batch_ensemble(g: _Graph, layer: Any, x: str, index: int) -> str:
    # matnet: A3 (n, 1 or k, i) ⊙ R (k, i) → (n, k, i); · W → (n, k, o); ⊙ S + b; members side
    # by side (n, k·o). A batched MatMul is the same product row for row as matnet's stacked one.
    k, i, o = layer.k, layer.n_units, layer.n_out
    if layer.shared_input:
        a3 = g.op("Unsqueeze", [x, _ints(g, "axis1", [1])])
    else:
        a3 = g.op("Reshape", [x, _ints(g, "members", [-1, k, i])])
    ar = g.op("Mul", [a3, g.const(f"r{index}", to_host(layer.R))], f"AR{index}")
    p = g.op("MatMul", [ar, g.const(f"W{index}", to_host(layer.W))], f"P{index}")
    ps = g.op("Mul", [p, g.const(f"s{index}", to_host(layer.S))])
    z = g.op("Add", [ps, g.const(f"b{index}", to_host(layer.b))])
    return g.op("Reshape", [z, _ints(g, "side_by_side", [-1, k * o])], f"Z{index}")


def _ensemble_mean(g: _Graph, layer: Any, x: str, index: int) -> str:
    # numpy's mean is the sum divided by the count; ReduceSum takes its axes as an input from
    # opset 13 on (ReduceMean only from 18), so one form serves every opset the exporter writes.
    # Reshape's 0 keeps the batch size and −1 infers the width c of one member.
    members = g.op("Reshape", [x, _ints(g, "members", [0, layer.k, -1])])
    total = g.op("ReduceSum", [members, _ints(g, "axis1", [1])], keepdims=0)
    return g.op("Div", [total, g.const("k", float(layer.k))], f"Y{index}")


def _columns(g: _Graph, x: str, columns: list[int]) -> str:
    """The columns ``x[:, columns]`` (n, len(columns))."""
    return g.op("Gather", [x, _ints(g, "columns", columns)], "cols", axis=1)


def _check_adapted(layer: Any, index: int) -> None:
    if layer.needs_adapt():
        raise NotFittedError(
            f"layer {index}, {layer!r}, has no statistics yet: train the model (or call its "
            "adapt(X)) before exporting it"
        )


def _robust_scale(g: _Graph, layer: Any, x: str, index: int) -> str:
    # matnet: [x[:, rest], smooth_clip(s ⊙ (where(isnan, m, x) − m)), isnan(x[:, indicators])]
    _check_adapted(layer, index)
    own = layer.owned
    parts = [_columns(g, x, layer.passthrough)] if layer.passthrough else []
    values = _columns(g, x, own)
    m = g.const(f"median{index}", to_host(layer.median)[:, own])
    s = g.const(f"inv_scale{index}", to_host(layer.inv_scale)[:, own])
    filled = g.op("Where", [g.op("IsNaN", [values]), m, values])
    u = g.op("Mul", [g.op("Sub", [filled, m]), s], f"U{index}")
    third = g.op("Div", [u, g.const("three", 3.0)])
    root = g.op("Sqrt", [g.op("Add", [g.const("one", 1.0), g.op("Mul", [third, third])])])
    parts.append(g.op("Div", [u, root], "clipped"))
    if layer.indicators:
        gaps = g.op("IsNaN", [_columns(g, x, layer.indicators)])
        parts.append(g.op("Cast", [gaps], "indicators", to=g.float_type))
    return g.op("Concat", parts, f"R{index}", axis=1) if len(parts) > 1 else parts[0]


def _slots(g: _Graph, x: str, j: int) -> str:
    """Column ``j``'s slot numbers as an int64 column (n, 1): Cast truncates as matnet's astype
    does."""
    return g.op("Cast", [_columns(g, x, [j])], "slot", to=int(g.onnx.TensorProto.INT64))


def _one_hot(g: _Graph, layer: Any, x: str, index: int) -> str:
    # slot c → row e_c: the (n, 1) slots compared with the constant row 0..size−1
    parts = [_columns(g, x, layer.passthrough)] if layer.passthrough else []
    for j, size in zip(layer.owned, layer.sizes, strict=True):
        hot = g.op("Equal", [_slots(g, x, j), g.const("slots", np.arange(size), np.int64)])
        parts.append(g.op("Cast", [hot], "onehot", to=g.float_type))
    return g.op("Concat", parts, f"H{index}", axis=1) if len(parts) > 1 else parts[0]


def _embedding(g: _Graph, layer: Any, x: str, index: int) -> str:
    # onehot(c) · E as matnet computes it: the row lookup E[c]
    parts = [_columns(g, x, layer.passthrough)] if layer.passthrough else []
    for k, j in enumerate(layer.owned):
        table = g.const(f"E{index}_{k}", to_host(layer.E[k]))
        slot = g.op("Squeeze", [_slots(g, x, j), _ints(g, "axis1", [1])])  # (n,): rows (n, dim)
        parts.append(g.op("Gather", [table, slot], "embedded", axis=0))
    return g.op("Concat", parts, f"M{index}", axis=1) if len(parts) > 1 else parts[0]


#: The output names, which no input column may take.
_OUTPUT_NAMES = ("label", "probabilities", "variable")


def _table_input(g: _Graph, layer: Any, x: str, index: int) -> str:
    """One graph input per raw column (N, 1), as skl2onnx gives a ColumnTransformer: a numeric
    column in the graph's float type (NaN where missing), a categorical one as strings, mapped to
    its slot by an ``ai.onnx.ml`` LabelEncoder. The slots are those of TableInput's encode then
    forward, in one step: a missing cell (any text of MISSING_TEXT) → 0, a category the training
    rows never showed (or showed fewer than ``min_count`` times) or a text outside the vocabulary
    → 1, the k-th known category → 2 + k. The columns concatenated are the code matrix that the
    layers after it read."""
    _check_adapted(layer, index)
    helper, string = g.onnx.helper, g.onnx.TensorProto.STRING
    g.reserved.update(layer.names)
    known = to_host(layer.known)
    columns, offset = [], 0
    sizes = dict(zip(layer.categorical, layer.sizes, strict=True))
    for j, column in enumerate(layer.columns):
        name = column["name"]
        if column["kind"] == "numeric":
            # A column read in a format (decimal commas, dates, yes/no) takes the number the
            # model reads its cell as; the graph's input says which.
            doc = f"as matnet reads {format_text(column['format'])}" if column.get("format") else ""
            g.inputs.append(helper.make_tensor_value_info(name, g.float_type, ["N", 1], doc))
            columns.append(name)
            continue
        g.inputs.append(helper.make_tensor_value_info(name, string, ["N", 1]))
        # encode reads a missing cell before it looks the text up, so missing texts map to the
        # missing slot even where the vocabulary holds them.
        slots = dict.fromkeys(sorted(MISSING_TEXT), MISSING_SLOT)
        for k, category in enumerate(column["categories"]):
            slot = FIRST_CATEGORY + k
            seen = known[offset + slot] > 0
            slots.setdefault(str(category), slot if seen else UNKNOWN_SLOT)
        offset += sizes[j]
        encoded = g.op(
            "LabelEncoder",
            [name],
            "slot",
            domain="ai.onnx.ml",
            keys_strings=list(slots),
            values_int64s=list(slots.values()),
            default_int64=UNKNOWN_SLOT,
        )
        columns.append(g.op("Cast", [encoded], "code", to=g.float_type))
    return g.op("Concat", columns, f"C{index}", axis=1) if len(columns) > 1 else columns[0]


#: The public name of the graph builder a layer's rule receives.
OnnxGraph = _Graph

_LAYER_RULES: dict[type, Callable[[_Graph, Any, str, int], str]] = {
    Dense: _dense,
    Standardize: _standardize,
    Dropout: _dropout,
    Activation: _activation,
    Scale: _scale,
    Periodic: _periodic,
    PeriodicLinear: _periodic_linear,
    BatchEnsemble: _batch_ensemble,
    EnsembleMean: _ensemble_mean,
    RobustScale: _robust_scale,
    OneHot: _one_hot,
    Embedding: _embedding,
    TableInput: _table_input,
}


def register_onnx(
    layer_type: type,
) -> Callable[[Callable[[_Graph, Any, str, int], str]], Callable[[_Graph, Any, str, int], str]]:
    """Declare how a layer type is written in ONNX: ``rule(g, layer, x, index) -> output name``,
    where ``x`` names the layer's input (n, n_in) and ``g`` is an :class:`OnnxGraph`.

    Use it beside the layer (``@register_onnx(LayerNorm)`` in the file that defines it), so a
    layer registered from a user's own file exports like a built-in one. A layer class may instead
    define a method ``to_onnx(self, g, x, index) -> str``.

    Examples
    --------
    >>> @register_onnx(LayerNorm)                       # doctest: +SKIP
    ... def _(g, layer, x, index):
    ...     mean = g.op("ReduceMean", [x], axes=[1], keepdims=1)
    ...     ...
    """

    def decorate(rule: Callable[[_Graph, Any, str, int], str]) -> Callable:
        _LAYER_RULES[layer_type] = rule
        return rule

    return decorate


def _layer_rule(layer: Any) -> Callable[[_Graph, Any, str, int], str] | None:
    """The layer's own ``to_onnx`` method, else the rule registered for its type, else None."""
    method = getattr(type(layer), "to_onnx", None)
    if method is not None:
        return lambda g, layer, x, index: method(layer, g, x, index)
    return _LAYER_RULES.get(type(layer))


_ACTIVATION_RULES: dict[type[acts.Activation], Callable[[_Graph, Any, str], str]] = {
    acts.Identity: lambda g, fn, x: x,
    acts.ReLU: lambda g, fn, x: g.op("Relu", [x]),
    acts.LeakyReLU: _leaky_relu,
    acts.Sigmoid: lambda g, fn, x: g.op("Sigmoid", [x]),
    acts.Tanh: lambda g, fn, x: g.op("Tanh", [x]),
    acts.GELU: _gelu,
    acts.Softmax: lambda g, fn, x: g.op("Softmax", [x], axis=1),
}


# --- the loss's link and the outputs ---------------------------------------------------------


def _labels(g: _Graph, indices: str, labels: np.ndarray | None) -> str:
    """``label``: the class labels at ``indices`` (int64), or the indices themselves."""
    if labels is None:
        return g.op("Identity", [indices], output="label")
    return g.op("Gather", [g.const("classes", labels, labels.dtype), indices], output="label")


def _softmax_outputs(g: _Graph, model: Sequential, z: str) -> list[tuple[str, Any, list]]:
    g.op("Softmax", [z], axis=1, output="probabilities")
    _labels(g, g.op("ArgMax", [z], "class_index", axis=1, keepdims=0), _class_labels(model))
    k = model.n_outputs
    return [("label", None, ["N"]), ("probabilities", g.dtype, ["N", k])]


def _binary_outputs(g: _Graph, model: Sequential, z: str) -> list[tuple[str, Any, list]]:
    k = model.n_outputs
    p = g.op("Sigmoid", [z], "p")
    decided = g.op("Cast", [g.op("Greater", [z, g.const("zero", 0.0)])], "decided", to=7)
    if k > 1:  # multi-label: k independent 0/1 labels
        g.op("Identity", [decided], output="label")
        g.op("Identity", [p], output="probabilities")
        return [("label", np.int64, ["N", k]), ("probabilities", g.dtype, ["N", k])]
    q = g.op("Sub", [g.const("one", 1.0), p], "q")
    g.op("Concat", [q, p], output="probabilities", axis=1)
    flat = g.op("Reshape", [decided, g.const("flat", [-1], np.int64)], "class_index")
    _labels(g, flat, _class_labels(model))
    return [("label", None, ["N"]), ("probabilities", g.dtype, ["N", 2])]


def _regression_outputs(g: _Graph, model: Sequential, z: str) -> list[tuple[str, Any, list]]:
    values = g.op("Exp", [z], "rate") if type(model.loss) is losses.PoissonLoss else z
    if model.target_scaling is not None:
        mean, scale = model.target_scaling
        scaled = g.op("Mul", [values, g.const("target_scale", np.reshape(scale, -1))])
        values = g.op("Add", [scaled, g.const("target_mean", np.reshape(mean, -1))])
    g.op("Identity", [values], output="variable")
    return [("variable", g.dtype, ["N", model.n_outputs])]


_LOSS_RULES: dict[
    type[losses.Loss], Callable[[_Graph, Sequential, str], list[tuple[str, Any, list]]]
] = {
    losses.SoftmaxCrossEntropy: _softmax_outputs,
    losses.BinaryCrossEntropy: _binary_outputs,
    losses.MeanSquaredError: _regression_outputs,
    losses.PoissonLoss: _regression_outputs,
}


def _class_labels(model: Sequential) -> np.ndarray | None:
    """The labels ``predict`` answers with (None: class indices), as an ONNX-ready array."""
    labels = model.task.class_labels(model)  # the model's own rule: predict and the graph agree
    if labels is None:
        return None
    if labels.dtype.kind not in "iUbf":
        raise ConversionError(
            f"the model's classes {model.classes!r} mix kinds that no ONNX tensor holds; give it "
            "classes that are all integers or all strings (model.classes = [...]) before exporting"
        )
    return labels.astype(np.int64) if labels.dtype.kind == "i" else labels


# --- the entry point -------------------------------------------------------------------------


def _check_convertible(model: Sequential) -> Callable[[_Graph, Sequential, str], list]:
    """Raise before any work for the first part of the model that has no rule; return the
    loss's rule."""
    for index, layer in enumerate(model.layers):
        if isinstance(layer, TableInput):
            _check_table_input(layer, index)
        if _layer_rule(layer) is None:
            raise ConversionError(
                f"layer {index}, {layer!r} ({type(layer).__name__}), has no ONNX export rule; "
                f"matnet exports {', '.join(cls.__name__ for cls in _LAYER_RULES)} layers (a "
                "layer of your own declares its rule with matnet.export.register_onnx)"
            )
        if isinstance(layer, Activation) and type(layer.fn) not in _ACTIVATION_RULES:
            raise ConversionError(
                f"layer {index}, Activation({layer.fn.name}), has no ONNX export rule; matnet "
                "exports the built-in activations "
                + ", ".join(cls.name for cls in _ACTIVATION_RULES)
            )
    if model.loss is None:
        raise ConversionError(
            "the model has no loss, so its outputs have no link or meaning to export; pass "
            "loss=... to the model (or train it with fit) first"
        )
    if type(model.loss) not in _LOSS_RULES:
        raise ConversionError(
            f"the loss {model.loss.name!r} has no ONNX export rule; matnet exports the outputs of "
            + ", ".join(cls.name for cls in _LOSS_RULES)
        )
    return _LOSS_RULES[type(model.loss)]


def _check_table_input(layer: TableInput, index: int) -> None:
    """A TableInput is exported as the graph's inputs, so it must come first and its column
    names must not be the outputs'."""
    if index:
        raise ConversionError(
            f"layer {index}, {layer!r}, reads raw cells, which only the model's first layer can "
            "take; put the TableInput first (as matnet.tabular.preprocessor does)"
        )
    if "" in layer.names:  # ONNX reads an empty input name as "no input"
        raise ConversionError(
            f"the table's column {layer.names.index('')} has an empty name, which an ONNX graph "
            "input cannot have; name the column in the training table and train the model again"
        )
    taken = [name for name in layer.names if name in _OUTPUT_NAMES]
    if taken:
        raise ConversionError(
            f"the table's column {taken[0]!r} would be an input of the ONNX graph with the name "
            f"of one of its outputs ({', '.join(_OUTPUT_NAMES)}); rename the column in the "
            "training table and train the model again"
        )


def to_onnx(
    model: Sequential,
    path: str | os.PathLike | None = None,
    *,
    dtype: Any = None,
    opset: int = DEFAULT_OPSET,
) -> Any:
    """Export the whole model (preprocessing, layers, the loss's link) as an ONNX graph.

    Parameters
    ----------
    model : Sequential
        A model with a loss (its task decides the outputs) and fitted preprocessing.
    path : str or os.PathLike, optional
        Where to write the ``.onnx`` file (atomically); nothing is written when None.
    dtype : {"float32", "float64"}, optional
        The graph's float type, of ``X`` and every float output; default the model's dtype.
    opset : int
        The ONNX opset, from 13 to the installed onnx package's newest (default 17; see the
        module's notes).

    Returns
    -------
    onnx.ModelProto
        Input ``X`` (N, n_features), or for a table model one (N, 1) input per raw column (see
        the module's notes); outputs ``label`` (N,) and ``probabilities`` (N, n_classes) for
        a classifier, ``variable`` (N, n_outputs) for a regressor. ``metadata_props`` holds the
        model's ``feature_names`` and ``classes`` as JSON.

    Raises
    ------
    ConversionError
        For a layer, activation or loss without an export rule (naming it), class labels no ONNX
        tensor can hold, a TableInput that is not the first layer or a raw column named as an
        output; raised before anything is built or written.
    NotFittedError
        When a preprocessing layer (Standardize, TableInput, RobustScale) has no statistics yet.
    OptionalDependencyError
        When the ``onnx`` package is missing (``pip install 'matnet[onnx]'``).
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"to_onnx needs a matnet Sequential model, got {type(model).__name__}")
    graph_dtype = resolve_dtype(model.dtype if dtype is None else dtype)
    onnx = import_optional("onnx", "onnx", "ONNX export")
    newest = int(onnx.defs.onnx_opset_version())
    check_int_range("opset", opset, MIN_OPSET, newest, " (the installed onnx package's newest)")
    outputs_rule = _check_convertible(model)
    _class_labels(model)  # raises for labels no tensor holds
    g = _Graph(onnx, graph_dtype)
    x = "X"
    for index, layer in enumerate(model.layers):
        rule = _layer_rule(layer)
        assert rule is not None  # checked by _check_convertible
        x = rule(g, layer, x, index)
    if not g.inputs:  # no TableInput: the feature matrix
        g.inputs.append(
            onnx.helper.make_tensor_value_info("X", g.float_type, ["N", model.n_features])
        )
    outputs = outputs_rule(g, model, x)
    proto = _model_proto(onnx, g, model, outputs, int(opset))
    if path is not None:
        atomic_write(path, proto.SerializeToString())
    return proto


def _model_proto(
    onnx: Any, g: _Graph, model: Sequential, outputs: list[tuple[str, Any, list]], opset: int
) -> Any:
    """The checked ModelProto around the graph's nodes, with typed input and outputs."""
    from matnet import __version__

    helper = onnx.helper
    labels = _class_labels(model)
    label_type = onnx.TensorProto.INT64 if labels is None else _tensor_type(onnx, labels.dtype)
    values = [
        helper.make_tensor_value_info(
            name,
            label_type if dtype is None else helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
            shape,
        )
        for name, dtype, shape in outputs
    ]
    graph = helper.make_graph(
        g.nodes,
        "matnet",
        g.inputs,
        values,
        g.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    if any(node.domain == "ai.onnx.ml" for node in g.nodes):
        # LabelEncoder's string keys and int64 values, as ONNX Runtime has read them since 2019
        opsets.append(helper.make_opsetid("ai.onnx.ml", 2))
    proto = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="matnet",
        producer_version=__version__,
        doc_string=f"matnet {model!r} exported with loss {model.loss.name!r}",  # type: ignore[union-attr]
        # The oldest IR version that carries this opset, so older runtimes read the file.
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    meta = {"feature_names": model.feature_names, "classes": model.classes}
    helper.set_model_props(proto, {k: json.dumps(v) for k, v in meta.items() if v is not None})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _tensor_type(onnx: Any, dtype: np.dtype) -> int:
    if dtype.kind == "U":
        return int(onnx.TensorProto.STRING)
    return int(onnx.helper.np_dtype_to_tensor_dtype(dtype))
