"""``explain``: the article's derivation, written out for a real model and a real batch.

For every layer it prints the forward equation and, in reverse order, the backward equations, each with
the actual shapes (``Z1 = A0 · W1 + b1    (8×64)·(64×32) + (1×32) → (8×32)``); then where the
floating-point operations of one training step go, the parameter count, and the memory the batch's
activations take. With ``values=True`` it runs one real forward and backward pass through the model's own
layers and prints every matrix as it is computed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matnet.equations import Equation
from matnet.explain_html import render
from matnet.io import atomic_write
from matnet.layers.base import Description, Symbols
from matnet.model import Sequential
from matnet.validation import check_features, check_page_options

__all__ = ["explain", "to_html", "Recording", "DEFAULT_MAX_BYTES"]


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
    give. The model's gradients are restored. ``X`` is the matrix the layers run on (a table
    model's codes: see :meth:`~matnet.model.Sequential.input_matrix`)."""
    # A table model's codes hold NaN for missing cells, which its first layers impute.
    X = check_features(X, model.n_features, model.dtype, finite=not model.takes_table)
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


def _headline(model: Sequential, n: int) -> str:
    """``64 → 32 → 10 network, loss cross_entropy, float32, batch of n = 8 rows``."""
    loss_name = model.loss.name if model.loss is not None else "none"
    widths, width = [model.n_features], model.n_features
    for layer in model.layers:
        width = layer.output_width(width)
        if layer.param_specs():
            widths.append(width)
    dtype = np.dtype(model.dtype)
    return f"{' → '.join(map(str, widths))} network, loss {loss_name}, {dtype.name}, batch of n = {n} rows"


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
    elif model.takes_table:  # raw rows in any table form: the model's first layer reads them
        batch = model.input_matrix(X, finite=False)
        n = batch.shape[0]
    else:
        batch = np.asarray(X)
        if batch.ndim != 2:
            raise ValueError(f"X must be 2-D (n, {model.n_features}), got shape {batch.shape}")
        n = batch.shape[0]
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
        # A table model's given rows are codes already (read above); encoding them again would
        # read every category as unknown.
        given_codes = model.takes_table and not isinstance(X, (int, np.integer))
        matrix = batch if given_codes else model.input_matrix(batch)
        numbers, loss_value = _run(model, descriptions, matrix, y, seed)

    forward, backward, out, kept = _plan(model, descriptions, n)
    lines = []
    lines.append(_headline(model, n))
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


# --- the page: a short real training run, recorded -------------------------------------------------

#: The default ceiling of the written page's size; to_html refuses a run whose estimate exceeds it.
DEFAULT_MAX_BYTES = 5 * 2**20
# Bytes a recorded number takes in the page's JSON ("-0.123457," is 10; exponents make some longer).
_BYTES_PER_NUMBER = 11
_PAGE_OVERHEAD = 64 * 2**10


def _operands(formula: str, names: set[str]) -> list[str]:
    """The recorded arrays an equation's right-hand side reads, in order (``dW1 = A0ᵀ · dZ1`` ->
    ``["A0", "dZ1"]``); read from the text every layer and loss writes, so no layer is named here."""
    rhs = formula.split("=", 1)[1] if "=" in formula else formula
    found: list[str] = []
    for token in re.findall(r"[A-Za-z][A-Za-z0-9_]*'*", rhs):
        if token in names and token not in found:
            found.append(token)
    return found


def _products(descriptions: list[Description]) -> list[tuple[str, str, str, str, bool]]:
    """``(A_prev, W, dZ, dW, input_grad)`` for every layer whose description counts matrix products
    and whose weight gradient reads ``A_prevᵀ · dZ`` (a dense layer, or any that says the same);
    ``input_grad`` says whether its backward pass also computes ``dA_prev = dZ · Wᵀ``."""
    found = []
    current = "A0"
    for d in descriptions:
        weights = [symbol for symbol, name, _ in d.parameters if name == "W"]
        if d.flops[0] and weights:
            W = weights[0]
            grad = next((eq for eq in d.backward if eq.name == f"d{W}"), None)
            if grad is not None:
                rhs = _operands(grad.formula, {current, f"d{d.output}"})
                if rhs == [current, f"d{d.output}"]:
                    found.append((current, W, f"d{d.output}", f"d{W}", bool(d.flops[2])))
        current = d.output
    return found


def _sample(size: int, limit: int) -> np.ndarray:
    """Indices of at most ``limit`` of ``size`` rows or columns, evenly spread, first and last kept."""
    if size <= limit:
        return np.arange(size)
    return np.unique(np.linspace(0, size - 1, limit).round().astype(np.int64))


def _numeric_weight_grad(
    model: Sequential, X: np.ndarray, Y: np.ndarray, key: str, where: tuple[int, int], seed: int
) -> float:
    """∂L/∂W[i, j] by central differences on a float64 copy of the model (the same dropout masks
    as the recorded step: a fresh generator from the same seed per evaluation)."""
    model64 = model.astype(np.float64)
    loss = model.loss
    assert loss is not None
    W = model64.params[key]
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64) if Y.dtype.kind == "f" else Y
    saved, eps = float(W[where]), 1e-6
    values = []
    for delta in (eps, -eps):
        W[where] = saved + delta
        Z, _ = model64.forward(X64, training=True, rng=np.random.default_rng(seed))
        values.append(float(loss(Z, Y64)[0]))
    W[where] = saved
    return (values[0] - values[1]) / (2 * eps)


def _time_step(
    model: Sequential,
    X: np.ndarray,
    Y: np.ndarray,
    numbers: dict[str, np.ndarray],
    products: list[tuple[str, str, str, str, bool]],
    seed: int,
    repeats: int = 5,
) -> tuple[float, float]:
    """Seconds of one training step (forward, loss, backward through the model's layers; best of
    ``repeats``) and of its matrix products alone, re-run on the step's recorded operands."""
    loss = model.loss
    assert loss is not None
    saved = model.flat_grads.copy()
    best_step = best_products = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        Z, backward = model.forward(X, training=True, rng=np.random.default_rng(seed))
        _, dZ = loss(Z, Y)
        backward(dZ)
        best_step = min(best_step, time.perf_counter() - start)
        start = time.perf_counter()
        for A_prev, W, dZ_name, _, input_grad in products:
            np.matmul(numbers[A_prev], numbers[W])
            np.matmul(numbers[A_prev].T, numbers[dZ_name])
            if input_grad:
                np.matmul(numbers[dZ_name], numbers[W].T)
        best_products = min(best_products, time.perf_counter() - start)
    model.flat_grads[...] = saved
    return best_step, best_products


@dataclass
class Recording:
    """What :func:`to_html` recorded: every step's matrices (whole, before the step's update) and
    the numbers the page shows beside them.

    Attributes
    ----------
    steps : list of dict
        One dict per recorded step, name -> array (``"A0"``, ``"W1"``, ``"Z1"``, ``"dW1"``, ``"L"``...).
    loss : list of float
        Each step's batch loss.
    data_loss, metric : list of float
        The loss and the loss's metric (``metric_name``: accuracy or r2) on the data given, before
        each step's update.
    check : (str, int, int)
        The weight whose gradient is checked numerically: ``("W1", i, j)``.
    analytic, numeric : list of float
        That weight's gradient per step: recorded by backpropagation, and by float64 central
        differences.
    step_seconds, product_seconds : list of float
        Per step, the time of a forward + loss + backward pass, and of its matrix products alone.
    shown : dict
        name -> (row indices, column indices) the page shows (a sample when the matrix is large).
    """

    steps: list[dict[str, np.ndarray]] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    data_loss: list[float] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    metric_name: str = ""
    check: tuple[str, int, int] = ("", 0, 0)
    analytic: list[float] = field(default_factory=list)
    numeric: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    product_seconds: list[float] = field(default_factory=list)
    shown: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def product_share(self) -> float:
        """The matrix products' share of a training step's time over the run (0 to 1)."""
        return float(np.sum(self.product_seconds) / max(np.sum(self.step_seconds), 1e-12))


def _as_2d(array: np.ndarray) -> np.ndarray:
    """A vector as one row; a stack of matrices (PeriodicLinear's L, (d, m, o)) as (d, m·o)."""
    array = np.asarray(array)
    if array.ndim < 2:
        return array.reshape(1, -1)
    return array.reshape(array.shape[0], -1) if array.ndim > 2 else array


def _page_size(
    numbers: dict[str, np.ndarray], steps: int, max_side: int, n: int, products: list
) -> int:
    """The page's estimated bytes: the shown part of every matrix for every step, plus the whole
    batch rows of the dW check's operands when the batch is sampled."""
    per_step = 0
    for array in numbers.values():
        r, c = _as_2d(array).shape
        per_step += min(r, max_side) * min(c, max_side)
    if n > max_side:
        per_step += sum(n * 2 * max_side for _ in products)
    return _PAGE_OVERHEAD + steps * (per_step + 8) * _BYTES_PER_NUMBER


def _check_weight(products: list, numbers: dict[str, np.ndarray]) -> tuple[str, int, int]:
    """The first weight matrix's entry with the largest gradient in the first step: the one whose
    gradient the page checks by central differences in every step."""
    W = products[0][1] if products else ""
    if not W:
        return ("", 0, 0)
    i, j = np.unravel_index(int(np.argmax(np.abs(numbers[f"d{W}"]))), numbers[W].shape)
    return (W, int(i), int(j))


def _keys(model: Sequential, descriptions: list[Description]) -> dict[str, str]:
    """symbol -> the model's parameter key (``"W1"`` -> ``"0.W"``)."""
    return {
        symbol: f"{i}.{name}"
        for i, d in enumerate(descriptions)
        for symbol, name, _ in d.parameters
        if f"{i}.{name}" in model.params
    }


def _record(
    model: Sequential,
    X: np.ndarray,
    y: np.ndarray,
    *,
    steps: int,
    batch: int,
    learning_rate: float,
    seed: int,
    max_side: int,
    max_bytes: int,
    names: dict[str, str],
) -> tuple[Recording, list[Description]]:
    """Train ``model`` (a copy the caller owns) for ``steps`` plain SGD steps on mini-batches of
    ``X``, recording each step: ``W ← W − learning_rate · dW`` with the recorded ``dW`` itself, so
    the page's W of step t+1 is exactly its W − lr·dW of step t."""
    loss = model.loss
    assert loss is not None
    descriptions = _describe(model, batch)
    products = _products(descriptions)
    keys = _keys(model, descriptions)
    rng = np.random.default_rng(seed)
    order, position = rng.permutation(X.shape[0]), 0
    evaluate = _sample(X.shape[0], 4096)  # the curves' data: every row up to 4,096
    record = Recording(metric_name=loss.metric_name)
    for t in range(steps):
        if position + batch > order.size:  # a new epoch: reshuffle
            order, position = rng.permutation(X.shape[0]), 0
        rows = order[position : position + batch]
        position += batch
        scores = _scores(model, X[evaluate], y[evaluate])
        numbers, value = _run(model, descriptions, X[rows], y[rows], seed + t)
        if t == 0:
            estimate = _page_size(numbers, steps, max_side, batch, products)
            if estimate > max_bytes:
                raise ValueError(
                    f"the page would take about {estimate / 2**20:.1f} MiB for {steps} steps, "
                    + _too_big(max_bytes, names)
                )
            record.check = _check_weight(products, numbers)
            record.shown = {
                name: (_sample(a.shape[0], max_side), _sample(a.shape[1], max_side))
                for name, a in ((k, _as_2d(v)) for k, v in numbers.items())
            }
        target = model.encode_targets(y[rows], batch, loss)
        W, i, j = record.check
        if W:
            record.analytic.append(float(numbers[f"d{W}"][i, j]))
            record.numeric.append(
                _numeric_weight_grad(model, X[rows], target, keys[W], (i, j), seed + t)
            )
        step_s, product_s = _time_step(model, X[rows], target, numbers, products, seed + t)
        record.step_seconds.append(step_s)
        record.product_seconds.append(product_s)
        record.steps.append(numbers)
        record.loss.append(float(value) if value is not None else float("nan"))
        record.data_loss.append(float(scores["loss"]))
        record.metric.append(float(scores[loss.metric_name]))
        for symbol, key in keys.items():
            model.params[key] -= learning_rate * numbers[f"d{symbol}"].astype(model.dtype)
    return record, descriptions


def _digits(array: np.ndarray, dtype: np.dtype) -> list[float | None]:
    """An array's numbers for the page's JSON: rounded to the dtype's significant digits (7 for
    float32, 12 for float64) and non-finite values as null (JSON has no NaN)."""
    text = "{:.7g}" if dtype == np.float32 else "{:.12g}"
    flat = np.asarray(array, dtype=np.float64).ravel()
    return [float(text.format(v)) if np.isfinite(v) else None for v in flat]


def _finite(values: list[float]) -> list[float | None]:
    return [v if np.isfinite(v) else None for v in values]


def _payload(
    model: Sequential,
    record: Recording,
    descriptions: list[Description],
    options: dict[str, Any],
) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready values."""
    n, dtype = options["batch"], np.dtype(model.dtype)
    forward, backward, out, kept = _plan(model, descriptions, n)
    names = set(record.steps[0])
    equations = {
        side: [
            {
                "formula": eq.formula,
                "shapes": eq.shapes,
                "note": eq.note,
                "name": eq.name if eq.name in names else "",
                "operands": _operands(eq.formula, names - {eq.name}),
            }
            for eq in eqs
        ]
        for side, eqs in (("forward", forward), ("backward", backward))
    }
    matrices, sampled = {}, []
    for name, (rows, cols) in record.shown.items():
        r, c = _as_2d(record.steps[0][name]).shape
        matrices[name] = {"shape": [r, c], "rows": rows.tolist(), "cols": cols.tolist()}
        if rows.size < r or cols.size < c:
            sampled.append(f"{name} ({r}×{c}): {rows.size} of {r} rows, {cols.size} of {c} columns")
    products = _products(descriptions)
    values, full = [], []
    for numbers in record.steps:
        values.append(
            {
                name: _digits(_as_2d(a)[np.ix_(*record.shown[name])], dtype)
                for name, a in numbers.items()
            }
        )
        if n > options["max_side"]:  # the dW check needs every row of its operands
            full.append(
                {
                    name: _digits(numbers[name][:, record.shown[name][1]], dtype)
                    for A, _, dZ, _, _ in products
                    for name in (A, dZ)
                }
            )
    W, i, j = record.check
    return {
        "summary": _headline(model, n),
        "source": options["source"],
        "learning_rate": options["learning_rate"],
        "dtype": dtype.name,
        "batch": n,
        "seed": options["seed"],
        "max_side": options["max_side"],
        "max_bytes": options["max_bytes"],
        "sampled": sampled,
        "forward": equations["forward"],
        "backward": equations["backward"],
        "output": out,
        "kept": kept,
        "matrices": matrices,
        "values": values,
        "full": full,
        "products": [{"A": A, "W": Wp, "dZ": dZ, "dW": dW} for A, Wp, dZ, dW, _ in products],
        "loss": _finite(record.loss),
        "data_loss": _finite(record.data_loss),
        "metric": _finite(record.metric),
        "metric_name": record.metric_name,
        "check": {
            "W": W,
            "i": i,
            "j": j,
            "analytic": _finite(record.analytic),
            "numeric": _finite(record.numeric),
            "tolerance": 1e-3 if dtype == np.float32 else 1e-6,
        },
        "timing": {
            "step": record.step_seconds,
            "products": record.product_seconds,
            "share": record.product_share,
        },
        "table": "\n".join(
            _flops_lines(model, descriptions, n)[1:]
            + _memory_lines(model, descriptions, n, out, kept)
        ),
    }


def to_html(
    model: Sequential,
    X: Any,
    y: Any,
    path: str | Path,
    *,
    steps: int = 20,
    batch: int = 16,
    learning_rate: float = 0.05,
    seed: int = 0,
    max_side: int = 64,
    max_bytes: int = DEFAULT_MAX_BYTES,
    source: str = "the given data",
    option_names: dict[str, str] | None = None,
) -> Recording:
    """Record a short real training run of ``model`` and write it as one self-contained HTML page.

    The page shows every layer's forward and backward equations with this model's shapes; clicking
    one shows its operands and result as heatmaps (value on hover, zoom); a slider (and play) over
    the recorded steps; the loss and metric curves; a check that recomputes ``dW = A_prevᵀ·dZ`` in
    the page and compares it with the recorded ``dW``, and one weight's float64 central-difference
    gradient against the analytic one; the flops and memory of a step and the share of the step's
    time the matrix products took. It needs no network: its script and style are inline.

    The run trains a copy of ``model`` (the model itself is left unchanged) with plain SGD,
    ``W ← W − learning_rate · dW``, on mini-batches of ``batch`` rows of ``X`` drawn without
    replacement (reshuffled each epoch, from ``seed``).

    Parameters
    ----------
    model : Sequential
        A model with a loss.
    X : array-like of shape (n, n_features)
    y : array-like of n targets, as for :func:`matnet.fit`
    path : str or Path
        Where the page is written (atomically).
    steps : int
        Training steps recorded (at most 1000).
    batch : int
        Rows per step (at most 256 and at most n).
    learning_rate : float
    seed : int
        Seeds the mini-batches and the dropout masks.
    max_side : int
        Matrices with more rows or columns than this are shown as an even sample of that many (the
        page lists which); the dW check still sums over every row of the batch.
    max_bytes : int
        The page's size limit (default 5 MiB); a run whose estimated page is larger is refused
        before it starts, with the options that shrink it.
    source : str
        Words for the page saying where ``X`` came from.
    option_names : dict, optional
        How the caller's users name ``steps``, ``batch``, ``max_side`` and ``max_bytes`` (the
        command line: ``--steps``, ...), for the advice of a page that is too large.

    Returns
    -------
    Recording
        The recorded matrices of every step (whole, before the step's update) and the numbers
        shown beside them.
    """
    X, y = _page_inputs(model, X, y, path)
    steps, batch, rate, max_side, max_bytes = check_page_options(
        steps, batch, X.shape[0], learning_rate, max_side, max_bytes
    )
    work = model.copy()
    work.adapt(X)  # a Standardize layer not fitted yet is fitted from X, as matnet.fit would
    record, descriptions = _record(
        work,
        X,
        y,
        steps=steps,
        batch=batch,
        learning_rate=rate,
        seed=seed,
        max_side=max_side,
        max_bytes=max_bytes,
        names=_OPTION_NAMES | (option_names or {}),
    )
    names = _OPTION_NAMES | (option_names or {})
    options = {
        "batch": batch,
        "learning_rate": rate,
        "seed": seed,
        "max_side": max_side,
        "max_bytes": max_bytes,
        "source": source,
    }
    page = render(
        json.dumps(
            _payload(work, record, descriptions, options), allow_nan=False, ensure_ascii=False
        )
    )
    data = page.encode("utf-8")
    if len(data) > max_bytes:
        raise ValueError(
            f"the page came to {len(data) / 2**20:.2f} MiB, " + _too_big(max_bytes, names)
        )
    atomic_write(path, data)
    return record


#: The options a page-size error advises, as the Python API names them.
_OPTION_NAMES = {
    "steps": "steps",
    "batch": "batch",
    "max_side": "max_side",
    "max_bytes": "max_bytes=",
}


def _too_big(max_bytes: int, names: dict[str, str]) -> str:
    """The end of a page-size error: the limit, and the options that shrink the page."""
    return (
        f"over {names['max_bytes']}{max_bytes} ({max_bytes / 2**20:.1f} MiB): record fewer "
        f"{names['steps']}, a smaller {names['batch']} or {names['max_side']}, or raise "
        f"{names['max_bytes'].rstrip('= ')}"
    )


def _scores(model: Sequential, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The mean loss and the loss's metric of rows already in the layers' form (``X`` is
    ``input_matrix``'s output: a table model's codes, which ``model.evaluate`` would encode again
    and read every category as unknown)."""
    loss = model.loss
    assert loss is not None
    Z = model.logits_from_matrix(X)
    Y = model.encode_targets(y, Z.shape[0], loss)
    value, _ = loss(Z, Y)
    return {"loss": float(value), loss.metric_name: float(loss.metric(Z, Y))}


def _page_inputs(model: Any, X: Any, y: Any, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """to_html's model, rows, targets and output folder checked before any work: the layers'
    matrix of ``X`` (a table model's raw cells too) and the targets as an array."""
    if not isinstance(model, Sequential):
        raise TypeError(f"to_html() needs a matnet Sequential model, got {type(model).__name__}")
    if model.loss is None:
        raise ValueError("to_html() trains the model, which needs a loss: give the model one")
    X = model.input_matrix(X)  # raw rows (a table model's cells too) to the layers' matrix
    y = np.asarray(y)
    if y.shape[:1] != X.shape[:1]:
        raise ValueError(
            f"y has {y.shape[:1]} rows but X has {X.shape[0]}; give one target per row"
        )
    model.encode_targets(y, X.shape[0], model.loss)  # bad targets fail here, before any work
    folder = Path(path).parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: the folder {str(folder)!r} does not exist")
    return X, y


# The package exports the function explain as ``matnet.explain``, which hides this module there;
# attached to it, the page writer answers to ``matnet.explain.to_html(...)`` as well.
explain.to_html = to_html  # type: ignore[attr-defined]
