"""Divergence, Ctrl-C inside fit, and determinism."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

import matnet


def make_data(n=120, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    return X, y


def model(dtype="float32", dropout=0.0):
    return matnet.MLP([5, 16, 2], dropout=dropout, loss="cross_entropy", seed=0, dtype=dtype)


# --- divergence -----------------------------------------------------------------------------------


class Poison(matnet.Callback):
    """Puts a non-finite value into the parameters after a given step."""

    def __init__(self, net, step, value=np.nan, index=0):
        self.net, self.step, self.value, self.index = net, step, value, index

    def on_batch_end(self, step, logs):
        if step == self.step:
            self.net.flat_params[self.index] = self.value


class Snapshots(matnet.Callback):
    def __init__(self, net):
        self.net, self.weights = net, {}

    def on_epoch_end(self, epoch, logs):
        self.weights[epoch] = self.net.flat_params.copy()


def test_huge_learning_rate_raises_naming_epoch_step_and_fix_and_keeps_finite_weights():
    X, y = make_data()
    net = model()
    initial = net.flat_params.copy()
    with pytest.raises(matnet.TrainingDivergedError) as info:
        net.fit(X * 1e3, y, optimizer="sgd", learning_rate=1e8, epochs=5, verbose=0)
    message = str(info.value)
    assert "diverged at epoch 1, step" in message
    assert "smaller learning rate" in message and "1e+08" in message
    assert isinstance(info.value, ValueError)
    assert info.value.epoch == 1 and info.value.step >= 1
    # It failed inside the first epoch: the initial weights are back.
    assert np.array_equal(net.flat_params, initial)


def test_loss_checked_every_step_restores_the_last_good_epoch():
    X, y = make_data()
    net = model()
    snaps = Snapshots(net)
    # 120 rows at batch 32: 4 steps per epoch. Poison after step 10 (epoch 3, batch 2).
    with pytest.raises(matnet.TrainingDivergedError, match="epoch 3, step 11") as info:
        net.fit(X, y, epochs=6, verbose=0, callbacks=[snaps, Poison(net, 10)])
    assert "the loss of batch 3 of 4 is nan" in str(info.value)
    assert "the weights at the end of epoch 2" in str(info.value)
    assert np.array_equal(net.flat_params, snaps.weights[2])
    assert len(info.value.history) == 2


def test_parameters_checked_every_epoch():
    X, y = make_data()
    net = model()
    snaps = Snapshots(net)
    # Poisoned at the last step of epoch 2: no loss sees it before the end-of-epoch check.
    with pytest.raises(
        matnet.TrainingDivergedError,
        match="epoch 2, step 8: the parameters are no longer all finite",
    ):
        net.fit(X, y, epochs=4, verbose=0, callbacks=[snaps, Poison(net, 8, np.inf)])
    assert np.array_equal(net.flat_params, snaps.weights[1])


def test_divergence_with_early_stopping_restores_the_best_weights():
    X, y = make_data()
    net = model()
    snaps = Snapshots(net)
    with pytest.raises(matnet.TrainingDivergedError, match=r"best weights \(epoch \d\)") as info:
        net.fit(
            X,
            y,
            epochs=8,
            verbose=0,
            early_stopping=True,
            validation_fraction=0.25,
            callbacks=[snaps, Poison(net, 13)],
        )
    best = info.value.history.best_epoch
    assert np.array_equal(net.flat_params, snaps.weights[best])


def test_on_divergence_warn_stops_quietly():
    X, y = make_data()
    net = model()
    snaps = Snapshots(net)
    with pytest.warns(RuntimeWarning, match="diverged at epoch 2"):
        history = net.fit(
            X, y, epochs=5, verbose=0, on_divergence="warn", callbacks=[snaps, Poison(net, 6)]
        )
    assert history.diverged and not history.interrupted and len(history) == 1
    assert np.array_equal(net.flat_params, snaps.weights[1])


def test_divergence_never_overwrites_the_checkpoint(tmp_path):
    X, y = make_data()
    net = model()
    path = tmp_path / "run.ckpt"
    with pytest.raises(matnet.TrainingDivergedError):
        net.fit(X, y, epochs=5, verbose=0, checkpoint=path, callbacks=Poison(net, 10))
    from matnet.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    assert ckpt.state.epoch == 3 and ckpt.state.batch == 0
    assert np.all(np.isfinite(ckpt.params))


def test_on_divergence_is_validated():
    X, y = make_data()
    with pytest.raises(ValueError, match="on_divergence"):
        model().fit(X, y, on_divergence="ignore", verbose=0)


# --- Ctrl-C in the same process ---------------------------------------------------------------


class CtrlC(matnet.Callback):
    def __init__(self, step, times=1):
        self.step, self.times = step, times

    def on_batch_end(self, step, logs):
        if step == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


def test_sigint_stops_after_the_step_and_returns_history(tmp_path, capsys):
    X, y = make_data()
    net = model()
    handler = signal.getsignal(signal.SIGINT)
    path = tmp_path / "run.ckpt"
    history = net.fit(
        X, y, epochs=5, verbose=0, early_stopping=True, checkpoint=path, callbacks=CtrlC(6)
    )
    assert history.interrupted and len(history) == 1 and history.best_epoch == 1
    assert signal.getsignal(signal.SIGINT) is handler
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"matnet: interrupted at epoch 2, step 6; kept the best weights (epoch 1); "
        f"checkpoint written to {path}"
    ]
    from matnet.checkpoint import read_checkpoint

    assert read_checkpoint(path).state.step == 6


def test_second_sigint_raises_keyboard_interrupt():
    X, y = make_data()
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        model().fit(X, y, epochs=3, verbose=0, callbacks=CtrlC(2, times=2))
    assert signal.getsignal(signal.SIGINT) is handler


def test_fit_in_a_thread_leaves_the_sigint_handler_alone():
    X, y = make_data()
    handler = signal.getsignal(signal.SIGINT)
    seen = []

    class Look(matnet.Callback):
        def on_batch_end(self, step, logs):
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(
        target=lambda: model().fit(X, y, epochs=1, verbose=0, callbacks=Look())
    )
    thread.start()
    thread.join()
    assert seen and all(h is handler for h in seen)


# --- determinism ------------------------------------------------------------------------------


def train_once(dtype, **options):
    X, y = make_data(200)
    net = model(dtype, dropout=0.3)
    history = net.fit(
        X, y, epochs=4, batch_size=16, seed=11, validation_fraction=0.2, verbose=0, **options
    )
    return net.flat_params.copy(), history


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [None, 1])
def test_same_seed_data_and_threads_give_bit_identical_training(dtype, threads):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        first, h1 = train_once(dtype, early_stopping=True)
        second, h2 = train_once(dtype, early_stopping=True)
    assert first.dtype == np.dtype(dtype)
    assert np.array_equal(first, second)
    assert h1["loss"] == h2["loss"] and h1["val_loss"] == h2["val_loss"]


def test_a_different_seed_gives_different_training():
    first, _ = train_once("float64")
    X, y = make_data(200)
    net = model("float64", dropout=0.3)
    net.fit(X, y, epochs=4, batch_size=16, seed=12, validation_fraction=0.2, verbose=0)
    assert not np.array_equal(first, net.flat_params)
