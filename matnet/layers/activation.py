"""An activation as a layer: ``A = act(Z)``, and ``dZ = dA ⊙ act′(Z)`` backward."""

from __future__ import annotations

from typing import Any

from matnet.activations import Activation as ActivationFunction
from matnet.activations import get_activation
from matnet.layers.base import Description, Equation, Layer, Symbols, shape_text

__all__ = ["Activation"]

Array = Any


class Activation(Layer):
    """An elementwise (or row-wise, for softmax) activation ``A = act(Z)`` as a layer.

    Parameters
    ----------
    activation : str, dict or matnet.activations.Activation
        A registered name ("identity", "relu", "leaky_relu", "sigmoid" or "logistic", "tanh", "gelu",
        "softmax", or one added with :func:`matnet.register_activation`), a config dict such as
        ``{"name": "leaky_relu", "alpha": 0.2}``, or an instance.
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

    def describe(self, symbols: Symbols) -> Description:
        Z, n, w = symbols.input, symbols.n, symbols.n_in
        A = f"A{symbols.index}" if Z.startswith("Z") else f"{Z}'"
        shape = shape_text(n, w)
        in_place = self.inplace and self.fn.overwrites_input and self.fn.name != "identity"
        return Description(
            output=A,
            forward=[Equation(f"{A} = {self.fn.name}({Z})", f"{shape} → {shape}", "", A)],
            backward=[
                Equation(
                    f"d{Z} = {self.fn.backward_formula(f'd{A}', Z, A)}",
                    f"{shape} ⊙ {shape} → {shape}",
                    "",
                    f"d{Z}",
                )
            ],
            kept=[] if in_place or self.fn.name == "identity" else [(f"{A} {shape}", n * w)],
            overwrites_input=f" overwritten by {A} = {self.fn.name}({Z}) in place"
            if in_place
            else "",
        )

    def __repr__(self) -> str:
        return f"Activation({self.fn.name})"
