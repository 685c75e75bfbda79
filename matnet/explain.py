"""``explain``: the article's derivation, written out for a real model and a real batch.

For every layer it prints the forward equation and, in reverse order, the backward equations, each with
the actual shapes (``Z1 = A0 · W1 + b1    (8×64)·(64×32) + (1×32) → (8×32)``); then where the
floating-point operations of one training step go, the parameter count, and the memory the batch's
activations take. With ``values=True`` it runs one real forward and backward pass through the model's own
layers and prints every matrix as it is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from matnet.layers import Activation, Dense, Dropout
from matnet.losses import BinaryCrossEntropy, MeanSquaredError, SoftmaxCrossEntropy
from matnet.model import Sequential

__all__ = ["explain"]


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + "×".join(str(int(d)) for d in shape) + ")"


def _count(n: int) -> str:
    return f"{n:,}"


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class _Step:
    """One equation: its left-hand name, the formula text, the shapes text, an optional note."""

    def __init__(self, name: str, formula: str, shapes: str, note: str = "") -> None:
        self.name, self.formula, self.shapes, self.note = name, formula, shapes, note

    def render(self, width: int, shapes_width: int) -> str:
        line = f"  {self.formula:<{width}}{self.shapes:<{shapes_width}}"
        return f"{line}  {self.note}" if self.note else line.rstrip()


def _plan(model: Sequential, n: int) -> tuple[list[_Step], list[_Step], str, list[str]]:
    """The forward and backward equations for a batch of ``n`` rows.

    Returns the forward steps, the backward steps, the name of the model's output and the name of
    every array the forward pass keeps for the backward pass.
    """
    forward: list[_Step] = []
    backward: list[_Step] = []
    current, width, ell = "A0", model.n_features, 0
    for layer in model.layers:
        if isinstance(layer, Dense):
            ell += 1
            i, o = layer.n_in, layer.n_out
            Zname = f"Z{ell}"
            forward.append(
                _Step(
                    Zname,
                    f"{Zname} = {current} · W{ell} + b{ell}",
                    f"{_shape((n, i))}·{_shape((i, o))} + {_shape((1, o))} → {_shape((n, o))}",
                )
            )
            grads = [
                _Step(
                    f"dW{ell}",
                    f"dW{ell} = {current}ᵀ · d{Zname}",
                    f"{_shape((i, n))}·{_shape((n, o))} → {_shape((i, o))}",
                    f"{n} outer products, one per row, summed" if n > 1 else "one outer product",
                ),
                _Step(
                    f"db{ell}",
                    f"db{ell} = Σrows d{Zname}",
                    f"{_shape((n, o))} → {_shape((1, o))}",
                    "sum over the batch",
                ),
            ]
            if layer.needs_input_grad:
                grads.append(
                    _Step(
                        f"d{current}",
                        f"d{current} = d{Zname} · W{ell}ᵀ",
                        f"{_shape((n, o))}·{_shape((o, i))} → {_shape((n, i))}",
                        f"the error sent back through W{ell}",
                    )
                )
            else:
                grads.append(
                    _Step(
                        "",
                        f"(no d{current} = d{Zname} · W{ell}ᵀ)",
                        "",
                        f"the input needs no gradient: saves {_count(2 * n * o * i)} flops",
                    )
                )
            backward[:0] = grads
            current, width = Zname, o
        elif isinstance(layer, Activation):
            name = f"A{ell}" if current.startswith("Z") else f"{current}'"
            fn = layer.fn.name
            forward.append(
                _Step(
                    name,
                    f"{name} = {fn}({current})",
                    f"{_shape((n, width))} → {_shape((n, width))}",
                )
            )
            if fn == "softmax":
                formula = f"d{current} = {name} ⊙ (d{name} − Σcols d{name} ⊙ {name})"
            elif fn == "identity":
                formula = f"d{current} = d{name}"
            else:
                formula = f"d{current} = d{name} ⊙ {fn}′({current})"
            shapes = f"{_shape((n, width))} ⊙ {_shape((n, width))} → {_shape((n, width))}"
            backward.insert(0, _Step(f"d{current}", formula, shapes))
            current = name
        elif isinstance(layer, Dropout):
            name = f"D{ell}"
            p = layer.rate
            forward.append(
                _Step(
                    name,
                    f"{name} = {current} ⊙ M{ell}",
                    f"{_shape((n, width))} ⊙ {_shape((n, width))} → {_shape((n, width))}",
                    f"M{ell} = (U ≥ {p:g}) / {1 - p:g}, U uniform: inverted dropout",
                )
            )
            backward.insert(
                0,
                _Step(
                    f"d{current}",
                    f"d{current} = d{name} ⊙ M{ell}",
                    f"{_shape((n, width))} ⊙ {_shape((n, width))} → {_shape((n, width))}",
                ),
            )
            current = name
    out = current
    k = model.n_outputs
    loss = model.loss
    nk = _shape((n, k))
    if isinstance(loss, SoftmaxCrossEntropy):
        forward += [
            _Step("P", f"P = softmax({out})", f"{nk} → {nk}", "row-wise, from the logits"),
            _Step("L", "L = −(1/n) Σᵢ log P[i, yᵢ]", f"{nk} → scalar", "mean cross-entropy"),
        ]
        backward.insert(
            0,
            _Step(
                f"d{out}",
                f"d{out} = (P − Y) / n",
                f"{nk} − {nk} → {nk}",
                "Y one-hot; softmax with cross-entropy only",
            ),
        )
    elif isinstance(loss, BinaryCrossEntropy):
        forward += [
            _Step("P", f"P = σ({out})", f"{nk} → {nk}", "elementwise sigmoid"),
            _Step(
                "L",
                "L = −(1/n) Σ Y log P + (1−Y) log(1−P)",
                f"{nk} → scalar",
                "binary cross-entropy",
            ),
        ]
        backward.insert(
            0,
            _Step(
                f"d{out}",
                f"d{out} = (P − Y) / n",
                f"{nk} − {nk} → {nk}",
                "sigmoid with binary cross-entropy only",
            ),
        )
    elif isinstance(loss, MeanSquaredError):
        forward.append(
            _Step("L", f"L = Σ ({out} − Y)² / (n·k)", f"{nk} → scalar", "mean squared error")
        )
        backward.insert(
            0,
            _Step(
                f"d{out}",
                f"d{out} = 2 ({out} − Y) / (n·k)",
                f"{nk} − {nk} → {nk}",
                "identity output with squared error",
            ),
        )
    else:
        forward.append(
            _Step("L", f"L = loss({out})", f"{nk} → scalar", "the model has no loss yet")
        )
        backward.insert(0, _Step(f"d{out}", f"d{out} = ∂L/∂{out}", f"{nk}"))
    return forward, backward, out, _kept_arrays(model, n)


def _kept_arrays(model: Sequential, n: int) -> list[str]:
    """What a training forward pass holds for the backward pass, with matnet's buffer reuse."""
    kept = [f"A0 {_shape((n, model.n_features))} (the batch)"]
    width, ell = model.n_features, 0
    for layer in model.layers:
        if isinstance(layer, Dense):
            ell += 1
            width = layer.n_out
            kept.append(f"Z{ell} {_shape((n, width))}")
        elif isinstance(layer, Activation):
            if layer.inplace and layer.fn.overwrites_input:
                kept[-1] += f" overwritten by A{ell} = {layer.fn.name}(Z{ell}) in place"
            else:
                kept.append(f"A{ell} {_shape((n, width))}")
        elif isinstance(layer, Dropout) and layer.rate > 0:
            kept.append(f"M{ell} {_shape((n, width))}, D{ell} {_shape((n, width))}")
    return kept


def _flops(model: Sequential, n: int) -> list[tuple[str, int, int, int]]:
    """Per Dense layer: matrix-product flops of the forward pass, the weight and the input gradients."""
    rows = []
    for ell, layer in enumerate(model.dense_layers, start=1):
        product = 2 * n * layer.n_in * layer.n_out  # (m×k)·(k×p) costs 2·m·k·p
        rows.append(
            (
                f"layer {ell}  ({layer.n_in}→{layer.n_out})",
                product,
                product,
                product if layer.needs_input_grad else 0,
            )
        )
    return rows


def _activation_numbers(model: Sequential, n: int) -> tuple[int, int]:
    """Numbers held by the forward pass for the backward pass, and by the backward pass's gradients."""
    forward = n * model.n_features
    width = model.n_features
    for layer in model.layers:
        if isinstance(layer, Dense):
            width = layer.n_out
            forward += n * width
        elif isinstance(layer, Activation) and not (layer.inplace and layer.fn.overwrites_input):
            forward += n * width
        elif isinstance(layer, Dropout) and layer.rate > 0:
            forward += 2 * n * width
    backward = n * model.n_outputs  # dZ of the output, from the loss
    for layer in model.dense_layers:
        if layer.needs_input_grad:
            backward += n * layer.n_in
    return forward, backward


def _random_batch(
    model: Sequential, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    X = rng.standard_normal((n, model.n_features))
    loss = model.loss
    if isinstance(loss, SoftmaxCrossEntropy):
        y = rng.integers(0, model.n_outputs, size=n)
    elif isinstance(loss, BinaryCrossEntropy):
        y = rng.integers(0, 2, size=(n, model.n_outputs))
    elif isinstance(loss, MeanSquaredError):
        y = rng.standard_normal((n, model.n_outputs))
    else:
        y = None
    return X, y


def _run(
    model: Sequential, X: np.ndarray, y: Any, seed: int
) -> tuple[dict[str, np.ndarray], float | None]:
    """One training step's forward and backward through the model's own layers, every array copied
    as it is produced (layers reuse and overwrite their buffers). The model's gradients are restored."""
    from matnet.validation import check_features, check_targets

    X = check_features(X, model.n_features, model.dtype)
    rng = np.random.default_rng(seed)
    saved = model.flat_grads.copy()
    values: dict[str, np.ndarray] = {"A0": X.copy()}
    closures = []
    A, current, ell = X, "A0", 0
    try:
        for layer in model.layers:
            A, backward = layer.forward(A, training=True, rng=rng)
            if isinstance(layer, Dense):
                ell += 1
                current = f"Z{ell}"
                values[f"W{ell}"], values[f"b{ell}"] = layer.W.copy(), layer.b.copy()
            elif isinstance(layer, Activation):
                current = f"A{ell}" if current.startswith("Z") else f"{current}'"
            else:
                current = f"D{ell}"
            values[current] = A.copy()
            closures.append((layer, current, backward))
        loss = model.loss
        if loss is None or y is None:
            return values, None
        Y = check_targets(loss, y, X.shape[0], model.n_outputs, model.dtype)
        values["Y"] = Y.copy() if Y.ndim == 2 else np.eye(model.n_outputs, dtype=model.dtype)[Y]
        if not isinstance(loss, MeanSquaredError):
            values["P"] = loss.link(A)
        value, dZ = loss(A, Y)
        values["L"] = np.asarray(value)
        values[f"d{current}"] = dZ.copy()
        dense_index = ell
        inputs = [name for _, name, _ in closures]
        inputs = ["A0", *inputs[:-1]]
        for (layer, _, backward), before in zip(reversed(closures), reversed(inputs), strict=True):
            dZ = backward(dZ)
            if isinstance(layer, Dense):
                values[f"dW{dense_index}"], values[f"db{dense_index}"] = (
                    layer.dW.copy(),
                    layer.db.copy(),
                )
                dense_index -= 1
            if dZ is not None:
                values[f"d{before}"] = dZ.copy()
        return values, value
    finally:
        model.flat_grads[...] = saved


def _matrix(name: str, array: np.ndarray) -> str:
    text = np.array2string(
        np.asarray(array), precision=4, suppress_small=True, max_line_width=100, threshold=200
    )
    pad = " " * (6 + len(name) + 3)
    body = text.replace("\n", "\n" + pad)
    return f"      {name} = {body}"


def explain(
    model: Sequential,
    X: Any = 8,
    y: Any = None,
    *,
    values: bool = False,
    seed: int = 0,
    print_fn: Callable[[str], None] | None = print,
) -> str:
    """Print (and return) the article's equations for ``model`` on a batch, with the actual shapes.

    Parameters
    ----------
    model : Sequential
    X : int or array-like of shape (n, n_features)
        A batch, or just its size ``n`` (default 8).
    y : array-like, optional
        Targets for the batch (class indices, 0/1 labels or values, as for :func:`matnet.fit`); with
        ``values=True`` and none given, random targets are drawn from ``seed``.
    values : bool
        Also run one real forward and backward pass (training mode) through the model's own layers and
        print every matrix. Meant for small sizes; NumPy abbreviates arrays of more than 200 numbers.
        The model's parameters and stored gradients are left unchanged.
    seed : int
        Seeds the random batch (when ``X`` is a size) and the dropout masks.
    print_fn : callable or None
        Where the text goes (``print`` by default; None prints nothing).

    Returns
    -------
    str
        The explanation: forward and backward equations with shapes, the floating-point operations
        of one training step by kind, the parameter count and the memory of one batch's activations.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"explain() needs a matnet Sequential model, got {type(model).__name__}")
    if isinstance(X, (int, np.integer)) and not isinstance(X, bool):
        if X < 1:
            raise ValueError(f"batch size {X} must be a positive integer")
        n = int(X)
        batch = None
    else:
        batch = np.asarray(X)
        if batch.ndim != 2:
            raise ValueError(f"X must be 2-D (n, {model.n_features}), got shape {batch.shape}")
        n = batch.shape[0]
    dtype = np.dtype(model.dtype)
    numbers: dict[str, np.ndarray] = {}
    loss_value = None
    source = ""
    if values:
        if batch is None:
            batch, y_random = _random_batch(model, n, np.random.default_rng(seed))
            y = y_random if y is None else y
            source = f"a random batch (standard normal X, random targets; seed {seed})"
        elif y is None:
            _, y = _random_batch(model, n, np.random.default_rng(seed))
            source = f"the given batch, with random targets (seed {seed})"
        else:
            source = "the given batch and targets"
        numbers, loss_value = _run(model, batch, y, seed)

    forward, backward, out, kept = _plan(model, n)
    lines = []
    loss_name = model.loss.name if model.loss is not None else "none"
    widths = [model.n_features] + [layer.n_out for layer in model.dense_layers]
    lines.append(
        f"{' → '.join(map(str, widths))} network, loss {loss_name}, {dtype.name}, batch of n = {n} rows"
    )
    lines.append(
        "Rows are examples; each W is (n_in × n_out), as in the article: Z = A·W + b, A' = act(Z)."
    )
    if values:
        lines.append(f"Values from one real training step on {source}.")
        lines.append(_matrix("A0", numbers["A0"]))
        if "Y" in numbers:
            lines.append(_matrix("Y", numbers["Y"]))

    width = max(len(step.formula) for step in forward + backward) + 4
    shapes_width = max(len(step.shapes) for step in forward + backward) + 2

    def emit(steps: list[_Step]) -> None:
        for step in steps:
            lines.append(step.render(width, shapes_width))
            weights = [f"W{step.name[1:]}", f"b{step.name[1:]}"] if step.name[:1] == "Z" else []
            for name in weights:
                if values and name in numbers:
                    lines.append(_matrix(name, numbers[name]))
            if values and step.name in numbers:
                lines.append(_matrix(step.name, numbers[step.name]))

    lines.append("")
    lines.append("Forward pass (A0 is the batch)")
    emit(forward)
    lines.append("")
    lines.append(
        f"Backward pass (dX means ∂L/∂X; it starts at d{out} and runs back to the first layer)"
    )
    emit(backward)

    rows = _flops(model, n)
    fwd = sum(r[1] for r in rows)
    wgt = sum(r[2] for r in rows)
    inp = sum(r[3] for r in rows)
    total = fwd + wgt + inp
    lines.append("")
    lines.append(
        "Floating-point operations per training step (each (m×k)·(k×p) product costs 2·m·k·p)"
    )
    table = [("", "forward", "weight grads", "input grads")]
    for name, a, b, c in rows:
        table.append((name, _count(a), _count(b), _count(c) if c else "—"))
    table.append(("total", _count(fwd), _count(wgt), _count(inp)))
    share = [100 * v / total for v in (fwd, wgt, inp)] if total else [0, 0, 0]
    table.append(("share", f"{share[0]:.1f}%", f"{share[1]:.1f}%", f"{share[2]:.1f}%"))
    col = [max(len(r[c]) for r in table) for c in range(4)]
    for r in table:
        lines.append(
            "  " + r[0].ljust(col[0]) + "".join("  " + r[c].rjust(col[c]) for c in range(1, 4))
        )
    bias_ops = 2 * n * sum(layer.n_out for layer in model.dense_layers)
    lines.append(
        f"  = {_count(total)} flops in matrix products ({_count(total // n)} per example); besides "
        f"them, the bias adds and bias sums"
    )
    lines.append(
        f"    take {_count(bias_ops)}, and the activations and the loss a few operations per element."
    )

    lines.append("")
    parts = []
    for ell, layer in enumerate(model.dense_layers, start=1):
        parts.append(f"W{ell} {layer.n_in}×{layer.n_out} = {_count(layer.n_in * layer.n_out)}")
        parts.append(f"b{ell} {_count(layer.n_out)}")
    lines.append(f"Parameters: {_count(model.n_params)} = " + " + ".join(parts))
    lines.append(
        f"  {_bytes(model.n_params * dtype.itemsize)} in {dtype.name}, and as much again for "
        "their gradients"
    )
    held, grads = _activation_numbers(model, n)
    lines.append(
        f"Activations of one batch: {_count(held)} numbers = {_bytes(held * dtype.itemsize)} kept by "
        f"the forward pass for the backward pass:"
    )
    lines.append("  " + ", ".join(kept))
    lines.append(
        f"  plus {_count(grads)} numbers = {_bytes(grads * dtype.itemsize)} of gradients in flight "
        f"(d{out} and each layer's dA)."
    )
    if loss_value is not None:
        lines.append("")
        lines.append(f"This step's loss: L = {loss_value:.6g}")
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
