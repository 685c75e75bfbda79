"""``MLP``: the article's network, Dense and activation layers chained into a Sequential model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from matnet.activations import get_activation
from matnet.layers import Activation, Dense, Dropout, Layer, Standardize
from matnet.losses import Loss
from matnet.model import Sequential

__all__ = ["MLP"]


def MLP(
    sizes: Sequence[int],
    activation: Any = "relu",
    *,
    dropout: float | Sequence[float] = 0.0,
    standardize: bool = False,
    init: str | None = None,
    loss: str | Loss | None = None,
    dtype: Any = "float32",
    seed: int | np.random.Generator | None = 0,
    backend: str | None = None,
    device: str | None = None,
) -> Sequential:
    """A multilayer perceptron ``[n_in, h1, ..., n_out]``: Dense and activation layers, linear output.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first, at least two entries.
    activation : str, dict, Activation, or a sequence of them
        The hidden activation (a registered name, a config dict such as
        ``{"name": "leaky_relu", "alpha": 0.2}``, or an instance), or one per hidden layer.
    dropout : float or sequence of float
        Dropout rate after each hidden activation (one for all, or one per hidden layer).
    standardize : bool
        Put a :class:`~matnet.layers.Standardize` layer in front, so the model takes raw features:
        its mean and scale are fitted from the training rows by :func:`matnet.fit` and saved with
        the model.
    init : str, optional
        Weight initializer; by default the activation's own hint (He for ReLU-like activations,
        Glorot for the others).
    loss : str or Loss, optional
        The loss that the logits feed (its link gives :meth:`Sequential.predict_proba`).
    dtype, seed, backend, device
        As for :class:`Sequential`.

    Examples
    --------
    >>> model = MLP([64, 32, 10], "relu", loss="cross_entropy", seed=0)
    >>> model.n_params
    2410
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"MLP sizes={sizes!r} needs at least an input and an output width")
    n_hidden = len(sizes) - 2
    # One activation (a name, a config dict or an instance) for every hidden layer, or a list.
    one = isinstance(activation, (str, dict)) or not isinstance(activation, Sequence)
    activations = [activation] * n_hidden if one else list(activation)
    rates = [dropout] * n_hidden if isinstance(dropout, (int, float)) else list(dropout)
    if len(activations) != n_hidden:
        raise ValueError(f"{len(activations)} activations given for {n_hidden} hidden layers")
    if len(rates) != n_hidden:
        raise ValueError(f"{len(rates)} dropout rates given for {n_hidden} hidden layers")
    layers: list[Layer] = [Standardize(sizes[0])] if standardize else []
    for i in range(len(sizes) - 1):
        fn = get_activation(activations[i]) if i < n_hidden else None
        # The output layer is linear (the loss owns the link) and has always been drawn He.
        layer_init = init or ("he_normal" if fn is None or fn.init == "he" else "glorot_uniform")
        layers.append(Dense(sizes[i], sizes[i + 1], init=layer_init))
        if fn is not None:
            layers.append(Activation(fn))
            if rates[i]:
                layers.append(Dropout(rates[i]))
    return Sequential(layers, dtype=dtype, seed=seed, loss=loss, backend=backend, device=device)
