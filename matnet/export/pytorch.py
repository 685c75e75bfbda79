"""PyTorch weights both ways: a matnet model as an ``nn.Sequential`` state dict, and an
``nn.Sequential`` of ``Linear`` and activation modules (or its state dict) as a matnet model.

The layers map one to one, at the same index, so the state dict's keys are ``"<index>.weight"`` and
``"<index>.bias"`` of the Linear modules; the weights are transposed on the way, matnet's ``W``
being (n_in, n_out) and PyTorch's ``Linear.weight`` (n_out, n_in).

=========================  ===========================================
matnet                     PyTorch
=========================  ===========================================
``Dense(n_in, n_out)``     ``nn.Linear(n_in, n_out)``
``Activation("identity")`` ``nn.Identity()``
``Activation("relu")``     ``nn.ReLU()``
``leaky_relu`` (alpha)     ``nn.LeakyReLU(negative_slope=alpha)``
``sigmoid`` / ``tanh``     ``nn.Sigmoid()`` / ``nn.Tanh()``
``gelu``                   ``nn.GELU(approximate="tanh")``
``softmax``                ``nn.Softmax(dim=1)`` (or ``dim=-1``)
``Dropout(rate)``          ``nn.Dropout(p=rate)``
=========================  ===========================================

matnet's GELU is the tanh form, so ``nn.GELU()`` (the erf form, up to 1e-3 apart) is refused rather
than converted to something that answers differently. ``Standardize`` has no PyTorch module and the
loss is not a module; both are refused or left to the caller (``from_torch(..., loss=...)``).

PyTorch stays a test and benchmark dependency: it is imported inside these functions only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from matnet.activations import get_activation
from matnet.backend import import_optional, resolve_dtype, to_host
from matnet.errors import ConversionError
from matnet.layers import Activation, Dense, Dropout, Layer
from matnet.model import Sequential

__all__ = ["to_torch_state_dict", "to_torch", "from_torch"]

_SUPPORTED = (
    "Linear, Identity, ReLU, LeakyReLU, Sigmoid, Tanh, GELU(approximate='tanh'), Softmax(dim=1), "
    "Dropout"
)


def _torch() -> Any:
    return import_optional("torch", "dev", "PyTorch conversion")


def _check_exportable(model: Sequential) -> None:
    if not isinstance(model, Sequential):
        raise TypeError(f"expected a matnet Sequential model, got {type(model).__name__}")
    for index, layer in enumerate(model.layers):
        if type(layer) in (Dense, Dropout):
            continue
        if type(layer) is Activation and layer.fn.name in _TORCH_ACTIVATIONS:
            continue
        raise ConversionError(
            f"layer {index}, {layer!r}, has no PyTorch module to become; matnet converts Dense, "
            "Dropout and the activations "
            + ", ".join(_TORCH_ACTIVATIONS)
            + " (export a model with preprocessing to ONNX, which carries it)"
        )


_TORCH_ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax")


def to_torch_state_dict(model: Sequential) -> dict[str, Any]:
    """The model's weights as the state dict of the equivalent ``nn.Sequential`` (see :func:`to_torch`).

    Parameters
    ----------
    model : Sequential
        Dense, Dropout and activation layers only.

    Returns
    -------
    dict of str to torch.Tensor
        ``"<i>.weight"`` of shape (n_out, n_in) (``W.T``) and ``"<i>.bias"`` of shape (n_out,) for each
        Dense layer ``i``, in the model's dtype.

    Raises
    ------
    ConversionError
        For a layer without a PyTorch module (naming it), before any work.
    """
    _check_exportable(model)
    torch = _torch()
    state = {}
    for index, layer in enumerate(model.layers):
        if isinstance(layer, Dense):
            W, b = to_host(layer.W), to_host(layer.b)
            state[f"{index}.weight"] = torch.from_numpy(np.ascontiguousarray(W.T))
            state[f"{index}.bias"] = torch.from_numpy(b.reshape(-1).copy())
    return state


def to_torch(model: Sequential) -> Any:
    """The model as an ``nn.Sequential`` (in eval mode) holding its weights.

    Returns
    -------
    torch.nn.Sequential
        Modules at the matnet layers' indices (see the module's table), in the model's dtype.

    Raises
    ------
    ConversionError
        For a layer without a PyTorch module (naming it), before any work.
    """
    _check_exportable(model)
    nn = _torch().nn
    modules: list[Any] = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            modules.append(nn.Linear(layer.n_in, layer.n_out))
        elif isinstance(layer, Dropout):
            modules.append(nn.Dropout(p=layer.rate))
        else:
            modules.append(_torch_activation(nn, layer.fn))  # type: ignore[attr-defined]
    module = nn.Sequential(*modules).to(_torch_dtype(model.dtype))
    module.load_state_dict(to_torch_state_dict(model))
    return module.eval()


def _torch_activation(nn: Any, fn: Any) -> Any:
    return {
        "identity": lambda: nn.Identity(),
        "relu": lambda: nn.ReLU(),
        "leaky_relu": lambda: nn.LeakyReLU(negative_slope=getattr(fn, "alpha", 0.01)),
        "sigmoid": lambda: nn.Sigmoid(),
        "tanh": lambda: nn.Tanh(),
        "gelu": lambda: nn.GELU(approximate="tanh"),
        "softmax": lambda: nn.Softmax(dim=1),
    }[fn.name]()


def _torch_dtype(dtype: Any) -> Any:
    torch = _torch()
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


# --- from PyTorch ----------------------------------------------------------------------------


def _layer_from_module(index: int, module: Any, nn: Any) -> Layer | None:
    """The matnet layer for one module (None for a Linear: built with its weights)."""
    kind = type(module)
    if kind is nn.Linear:
        return None
    if kind is nn.Dropout:
        return Dropout(float(module.p))
    if kind is nn.GELU and module.approximate != "tanh":
        raise ConversionError(
            f"module {index}, {module!r}, is the erf form of GELU; matnet's gelu is the tanh form "
            "(they differ by up to 1e-3), so it converts nn.GELU(approximate='tanh') only"
        )
    if kind is nn.Softmax and module.dim not in (1, -1):
        raise ConversionError(
            f"module {index}, {module!r}, normalizes over dim={module.dim}; matnet's softmax is "
            "over the features of each row (dim=1)"
        )
    names = {
        nn.Identity: "identity",
        nn.ReLU: "relu",
        nn.Sigmoid: "sigmoid",
        nn.Tanh: "tanh",
        nn.GELU: "gelu",
        nn.Softmax: "softmax",
    }
    if kind is nn.LeakyReLU:
        try:
            return Activation(
                get_activation({"name": "leaky_relu", "alpha": module.negative_slope})
            )
        except ValueError as exc:
            raise ConversionError(f"module {index}, {module!r}: {exc}") from None
    if kind in names:
        return Activation(names[kind])
    raise ConversionError(
        f"module {index}, {module!r} ({kind.__name__}), has no matnet layer; matnet converts "
        f"nn.Sequential stacks of {_SUPPORTED}"
    )


def _linear_weights(state: Mapping[str, Any]) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
    """``{index: (weight (out, in), bias or None)}`` from ``"<i>.weight"``/``"<i>.bias"`` keys."""
    found: dict[int, list[Any]] = {}
    for key, value in state.items():
        head, _, kind = str(key).partition(".")
        if not head.isdigit() or kind not in ("weight", "bias"):
            raise ConversionError(
                f"state dict key {key!r} is not '<index>.weight' or '<index>.bias' of an "
                "nn.Sequential of Linear layers"
            )
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        found.setdefault(int(head), [None, None])[0 if kind == "weight" else 1] = array
    for index, (weight, _bias) in found.items():
        if weight is None or weight.ndim != 2:
            raise ConversionError(f"state dict entry {index} has no 2-D '{index}.weight'")
    return {i: (w, b) for i, (w, b) in sorted(found.items())}


def from_torch(
    source: Any,
    *,
    activation: Any = None,
    loss: Any = None,
    dtype: Any = None,
) -> Sequential:
    """A matnet model from an ``nn.Sequential`` of Linear and activation modules, or its state dict.

    Parameters
    ----------
    source : torch.nn.Sequential or mapping of str to tensor
        A module (its modules give the layers, see the module's table) or a state dict with
        ``"<i>.weight"`` (n_out, n_in) and ``"<i>.bias"`` keys of Linear layers only.
    activation : str, dict or sequence, optional
        For a state dict only, which holds no activations: the activation after each Linear but the
        last (one for all, or one per hidden layer), as for :func:`matnet.MLP`; default none.
    loss : str or Loss, optional
        The model's loss (PyTorch keeps it outside the module).
    dtype : {"float32", "float64"}, optional
        Default: the weights' own dtype when float32 or float64.

    Returns
    -------
    Sequential
        Dense layers with ``W = weight.T`` and ``b = bias`` (zero where the Linear has none).

    Raises
    ------
    ConversionError
        For a module matnet has no layer for (naming it and its index), or a malformed state dict.
    """
    torch = _torch()
    nn = torch.nn
    if isinstance(source, nn.Module):
        if activation is not None:
            raise ValueError("activation= is for a state dict; a module's activations are its own")
        if not isinstance(source, nn.Sequential):
            raise ConversionError(
                f"from_torch reads an nn.Sequential; got {type(source).__name__} (put its layers "
                "in an nn.Sequential, or pass its state dict with activation=...)"
            )
        layers = [_layer_from_module(i, m, nn) for i, m in enumerate(source)]
        weights = _linear_weights(source.state_dict())  # a Linear without bias has no '.bias'
    elif isinstance(source, Mapping):
        weights = _linear_weights(source)
        layers = _state_dict_layers(len(weights), activation)
        weights = {
            2 * n if activation is not None else n: w for n, w in enumerate(weights.values())
        }
    else:
        raise TypeError(
            f"from_torch needs an nn.Sequential or its state dict, got {type(source).__name__}"
        )
    return _build(layers, weights, loss, dtype)


def _state_dict_layers(n_linear: int, activation: Any) -> list[Layer | None]:
    """Linear placeholders (None), with the given activation after each but the last."""
    if n_linear == 0:
        raise ConversionError("the state dict holds no '<index>.weight' of a Linear layer")
    if activation is None:
        return [None] * n_linear
    one = isinstance(activation, (str, dict))
    names = [activation] * (n_linear - 1) if one else list(activation)
    if len(names) != n_linear - 1:
        raise ValueError(f"{len(names)} activations given for {n_linear - 1} hidden layers")
    layers: list[Layer | None] = []
    for name in names:
        layers += [None, Activation(name)]
    return layers + [None]


def _build(
    layers: list[Layer | None],
    weights: dict[int, tuple[np.ndarray, np.ndarray | None]],
    loss: Any,
    dtype: Any,
) -> Sequential:
    if sorted(weights) != [i for i, layer in enumerate(layers) if layer is None]:
        raise ConversionError(
            f"the Linear weights at {sorted(weights)} do not match the Linear modules of the stack"
        )
    first = next(iter(weights.values()))[0]
    if dtype is None and first.dtype not in (np.float32, np.float64):
        raise ConversionError(
            f"the weights are {first.dtype}; pass dtype='float32' or 'float64' to convert them"
        )
    resolved = resolve_dtype(first.dtype if dtype is None else dtype)
    built: list[Layer] = []
    for i, layer in enumerate(layers):
        if layer is None:
            n_out, n_in = weights[i][0].shape
            layer = Dense(n_in, n_out)
        built.append(layer)
    model = Sequential(built, dtype=resolved, loss=loss)  # output_width checks the widths chain
    for i, (weight, bias) in weights.items():
        dense = built[i]
        dense.W[...] = weight.T  # type: ignore[attr-defined]
        dense.b[...] = 0 if bias is None else np.reshape(bias, (1, -1))  # type: ignore[attr-defined]
    return model
