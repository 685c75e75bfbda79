"""fit(): determinism, validation, early stopping, callbacks, history, and errors before any change."""

from __future__ import annotations

import numpy as np
import pytest

import matnet
from matnet import Callback


def _blobs(rng, n=300, d=5, k=3, dtype=np.float64):
    centers = rng.normal(scale=3.0, size=(k, d))
    y = rng.integers(0, k, n)
    X = centers[y] + rng.normal(size=(n, d))
    return X.astype(dtype), y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_gives_bit_identical_weights(dtype, rng):
    X, y = _blobs(rng)

    def run():
        model = matnet.MLP([5, 16, 3], "relu", dropout=0.2, dtype=dtype, seed=3)
        model.fit(
            X,
            y,
            loss="cross_entropy",
            epochs=5,
            batch_size=32,
            seed=11,
            validation_fraction=0.2,
            verbose=0,
        )
        return model.flat_params

    first, second = run(), run()
    assert first.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(first, second)


def test_float64_end_to_end(rng):
    X, y = _blobs(rng)
    model = matnet.MLP([5, 8, 3], dtype="float64")
    model.fit(X, y, loss="cross_entropy", epochs=2, verbose=0)
    Z, _ = model.forward(X)
    assert model.flat_params.dtype == model.flat_grads.dtype == Z.dtype == np.float64
    assert model.predict_proba(X).dtype == np.float64


def test_learns_blobs_with_every_optimizer(rng):
    X, y = _blobs(rng)
    for optimizer in ["sgd", "adam", "adamw", matnet.SGD(0.05, momentum=0.9, nesterov=True)]:
        model = matnet.MLP([5, 16, 3], seed=0)
        history = model.fit(
            X,
            y,
            loss="cross_entropy",
            optimizer=optimizer,
            epochs=30,
            learning_rate=None,
            verbose=0,
        )
        assert history["loss"][-1] < history["loss"][0]
        assert np.mean(model.predict(X) == y) > 0.95, optimizer


def test_regression_and_multilabel(rng):
    X = rng.normal(size=(200, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1
    model = matnet.MLP([4, 16, 1], "tanh", seed=0)
    model.fit(X, y, loss="mse", epochs=60, learning_rate=0.01, verbose=0)
    assert model.evaluate(X, y)["r2"] > 0.95
    assert model.predict(X).shape == (200,)
    Y = (X[:, :2] > 0).astype(int)
    multi = matnet.MLP([4, 16, 2], seed=0)
    multi.fit(X, Y, loss="binary_cross_entropy", epochs=60, learning_rate=0.01, verbose=0)
    assert np.mean(multi.predict(X) == Y) > 0.9
    assert multi.predict_proba(X).shape == (200, 2)


def test_history_validation_and_learning_rate_schedule(rng):
    X, y = _blobs(rng)
    Xv, yv = _blobs(rng, n=50)
    model = matnet.MLP([5, 8, 3])
    history = model.fit(
        X,
        y,
        loss="cross_entropy",
        epochs=4,
        validation_data=(Xv, yv),
        optimizer="sgd",
        learning_rate=0.1,
        schedule=matnet.StepDecay(2, 0.5),
        verbose=0,
    )
    assert len(history) == 4
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["learning_rate"] == [0.1, 0.1, 0.05, 0.05]
    assert set(history.keys()) >= {"loss", "val_loss", "val_accuracy", "seconds"}
    assert all(v > 0 for v in history["seconds"])


def test_early_stopping_restores_the_best_weights(rng):
    X, y = _blobs(rng, n=200)
    Xv, yv = _blobs(rng, n=40)
    snapshots = {}

    class Snapshot(Callback):
        def on_epoch_end(self, epoch, logs):
            snapshots[epoch] = model.flat_params.copy()

    model = matnet.MLP([5, 64, 3], seed=0)
    history = model.fit(
        X,
        y,
        loss="cross_entropy",
        epochs=200,
        learning_rate=0.05,
        validation_data=(Xv, yv + 0),
        early_stopping=True,
        patience=3,
        callbacks=[Snapshot()],
        verbose=0,
    )
    assert history.stopped_early and len(history) < 200
    best = int(np.argmin(history["val_loss"])) + 1
    assert history.best_epoch == best
    np.testing.assert_array_equal(model.flat_params, snapshots[best])


def test_callbacks_are_called_and_can_stop(rng):
    X, y = _blobs(rng, n=100)
    calls = []

    class Recorder(Callback):
        def on_train_begin(self, logs):
            calls.append("begin")

        def on_batch_end(self, step, logs):
            calls.append(("batch", step, logs["batch_size"]))

        def on_train_end(self, logs):
            calls.append("end")

    def stop_after_two(epoch, logs):
        return epoch == 2

    history = matnet.MLP([5, 3]).fit(
        X,
        y,
        loss="cross_entropy",
        epochs=10,
        batch_size=40,
        callbacks=[Recorder(), stop_after_two],
        verbose=0,
    )
    assert len(history) == 2
    assert calls[0] == "begin" and calls[-1] == "end"
    assert [c[2] for c in calls if c[0] == "batch"] == [40, 40, 20, 40, 40, 20]


def test_batch_larger_than_data_and_clip_norm(rng):
    X, y = _blobs(rng, n=10)
    model = matnet.MLP([5, 3])
    history = model.fit(
        X, y, loss="cross_entropy", epochs=3, batch_size=1000, clip_norm=0.01, verbose=0
    )
    assert len(history) == 3


def test_verbose_zero_prints_nothing(rng, capsys):
    X, y = _blobs(rng, n=50)
    matnet.MLP([5, 3]).fit(X, y, loss="cross_entropy", epochs=2, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    matnet.MLP([5, 3]).fit(X, y, loss="cross_entropy", epochs=2, verbose=2)
    assert "epoch 2" in capsys.readouterr().err


BAD_INPUTS = [
    (
        "nan in X",
        lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y),
        {},
        "NaN or infinity",
    ),
    (
        "inf in X",
        lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 3, np.inf, X), y),
        {},
        "NaN or infinity",
    ),
    ("nan in y", lambda X, y: (X, np.where(np.arange(y.size) == 2, np.nan, y)), {}, "NaN"),
    ("wrong width", lambda X, y: (X[:, :4], y), {}, "4 features, but the model expects 5"),
    ("empty X", lambda X, y: (X[:0], y[:0]), {}, "0 rows"),
    ("1-D X", lambda X, y: (X[:, 0], y), {}, "must be 2-D"),
    ("labels of the wrong length", lambda X, y: (X, y[:-1]), {}, "labels for"),
    ("labels out of range", lambda X, y: (X, y + 5), {}, "class indices must lie"),
    ("unknown loss", lambda X, y: (X, y), {"loss": "hinge"}, "unknown loss"),
    ("unknown optimizer", lambda X, y: (X, y), {"optimizer": "rmsprop"}, "unknown optimizer"),
    ("zero batch size", lambda X, y: (X, y), {"batch_size": 0}, "batch_size=0"),
    ("negative batch size", lambda X, y: (X, y), {"batch_size": -3}, "batch_size=-3"),
    ("zero learning rate", lambda X, y: (X, y), {"learning_rate": 0.0}, "learning_rate=0.0"),
    ("negative learning rate", lambda X, y: (X, y), {"learning_rate": -0.1}, "learning_rate"),
    ("zero epochs", lambda X, y: (X, y), {"epochs": 0}, "epochs=0"),
    ("unknown schedule", lambda X, y: (X, y), {"schedule": "warm"}, "unknown schedule"),
    ("string features", lambda X, y: (X.astype(str), y), {}, "numeric features"),
]


@pytest.mark.parametrize("case,mutate,kwargs,message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_before_any_parameter_changes(case, mutate, kwargs, message, rng):
    X, y = _blobs(rng, n=40)
    X, y = mutate(X, y)
    model = matnet.MLP([5, 8, 3], seed=0)
    before = model.flat_params.copy()
    options = {"loss": "cross_entropy", "epochs": 2, "verbose": 0, **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        model.fit(X, y, **options)
    np.testing.assert_array_equal(model.flat_params, before)


def test_unknown_activation_and_predict_errors(rng):
    with pytest.raises(ValueError, match="unknown activation 'sigmoidal'"):
        matnet.MLP([5, 8, 3], "sigmoidal")
    model = matnet.MLP([5, 3], loss="cross_entropy")
    with pytest.raises(ValueError, match="expects 5"):
        model.predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((2, 5), np.nan))


@pytest.mark.slow
def test_digits_reaches_097(rng):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    mean, std = Xtr.mean(0), Xtr.std(0)
    std[std == 0] = 1
    model = matnet.MLP([64, 128, 64, 10], loss="cross_entropy", seed=0)
    model.fit(
        (Xtr - mean) / std,
        ytr,
        epochs=100,
        batch_size=32,
        validation_fraction=0.1,
        early_stopping=True,
        verbose=0,
    )
    assert np.mean(model.predict((Xte - mean) / std) == yte) >= 0.97
