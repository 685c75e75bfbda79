"""``model.summary()``: one line per layer with its output width, the shapes of W and b, and its
parameter count."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["summary_text"]


def summary_text(model: Any) -> str:
    """The summary table of a Sequential model, as text."""
    rows = [("#", "layer", "output", "W", "b", "params")]
    width = model.n_features
    for i, layer in enumerate(model.layers):
        width = layer.output_width(width)
        shapes = {name: shape for name, shape, _ in layer.param_specs()}
        count = sum(int(np.prod(shape)) for shape in shapes.values())
        rows.append(
            (
                str(i),
                repr(layer),
                f"(n, {width})",
                _shape(shapes.get("W")),
                _shape(shapes.get("b")),
                f"{count:,}" if count else "",
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    loss = f", loss {model.loss.name}" if model.loss is not None else ""
    lines.append(f"{model.n_params:,} parameters ({np.dtype(model.dtype).name}{loss})")
    return "\n".join(lines)


def _shape(shape: tuple[int, ...] | None) -> str:
    return "" if shape is None else "(" + ", ".join(map(str, shape)) + ")"
