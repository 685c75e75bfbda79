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

``Standardize``, ``Scale``, ``Periodic``, ``PeriodicLinear``, ``BatchEnsemble``, ``EnsembleMean``,
``RobustScale``, ``OneHot`` and ``Embedding`` (on a table model's codes) become small modules that compute what the layer computes (their parameters and
state under ``"<index>.<name>"``); a layer of a user's own declares its form with
:func:`register_torch` (or a ``to_torch`` method). A ``TableInput`` (raw text cells) has none: a
table model leaves by ONNX. ``to_torch`` goes one way for those; ``from_torch`` reads the stacks of
the table above.

matnet's GELU is the tanh form, so ``nn.GELU()`` (the erf form, up to 1e-3 apart) is refused rather
than converted to something that answers differently. The loss is not a module; it is left to the
caller (``from_torch(..., loss=...)``).

PyTorch stays a test and benchmark dependency: it is imported inside these functions only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from matnet.activations import get_activation
from matnet.backend import import_optional, resolve_dtype, to_host
from matnet.errors import ConversionError
from matnet.layers import (
    Activation,
    BatchEnsemble,
    Dense,
    Dropout,
    Embedding,
    EnsembleMean,
    Layer,
    OneHot,
    Periodic,
    PeriodicLinear,
    RobustScale,
    Scale,
    Standardize,
)
from matnet.model import Sequential

__all__ = ["to_torch_state_dict", "to_torch", "from_torch", "register_torch", "torch_module"]

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
        if _torch_form(layer) is None:
            raise ConversionError(
                f"layer {index}, {layer!r} ({type(layer).__name__}), has no PyTorch module to "
                f"become; matnet converts {', '.join(t.__name__ for t in _TORCH_FORMS)} and the "
                "activations " + ", ".join(_TORCH_ACTIVATIONS) + " (a layer of your own declares "
                "its module with matnet.export.register_torch; ONNX carries a table model's raw "
                "columns)"
            )


_TORCH_ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax")

#: A layer type's PyTorch form: ``form(layer, torch) -> nn.Module`` holding the layer's parameters
#: (as ``nn.Parameter``) and state (as buffers), computing what its forward computes.
TorchForm = Callable[[Any, Any], Any]
_TORCH_FORMS: dict[type, TorchForm] = {}


def register_torch(layer_type: type) -> Callable[[TorchForm], TorchForm]:
    """Declare a layer type's PyTorch form: ``form(layer, torch) -> nn.Module``.

    Use it beside the layer (``@register_torch(LayerNorm)`` in the file that defines it), so a
    layer registered from a user's own file converts like a built-in one; :func:`torch_module`
    wraps a function of the input and named tensors as a module. A layer class may instead define
    a method ``to_torch(self, torch) -> nn.Module``.
    """

    def decorate(form: TorchForm) -> TorchForm:
        _TORCH_FORMS[layer_type] = form
        return form

    return decorate


def _torch_form(layer: Layer) -> TorchForm | None:
    """The layer's own ``to_torch`` method, else the form registered for its type, else None
    (an activation PyTorch has no module for has none)."""
    method = getattr(type(layer), "to_torch", None)
    if method is not None:
        return lambda layer, torch: method(layer, torch)
    if type(layer) is Activation and layer.fn.name not in _TORCH_ACTIVATIONS:
        return None
    return _TORCH_FORMS.get(type(layer))


def torch_module(
    torch: Any,
    name: str,
    forward: Callable[[Any, Any], Any],
    parameters: Mapping[str, np.ndarray] | None = None,
    buffers: Mapping[str, np.ndarray] | None = None,
) -> Any:
    """An ``nn.Module`` named ``name`` computing ``forward(module, x)``, with ``parameters``
    (trainable, as ``nn.Parameter``) and ``buffers`` (state) copied from NumPy arrays; inside
    ``forward`` they are attributes of the module."""
    module = _module_class(torch)(name, forward)
    for key, value in (parameters or {}).items():
        module.register_parameter(key, torch.nn.Parameter(torch.from_numpy(np.array(value))))
    for key, value in (buffers or {}).items():
        module.register_buffer(key, torch.from_numpy(np.array(value)))
    return module


_MODULE_CLASS: dict[int, Any] = {}


def _module_class(torch: Any) -> Any:
    """One nn.Module subclass for every wrapped layer (made once: torch is imported lazily)."""
    if id(torch) not in _MODULE_CLASS:

        class MatnetLayer(torch.nn.Module):
            def __init__(self, name: str, forward: Callable[[Any, Any], Any]) -> None:
                super().__init__()
                self.layer_name, self._forward = name, forward

            def forward(self, x: Any) -> Any:
                return self._forward(self, x)

            def extra_repr(self) -> str:
                return self.layer_name

        _MODULE_CLASS[id(torch)] = MatnetLayer
    return _MODULE_CLASS[id(torch)]


def to_torch_state_dict(model: Sequential) -> dict[str, Any]:
    """The model's weights (and state) as the state dict of its ``nn.Sequential`` (:func:`to_torch`).

    Parameters
    ----------
    model : Sequential
        Layers with a PyTorch form (see the module's table; :func:`register_torch` adds more).

    Returns
    -------
    dict of str to torch.Tensor
        For each Dense layer ``i``: ``"<i>.weight"`` of shape (n_out, n_in) (``W.T``) and
        ``"<i>.bias"`` of shape (n_out,); other layers' parameters and state under ``"<i>.<name>"``;
        in the model's dtype.

    Raises
    ------
    ConversionError
        For a layer without a PyTorch form (naming it), before any work.
    """
    return dict(to_torch(model).state_dict())


def to_torch(model: Sequential) -> Any:
    """The model as an ``nn.Sequential`` (in eval mode) holding its weights and state.

    Returns
    -------
    torch.nn.Sequential
        Modules at the matnet layers' indices (see the module's table), in the model's dtype:
        ``module(torch.from_numpy(X))`` gives ``model.logits(X)``.

    Raises
    ------
    ConversionError
        For a layer without a PyTorch form (naming it), before any work.
    """
    _check_exportable(model)
    torch = _torch()
    modules = []
    for layer in model.layers:
        form = _torch_form(layer)
        assert form is not None  # checked above
        modules.append(form(layer, torch))
    return torch.nn.Sequential(*modules).to(_torch_dtype(model.dtype)).eval()


# --- the built-in layers' forms ---------------------------------------------------------------


@register_torch(Dense)
def _dense(layer: Dense, torch: Any) -> Any:
    W = to_host(layer.W)
    linear = torch.nn.Linear(layer.n_in, layer.n_out, dtype=_torch_dtype(W.dtype))
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
        linear.bias.copy_(torch.from_numpy(to_host(layer.b).reshape(-1).copy()))
    return linear


@register_torch(Dropout)
def _dropout(layer: Dropout, torch: Any) -> Any:
    return torch.nn.Dropout(p=layer.rate)


@register_torch(Activation)
def _activation(layer: Activation, torch: Any) -> Any:
    return _torch_activation(torch.nn, layer.fn)


@register_torch(Standardize)
def _standardize(layer: Standardize, torch: Any) -> Any:
    _check_fitted(layer)
    return torch_module(
        torch, "Standardize", lambda m, x: (x - m.mean) / m.scale,
        buffers={"mean": to_host(layer.mean), "scale": to_host(layer.scale)},
    )  # fmt: skip


@register_torch(Scale)
def _scale(layer: Scale, torch: Any) -> Any:
    gain = layer.gain
    return torch_module(torch, "Scale", lambda m, x: x * (m.s * gain), {"s": to_host(layer.s)})


@register_torch(BatchEnsemble)
def _batch_ensemble(layer: BatchEnsemble, torch: Any) -> Any:
    k, i, o, shared = layer.k, layer.n_units, layer.n_out, layer.shared_input

    def forward(m: Any, x: Any) -> Any:
        n = x.shape[0]
        A = x[:, None, :] if shared else x.reshape(n, k, i)
        Z = torch.matmul(A * m.r, m.W) * m.s + m.b  # (n, k, o): one product for all members
        return Z.reshape(n, k * o)

    params = {"W": layer.W, "r": layer.R, "s": layer.S, "b": layer.b}
    host = {name: to_host(value) for name, value in params.items()}
    return torch_module(torch, f"BatchEnsemble(k={k})", forward, host)


@register_torch(EnsembleMean)
def _ensemble_mean(layer: EnsembleMean, torch: Any) -> Any:
    k = layer.k
    return torch_module(
        torch, f"EnsembleMean(k={k})", lambda m, x: x.reshape(x.shape[0], k, -1).mean(dim=1)
    )


@register_torch(PeriodicLinear)
def _periodic_linear(layer: PeriodicLinear, torch: Any) -> Any:
    d = layer.d

    def forward(m: Any, x: Any) -> Any:
        n = x.shape[0]
        V = x[:, :d, None] * (2 * np.pi * m.f) + m.phi  # (n, d, m)
        H = torch.einsum("ndm,dmo->ndo", torch.cos(V), m.L) + m.c  # (n, d, o)
        blocks = torch.cat([x[:, :d, None], H], dim=2).reshape(n, -1)
        return torch.cat([blocks, x[:, d:]], dim=1)

    params = {name: to_host(getattr(layer, name)) for name in ("f", "phi", "L", "c")}
    return torch_module(torch, "PeriodicLinear", forward, params)


@register_torch(RobustScale)
def _robust_scale(layer: RobustScale, torch: Any) -> Any:
    _check_fitted(layer)
    own, ind, rest = list(layer.owned), list(layer.indicators), list(layer.passthrough)

    def forward(m: Any, x: Any) -> Any:
        X = x[:, own]
        median, inv = m.median[:, own], m.inv_scale[:, own]
        U = (torch.where(torch.isnan(X), median, X) - median) * inv
        parts = [x[:, rest], U / torch.sqrt(1 + (U / 3) ** 2)]
        if ind:
            parts.append(torch.isnan(x[:, ind]).to(x.dtype))
        return torch.cat(parts, dim=1)

    buffers = {"median": to_host(layer.median), "inv_scale": to_host(layer.inv_scale)}
    return torch_module(torch, "RobustScale", forward, buffers=buffers)


@register_torch(Periodic)
def _periodic(layer: Periodic, torch: Any) -> Any:
    keep = layer.include_input

    def forward(m: Any, x: Any) -> Any:
        V = x[:, :, None] * (2 * np.pi * m.F)  # (n, d, m)
        parts = (
            [x[:, :, None], torch.cos(V), torch.sin(V)] if keep else [torch.cos(V), torch.sin(V)]
        )
        return torch.cat(parts, dim=2).reshape(x.shape[0], -1)

    return torch_module(torch, "Periodic", forward, {"F": to_host(layer.F)})


@register_torch(OneHot)
def _one_hot(layer: OneHot, torch: Any) -> Any:
    own, sizes, rest = list(layer.owned), list(layer.sizes), list(layer.passthrough)

    def forward(m: Any, x: Any) -> Any:
        blocks = [
            torch.nn.functional.one_hot(x[:, j].long(), size).to(x.dtype)
            for j, size in zip(own, sizes, strict=True)
        ]
        return torch.cat([x[:, rest], *blocks], dim=1)

    return torch_module(torch, "OneHot", forward)


@register_torch(Embedding)
def _embedding(layer: Embedding, torch: Any) -> Any:
    own, rest = list(layer.owned), list(layer.passthrough)

    def forward(m: Any, x: Any) -> Any:
        rows = [getattr(m, f"E{k}")[x[:, j].long()] for k, j in enumerate(own)]  # onehot(c) · E
        return torch.cat([x[:, rest], *rows], dim=1)

    tables = {f"E{k}": to_host(E) for k, E in enumerate(layer.E)}
    return torch_module(torch, "Embedding", forward, tables)


def _check_fitted(layer: Layer) -> None:
    if layer.needs_adapt():
        raise ConversionError(
            f"{layer!r} has no statistics yet: train the model (or call its adapt) first"
        )


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
