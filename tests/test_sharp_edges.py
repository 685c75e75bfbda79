"""The public API's sharp edges that issue 11 found, each now correct behaviour or a clear error."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import matnet


def test_a_dict_activation_applies_to_every_hidden_layer_with_its_initializer():
    model = matnet.MLP([4, 5, 6, 3], activation={"name": "leaky_relu", "alpha": 0.2})
    hidden = [layer for layer in model.layers if isinstance(layer, matnet.Activation)]
    assert [layer.fn.name for layer in hidden] == ["leaky_relu", "leaky_relu"]
    assert all(layer.fn.alpha == 0.2 for layer in hidden)
    assert [layer.init for layer in model.dense_layers] == ["he_normal"] * 3  # ReLU-like: He


def test_an_activation_instance_and_a_list_of_dicts_work_too():
    leaky = matnet.activations.get_activation({"name": "leaky_relu", "alpha": 0.3})
    model = matnet.MLP([4, 5, 3], activation=leaky)
    assert model.layers[1].fn is leaky
    model = matnet.MLP([4, 5, 5, 3], activation=[{"name": "tanh"}, "relu"])
    assert [layer.init for layer in model.dense_layers] == [
        "glorot_uniform",
        "he_normal",
        "he_normal",
    ]


def test_soft_cross_entropy_targets_must_be_distributions():
    model = matnet.MLP([3, 3], loss="cross_entropy", dtype="float64")
    X = np.ones((2, 3))
    good = np.array([[0.2, 0.8, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    assert np.isfinite(model.evaluate(X, good)["loss"])
    with pytest.raises(ValueError, match="row 1 sums to 0.9"):
        model.evaluate(X, np.array([[0.2, 0.8, 0.0], [0.3, 0.3, 0.3]]))
    with pytest.raises(ValueError, match="non-negative rows that sum to 1"):
        model.evaluate(X, np.array([[1.5, -0.5, 0.0], [1.0, 0.0, 0.0]]))


def test_sequential_fit_shows_its_options():
    options = inspect.signature(matnet.Sequential.fit).parameters
    shown = set(options) - {"self", "X", "y", "config"}
    assert {"optimizer", "epochs", "batch_size", "validation_fraction", "checkpoint"} <= shown
    assert not any(p.kind is p.VAR_KEYWORD for p in options.values())
    # Every option of matnet.fit is there, with the same default: both are FitConfig's fields.
    from dataclasses import fields

    from matnet.task import FitConfig

    assert shown == {f.name for f in fields(FitConfig)}
    for name, parameter in inspect.signature(matnet.fit).parameters.items():
        if name not in ("model", "X", "y"):
            assert options[name].default == parameter.default, name
