"""Activations for the layers: the forward map and its backward, written into reused buffers.

Each activation computes what :mod:`matnet.functional` computes, but in place where it can: when the
derivative is exact from the cached output ``A`` (ReLU, leaky ReLU with a positive slope, sigmoid, tanh,
identity, softmax), the forward pass may write ``A`` over ``Z`` and the backward pass scales ``dA``
in place, so a training step allocates nothing. GELU needs ``Z`` for its derivative and keeps it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from matnet import functional as F
from matnet.backend import array_namespace

__all__ = [
    "Activation",
    "get_activation",
    "register_activation",
    "activation_names",
    "ACTIVATION_NAMES",
]

Array = Any


class Activation(ABC):
    """An activation ``A = act(Z)`` and its backward ``dZ = dA * act'(Z)``.

    Everything matnet knows about an activation lives on its class: the in-place pair
    (:meth:`forward`, :meth:`backward`) that layers run, the pure form (:meth:`__call__`) for tests and
    explanations, the initializer that suits it, and the derivative as :func:`matnet.explain` writes it.
    Add one with :func:`register_activation`; models, model files, the command line and the
    estimators then accept its name.

    Attributes
    ----------
    name : str
        The registry name, as written in model files.
    overwrites_input : bool
        True when ``backward`` needs only ``A``, so ``forward`` may write ``A`` over ``Z``.
    init : {"he", "glorot"}
        The weight initializer family for a Dense layer feeding this activation: He for ReLU-like
        (unbounded, zero for half the inputs), Glorot for the others.
    derivative : str
        The backward equation's right side as :func:`matnet.explain` prints it, with ``{dA}``, ``{Z}``
        and ``{A}`` standing for the names of the arrays.
    """

    name = ""
    overwrites_input = True
    init = "glorot"
    derivative = "{dA} ⊙ {name}′({Z})"

    @abstractmethod
    def forward(self, Z: Array, out: Array) -> Array:
        """Write ``act(Z)`` into ``out`` (which may be ``Z`` itself) and return it."""

    @abstractmethod
    def backward(self, dA: Array, Z: Array, A: Array) -> Array:
        """Return ``dZ``; may overwrite ``dA`` (and ``Z`` is stale when ``overwrites_input``)."""

    def __call__(self, Z: Array) -> Array:
        """The pure form: ``act(Z)`` as a new array, ``Z`` untouched."""
        return self.forward(Z, array_namespace(Z).empty_like(Z))

    def backward_formula(self, dA: str, Z: str, A: str) -> str:
        """The right side of ``dZ = ...`` with these array names."""
        return self.derivative.format(dA=dA, Z=Z, A=A, name=self.name)

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        return self.name


class Identity(Activation):
    name = "identity"
    derivative = "{dA}"

    def forward(self, Z, out):
        return Z

    def backward(self, dA, Z, A):
        return dA


class ReLU(Activation):
    name = "relu"
    init = "he"

    def __init__(self) -> None:
        self._zeros: Array | None = None

    def forward(self, Z, out):
        # A zero row broadcast over the batch instead of the scalar 0: NumPy's SIMD loop for
        # maximum runs only when both operands are contiguous along the row.
        zeros = self._zeros
        if zeros is None or zeros.shape[1] != Z.shape[1] or zeros.dtype != Z.dtype:
            zeros = self._zeros = array_namespace(Z).zeros((1, Z.shape[1]), dtype=Z.dtype)
        return np.maximum(Z, zeros, out=out)

    def backward(self, dA, Z, A):
        # A > 0 exactly where Z > 0, so the cached output is enough.
        return np.multiply(dA, A > 0, out=dA)


class LeakyReLU(Activation):
    name = "leaky_relu"
    init = "he"

    def __init__(self, alpha: float = 0.01):
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise ValueError(f"leaky_relu alpha={alpha!r} must be a number in (0, 1)")
        self.alpha = float(alpha)

    def forward(self, Z, out):
        # Z * (1 or alpha): the sign of A equals the sign of Z because alpha > 0.
        return np.multiply(Z, np.where(Z > 0, 1.0, self.alpha).astype(Z.dtype), out=out)

    def backward(self, dA, Z, A):
        return np.multiply(dA, np.where(A > 0, 1.0, self.alpha).astype(dA.dtype), out=dA)

    def config(self):
        return {"name": self.name, "alpha": self.alpha}


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, Z, out):
        out[...] = F.sigmoid(Z)
        return out

    def backward(self, dA, Z, A):
        dA *= A * (1 - A)
        return dA


class Tanh(Activation):
    name = "tanh"

    def forward(self, Z, out):
        return np.tanh(Z, out=out)

    def backward(self, dA, Z, A):
        dA *= 1 - A * A
        return dA


class GELU(Activation):
    name = "gelu"
    overwrites_input = False
    init = "he"

    def forward(self, Z, out):
        out[...] = F.gelu(Z)
        return out

    def backward(self, dA, Z, A):
        dA *= F.gelu_derivative(Z)
        return dA


class Softmax(Activation):
    name = "softmax"
    derivative = "{A} ⊙ ({dA} − Σcols {dA} ⊙ {A})"

    def forward(self, Z, out):
        out[...] = F.softmax(Z)
        return out

    def backward(self, dA, Z, A):
        return F.softmax_backward(dA, A)


_REGISTRY: dict[str, type[Activation]] = {
    cls.name: cls for cls in (Identity, ReLU, LeakyReLU, Sigmoid, Tanh, GELU, Softmax)
}
# scikit-learn's and Keras' names for the same functions.
_ALIASES = {"logistic": "sigmoid", "linear": "identity"}


def register_activation(cls: type[Activation]) -> type[Activation]:
    """Add an :class:`Activation` subclass to the registry under ``cls.name`` (usable as a
    decorator). Its name then works everywhere an activation is named: ``Activation("name")``,
    ``MLP(..., activation="name")``, model files, the estimators and the command line.

    Raises
    ------
    ValueError
        When the name is empty or already taken by a different class.
    """
    if not (isinstance(cls, type) and issubclass(cls, Activation)):
        raise TypeError(f"register_activation needs an Activation subclass, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"activation name {name!r} must be a non-empty identifier")
    if _REGISTRY.get(name, cls) is not cls or name in _ALIASES:
        raise ValueError(f"activation name {name!r} is already registered")
    _REGISTRY[name] = cls
    return cls


def activation_names() -> tuple[str, ...]:
    """Every name :func:`get_activation` accepts, registered ones included."""
    return tuple(sorted(_REGISTRY)) + tuple(sorted(_ALIASES))


#: The built-in names (see :func:`activation_names` for the registered ones too).
ACTIVATION_NAMES = activation_names()


def get_activation(spec: str | dict | Activation) -> Activation:
    """Build an activation from its name, its config dict, or return an instance unchanged.

    Raises
    ------
    ValueError
        For a name not in the registry; the message lists the valid names.
    """
    if isinstance(spec, Activation):
        return spec
    kwargs: dict[str, Any] = {}
    if isinstance(spec, dict):
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        spec = spec.get("name", "")
    if not isinstance(spec, str):
        raise TypeError(f"activation must be a name such as 'relu', got {type(spec).__name__}")
    name = _ALIASES.get(spec, spec)
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown activation {spec!r}; choose one of {', '.join(activation_names())}"
        )
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad parameters {kwargs} for activation {name!r}: {exc}") from exc
