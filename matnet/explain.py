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

from matnet.equations import Equation
from matnet.layers.base import Description, Symbols
from matnet.model import Sequential
from matnet.validation import check_features

__all__ = ["explain"]


def _count(n: int) -> str:
    return f"{n:,}"


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _render(eq: Equation, width: int, shapes_width: int) -> str:
    line = f"  {eq.formula:<{width}}{eq.shapes:<{shapes_width}}"
    return f"{line}  {eq.note}" if eq.note else line.rstrip()


def _describe(model: Sequential, n: int) -> list[Description]:
    """Every layer's description for a batch of ``n`` rows, named in the article's notation: the
    batch is ``A0`` and each layer with parameters takes the next number."""
    descriptions, current, width, index = [], "A0", model.n_features, 0
    for layer in model.layers:
        if layer.param_specs():
            index += 1
        description = layer.describe(Symbols(input=current, index=index, n=n, n_in=width))
        descriptions.append(description)
        current, width = description.output, layer.output_width(width)
    return descriptions


def _plan(
    model: Sequential, descriptions: list[Description], n: int
) -> tuple[list[Equation], list[Equation], str, list[str]]:
    """The forward and backward equations, the output's name and what the forward pass keeps."""
    forward = [eq for d in descriptions for eq in d.forward]
    backward = [eq for d in reversed(descriptions) for eq in d.backward]
    out = descriptions[-1].output if descriptions else "A0"
    k = model.n_outputs
    if model.loss is not None:
        loss_forward, loss_backward = model.loss.describe(out, n, k)
    else:
        loss_forward = [
            Equation(f"L = loss({out})", f"({n}×{k}) → scalar", "the model has no loss yet")
        ]
        loss_backward = Equation(f"d{out} = ∂L/∂{out}", f"({n}×{k})")
    kept = [f"A0 ({n}×{model.n_features}) (the batch)"]
    for d in descriptions:
        if d.overwrites_input:
            kept[-1] += d.overwrites_input
        kept += [text for text, _ in d.kept]
    return forward + loss_forward, [loss_backward, *backward], out, kept


def _random_batch(
    model: Sequential, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    X = rng.standard_normal((n, model.n_features))
    y = None if model.loss is None else model.loss.sample_targets(rng, n, model.n_outputs)
    return X, y


def _run(
    model: Sequential, descriptions: list[Description], X: np.ndarray, y: Any, seed: int
) -> tuple[dict[str, np.ndarray], float | None]:
    """One training step's forward and backward through the model's own layers, every array copied
    as it is produced (layers reuse and overwrite their buffers), under the names the descriptions
    give. The model's gradients are restored."""
    X = check_features(X, model.n_features, model.dtype)
    rng = np.random.default_rng(seed)
    saved = model.flat_grads.copy()
    values: dict[str, np.ndarray] = {"A0": X.copy()}
    closures = []
    A = X
    try:
        for i, (layer, d) in enumerate(zip(model.layers, descriptions, strict=True)):
            for symbol, name, _ in d.parameters:
                values[symbol] = model.params[f"{i}.{name}"].copy()
            for symbol, name in d.state:
                values[symbol] = model.state[f"{i}.{name}"].copy()
            A, backward = layer.forward(A, True, rng, None)
            values[d.output] = A.copy()
            closures.append((i, d, backward))
        loss = model.loss
        if loss is None or y is None:
            return values, None
        Y = model.encode_targets(y, X.shape[0], loss)
        values["Y"] = Y.copy() if Y.ndim == 2 else np.eye(model.n_outputs, dtype=model.dtype)[Y]
        if loss.link_name:
            values["P"] = loss.link(A)
        value, dZ = loss(A, Y)
        values["L"] = np.asarray(value)
        values[f"d{descriptions[-1].output}"] = dZ.copy()
        inputs = ["A0", *(d.output for d in descriptions[:-1])]
        for (i, d, backward), before in zip(reversed(closures), reversed(inputs), strict=True):
            dZ = backward(dZ)
            for symbol, name, _ in d.parameters:
                values[f"d{symbol}"] = model.grads[f"{i}.{name}"].copy()
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
    descriptions = _describe(model, n)
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
        numbers, loss_value = _run(model, descriptions, batch, y, seed)

    forward, backward, out, kept = _plan(model, descriptions, n)
    lines = []
    loss_name = model.loss.name if model.loss is not None else "none"
    widths, width = [model.n_features], model.n_features
    for layer in model.layers:
        width = layer.output_width(width)
        if layer.param_specs():
            widths.append(width)
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

    lines += _equation_lines(forward, backward, out, descriptions, numbers if values else None)
    lines += _flops_lines(model, descriptions, n)
    lines += _memory_lines(model, descriptions, n, out, kept)
    if loss_value is not None:
        lines.append("")
        lines.append(f"This step's loss: L = {loss_value:.6g}")
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text


def _equation_lines(
    forward: list[Equation],
    backward: list[Equation],
    out: str,
    descriptions: list[Description],
    numbers: dict[str, np.ndarray] | None,
) -> list[str]:
    """The forward and backward equations, aligned; with ``numbers``, each array under its equation
    (and each layer's parameters and state under its first equation)."""
    width = max(len(step.formula) for step in forward + backward) + 4
    shapes_width = max(len(step.shapes) for step in forward + backward) + 2
    operands = {
        d.forward[0].name: [symbol for symbol, *_ in d.parameters + d.state]
        for d in descriptions
        if d.forward
    }
    lines: list[str] = []

    def emit(steps: list[Equation], show_operands: bool) -> None:
        for step in steps:
            lines.append(_render(step, width, shapes_width))
            if numbers is None:
                continue
            for name in operands.get(step.name, []) if show_operands else []:
                if name in numbers:
                    lines.append(_matrix(name, numbers[name]))
            if step.name in numbers:
                lines.append(_matrix(step.name, numbers[step.name]))

    lines += ["", "Forward pass (A0 is the batch)"]
    emit(forward, True)
    lines += [
        "",
        f"Backward pass (dX means ∂L/∂X; it starts at d{out} and runs back to the first layer)",
    ]
    emit(backward, False)
    return lines


def _flops_lines(model: Sequential, descriptions: list[Description], n: int) -> list[str]:
    """Where one training step's matrix-product flops go, by layer and by kind."""
    rows: list[tuple[str, int, int, int]] = []
    width = model.n_features
    for d, layer in zip(descriptions, model.layers, strict=True):
        n_in, width = width, layer.output_width(width)
        if any(d.flops):
            rows.append((f"layer {len(rows) + 1}  ({n_in}→{width})", *d.flops))
    fwd = sum(r[1] for r in rows)
    wgt = sum(r[2] for r in rows)
    inp = sum(r[3] for r in rows)
    total = fwd + wgt + inp
    lines = [
        "",
        "Floating-point operations per training step (each (m×k)·(k×p) product costs 2·m·k·p)",
    ]
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
    other = sum(d.other_ops for d in descriptions)
    lines.append(
        f"  = {_count(total)} flops in matrix products ({_count(total // n)} per example); besides "
        f"them, the bias adds and bias sums"
    )
    lines.append(
        f"    take {_count(other)}, and the activations and the loss a few operations per element."
    )
    return lines


def _memory_lines(
    model: Sequential, descriptions: list[Description], n: int, out: str, kept: list[str]
) -> list[str]:
    """The parameter count and the memory of one batch's activations and gradients."""
    dtype = np.dtype(model.dtype)
    parts = [text for d in descriptions for _, _, text in d.parameters]
    held = n * model.n_features + sum(count for d in descriptions for _, count in d.kept)
    grads = n * model.n_outputs + sum(d.grad_numbers for d in descriptions)
    return [
        "",
        f"Parameters: {_count(model.n_params)} = " + " + ".join(parts),
        f"  {_bytes(model.n_params * dtype.itemsize)} in {dtype.name}, and as much again for "
        "their gradients",
        f"Activations of one batch: {_count(held)} numbers = {_bytes(held * dtype.itemsize)} kept by "
        f"the forward pass for the backward pass:",
        "  " + ", ".join(kept),
        f"  plus {_count(grads)} numbers = {_bytes(grads * dtype.itemsize)} of gradients in flight "
        f"(d{out} and each layer's dA).",
    ]
