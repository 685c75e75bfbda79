"""The task layer (matnet/task.py): inputs in every form a user has, targets, answers, and the one
frozen set of training options."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import numpy as np
import pytest

import matnet
from matnet.task import FitConfig, Task


def data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    return X, y


def model(seed=0):
    return matnet.MLP([3, 8, 2], loss="cross_entropy", seed=seed, dtype="float64")


def test_the_model_keeps_what_its_answers_mean_in_its_task():
    m = model()
    assert isinstance(m.task, Task)
    m.classes = ["no", "yes"]
    m.feature_names = ["a", "b", "c"]
    assert m.task.classes == ["no", "yes"] and m.task.feature_names == ["a", "b", "c"]
    m.task.target_scaling = (np.zeros(1), np.ones(1))
    assert m.target_scaling is m.task.target_scaling


def test_a_config_and_the_same_keywords_give_bit_identical_weights():
    X, y = data()
    a, b = model(), model()
    config = FitConfig(epochs=3, batch_size=16, seed=5, verbose=0)
    a.fit(X, y, config)
    b.fit(X, y, epochs=3, batch_size=16, seed=5, verbose=0)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    # Keywords replace the config's fields; the config itself is frozen.
    c = model()
    c.fit(X, y, FitConfig(epochs=1, verbose=0), epochs=3, batch_size=16, seed=5)
    np.testing.assert_array_equal(a.flat_params, c.flat_params)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 4  # type: ignore[misc]


def test_an_unknown_fit_option_names_the_closest_one():
    X, y = data()
    m = model()
    before = m.flat_params.copy()
    with pytest.raises(TypeError, match=r"unknown option 'epoch'; did you mean 'epochs'\?"):
        m.fit(X, y, epoch=3)
    with pytest.raises(TypeError, match="config must be a FitConfig"):
        matnet.fit(m, X, y, {"epochs": 3})
    np.testing.assert_array_equal(m.flat_params, before)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("epochs", 0, "epochs=0 must be a positive integer"),
        ("batch_size", 2.5, "batch_size=2.5 must be a positive integer"),
        ("patience", -1, "patience=-1 must be a non-negative integer"),
        ("validation_fraction", 1.0, r"validation_fraction=1.0 must be in \[0, 1\)"),
        ("on_divergence", "ignore", "on_divergence='ignore' must be 'raise' or 'warn'"),
        ("resume_overrides", ["seed"], "resume_overrides names 'seed'"),
    ],
)
def test_a_config_is_checked_when_made(option, value, message):
    with pytest.raises(ValueError, match=message):
        FitConfig(**{option: value})


def test_fit_shows_every_option_from_the_one_definition():
    fields = [f.name for f in dataclasses.fields(FitConfig)]
    for function in (matnet.fit, matnet.Sequential.fit):
        parameters = inspect.signature(function).parameters
        assert [p for p in parameters if p in fields] == fields
        assert "config" in parameters


def test_predict_takes_a_dict_of_columns_and_a_list_of_row_dicts():
    X, y = data()
    m = model()
    m.feature_names = ["a", "b", "c"]
    m.fit(X, y, epochs=2, verbose=0)
    expected = m.predict_proba(X[:4])
    columns = {"c": X[:4, 2], "a": X[:4, 0], "b": X[:4, 1]}  # any order: matched by name
    np.testing.assert_array_equal(m.predict_proba(columns), expected)
    rows = [{"b": r[1], "a": r[0], "c": r[2]} for r in X[:4].tolist()]
    np.testing.assert_array_equal(m.predict_proba(rows), expected)
    with pytest.raises(ValueError, match=r"lacks 1 of the model's 3 features \('c'\)"):
        m.predict({"a": X[:4, 0], "b": X[:4, 1]})
    with pytest.raises(ValueError, match="give every row the same keys"):
        m.predict([{"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 1.0}])


def test_a_pickled_model_keeps_its_labels_and_names():
    X, y = data()
    m = model()
    m.feature_names = ["a", "b", "c"]
    m.fit(X, y, epochs=2, verbose=0)
    back = pickle.loads(pickle.dumps(m))
    assert back.classes == ["no", "yes"] and back.feature_names == ["a", "b", "c"]
    assert back.predict(X[:5]).tolist() == m.predict(X[:5]).tolist()
