"""Every parameter as a view into one flat vector (and every gradient into another).

Layers still see ordinary ``(n_in, n_out)`` arrays, but an optimizer step is a few whole-vector NumPy
operations, a data-parallel all-reduce is one call, and gradcheck and model files flatten for free.
Keys are ``"<layer index>.<name>"`` (``"0.W"``, ``"0.b"``, ``"2.W"``): the one scheme used by the
optimizer state, model files, :func:`matnet.gradcheck` and the estimators' ``coefs_``. In the flat
vectors all weights come first (``flat_params[:n_decay]``), then the biases, so L2 and weight decay
touch a prefix slice. Non-trainable state (a Standardize layer's mean, a TableInput's vocabulary
flags) lives the same way in ``flat_state``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["allocate", "bind_params", "bind_state"]


def allocate(model: Any) -> None:
    """Give ``model`` zeroed flat vectors for its layers' parameters, gradients and state, and
    bind every layer to its views: sets ``n_params``, ``n_decay``, ``n_state``, ``params``,
    ``grads``, ``slices``, ``state``, ``flat_params``, ``flat_grads`` and ``flat_state``."""
    specs = [
        (f"{i}.{name}", i, name, shape, decayed)
        for i, layer in enumerate(model.layers)
        for name, shape, decayed in layer.param_specs()
    ]
    specs.sort(key=lambda s: not s[4])  # weights first; stable, so layer order is kept
    sizes = [int(np.prod(shape)) for *_, shape, _ in specs]
    model.n_params = sum(sizes)
    model.n_decay = sum(size for size, spec in zip(sizes, specs, strict=True) if spec[4])
    model._specs = specs
    zeros = np.zeros(model.n_params, dtype=model.dtype)
    bind_params(model, zeros, np.zeros_like(zeros))
    model._state_specs = [
        (f"{i}.{name}", i, name, shape)
        for i, layer in enumerate(model.layers)
        for name, shape in layer.state_specs()
    ]
    model.n_state = sum(int(np.prod(shape)) for *_, shape in model._state_specs)
    bind_state(model, np.zeros(model.n_state, dtype=model.dtype))


def bind_state(model: Any, flat_state: Any) -> None:
    """Make every piece of non-trainable state a view into ``flat_state``."""
    model.flat_state = flat_state
    #: Non-trainable state (``"0.mean"``, ...): saved and moved with the model, never trained.
    model.state = {}
    per_layer: dict[int, dict] = {i: {} for i in range(len(model.layers))}
    offset = 0
    for key, i, name, shape in model._state_specs:
        size = int(np.prod(shape))
        model.state[key] = per_layer[i][name] = flat_state[offset : offset + size].reshape(shape)
        offset += size
    for i, layer in enumerate(model.layers):
        layer.bind_state(per_layer[i])


def bind_params(model: Any, flat_params: Any, flat_grads: Any) -> None:
    """Make every parameter and gradient a view into these two flat vectors (``model.slices``
    says where each lives)."""
    specs = model._specs
    sizes = [int(np.prod(shape)) for *_, shape, _ in specs]
    model.flat_params, model.flat_grads = flat_params, flat_grads
    params: dict[str, Any] = {}
    grads: dict[str, Any] = {}
    model.slices = {}
    per_layer: dict[int, tuple[dict, dict]] = {i: ({}, {}) for i in range(len(model.layers))}
    offset = 0
    for (key, i, name, shape, _), size in zip(specs, sizes, strict=True):
        p = flat_params[offset : offset + size].reshape(shape)
        g = flat_grads[offset : offset + size].reshape(shape)
        params[key], grads[key] = p, g
        model.slices[key] = slice(offset, offset + size)
        per_layer[i][0][name], per_layer[i][1][name] = p, g
        offset += size
    model.params = {key: params[key] for key, *_ in sorted(specs, key=lambda s: s[1])}
    model.grads = {key: grads[key] for key in model.params}
    for i, layer in enumerate(model.layers):
        layer.bind(*per_layer[i])
