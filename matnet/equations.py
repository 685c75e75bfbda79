"""How matnet writes an equation for people: the text that :func:`matnet.explain` prints and that
layers and losses give when they describe themselves. A low module: it imports nothing."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Equation", "shape_text"]


def shape_text(*dims: int) -> str:
    """``(8×64)``: a shape as the explanations write it."""
    return "(" + "×".join(str(int(d)) for d in dims) + ")"


@dataclass
class Equation:
    """One line of the derivation: ``formula`` (``Z1 = A0 · W1 + b1``), the shapes it works on, an
    optional note, and ``name``, the array it computes (whose values ``explain(values=True)`` shows)."""

    formula: str
    shapes: str = ""
    note: str = ""
    name: str = ""
