"""Dropout and weight-decay schedules (RealMLP-TD's ``flat_cos``): the FlatCos schedule, the two
callbacks that scale a hyperparameter per epoch, their restoration at the end, and bit-identical
resumes with them present."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from crash import CrashAt, CrashError

import matnet
from matnet.checkpoint import read_checkpoint
from matnet.schedules import (
    CosLog,
    ExponentialDecay,
    FlatCos,
    ReduceLROnPlateau,
    Schedule,
    epoch_schedule,
    get_schedule,
)
from matnet.training import DropoutSchedule, WeightDecaySchedule


def pytabkit_flat_cos(t: float) -> float:
    """pytabkit's 'flat_cos' at training progress t: combine_scheds([0.5, 0.5], [constant 1,
    cos_sched.scaled(1, 0)]), cos_sched(x) = (1 - cos(pi x)) / 2 running from 0 to 1."""
    if t < 0.5:
        return 1.0
    x = (t - 0.5) / 0.5
    return 1.0 + (0.0 - 1.0) * 0.5 * (1.0 - math.cos(math.pi * x))


# --- FlatCos ------------------------------------------------------------------------------------


def test_flatcos_is_flat_then_a_half_cosine_to_zero():
    sched = FlatCos(10)
    factors = [sched.learning_rate(epoch, 1.0) for epoch in range(10)]
    assert factors[:5] == [1.0] * 5  # epoch middles 0.05 .. 0.45
    tail = factors[5:]
    assert all(a > b for a, b in zip(tail, tail[1:], strict=False))
    for epoch, value in enumerate(factors):
        assert value == pytest.approx(pytabkit_flat_cos((epoch + 0.5) / 10), abs=1e-12)
    assert factors[5] == pytest.approx(0.5 * (1 + math.cos(0.1 * math.pi)))
    assert FlatCos(200).learning_rate(199, 1.0) < 1e-4  # the last epoch is near 0
    assert sched.learning_rate(3, 0.15) == 0.15 and sched.learning_rate(7, 0.02) == pytest.approx(
        0.02 * factors[7]
    )
    assert sched.learning_rate(50, 1.0) == 0.0  # past the end: 0


def test_flatcos_fraction_and_registry():
    pure = FlatCos(4, flat_fraction=0)
    assert [pure.learning_rate(e, 1.0) for e in range(4)] == pytest.approx(
        [0.5 * (1 + math.cos(math.pi * (e + 0.5) / 4)) for e in range(4)]
    )
    late = FlatCos(10, flat_fraction=0.8)
    assert [late.learning_rate(e, 1.0) for e in range(8)] == [1.0] * 8
    assert late.learning_rate(8, 1.0) < 1
    built = get_schedule("flatcos", total_epochs=12)
    assert isinstance(built, FlatCos) and built.total_epochs == 12 and built.flat_fraction == 0.5
    assert matnet.FlatCos is FlatCos


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"total_epochs": 0}, "total_epochs=0 must be a positive integer"),
        ({"total_epochs": 2.5}, "total_epochs=2.5 must be a positive integer"),
        ({"total_epochs": True}, "total_epochs=True must be a positive integer"),
        ({"total_epochs": 5, "flat_fraction": 1}, "flat_fraction=1 must be a number in"),
        ({"total_epochs": 5, "flat_fraction": -0.1}, "flat_fraction=-0.1 must be"),
        ({"total_epochs": 5, "flat_fraction": "0.5"}, "flat_fraction='0.5' must be"),
        ({"total_epochs": 5, "flat_fraction": math.nan}, "flat_fraction=nan must be"),
    ],
)
def test_flatcos_refuses_bad_arguments_by_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FlatCos(**kwargs)


def test_epoch_schedule_builds_names_for_the_run_and_refuses_loss_driven_ones():
    assert epoch_schedule("flatcos", 30).total_epochs == 30
    assert epoch_schedule("coslog", 30).total_epochs == 30
    assert isinstance(epoch_schedule("exponential", 30), ExponentialDecay)  # takes no epochs
    given = CosLog(8)
    assert epoch_schedule(given, 30) is given
    with pytest.raises(ValueError, match="unknown schedule 'flatcosine'"):
        DropoutSchedule("flatcosine")
    with pytest.raises(ValueError, match="ReduceLROnPlateau follows the monitored loss"):
        WeightDecaySchedule(ReduceLROnPlateau())
    with pytest.raises(ValueError, match="ReduceLROnPlateau follows the monitored loss"):
        DropoutSchedule("plateau")
    with pytest.raises(TypeError, match="got 0.5"):
        DropoutSchedule(0.5)


# --- the callbacks in a run -----------------------------------------------------------------


def make_data(n=96, d=5, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


class Recorder(matnet.Callback):
    """What the model's Dropout layers and the optimizer hold during each epoch's steps."""

    def __init__(self) -> None:
        self.rates: dict[int, list[float]] = {}
        self.decay: dict[int, dict[str, float]] = {}

    def on_batch_end(self, step, logs):
        model, opt = self.trainer.model, self.trainer.optimizer
        rates = [layer.rate for layer in model.layers if isinstance(layer, matnet.Dropout)]
        decay = {"l2": opt.l2, "weight_decay": getattr(opt, "weight_decay", None)}
        assert self.rates.setdefault(logs["epoch"], rates) == rates  # one value per epoch
        assert self.decay.setdefault(logs["epoch"], decay) == decay


def model_with_dropout(rates=(0.2, 0.3), seed=0):
    return matnet.MLP([5, 8, 8, 3], dropout=list(rates), loss="cross_entropy", seed=seed)


def test_dropout_rates_follow_the_schedule_and_come_back():
    X, y = make_data()
    model, recorder = model_with_dropout(), Recorder()
    config = model.config()
    matnet.fit(
        model, X, y, epochs=8, batch_size=32, verbose=0,
        callbacks=[recorder, DropoutSchedule("flatcos")],
    )  # fmt: skip
    factors = [FlatCos(8).learning_rate(epoch, 1.0) for epoch in range(8)]
    for epoch in range(1, 9):
        expected = [0.2 * factors[epoch - 1], 0.3 * factors[epoch - 1]]
        assert recorder.rates[epoch] == pytest.approx(expected, rel=1e-15)
    assert recorder.rates[1] == [0.2, 0.3] and recorder.rates[4] == [0.2, 0.3]
    assert recorder.rates[8][0] < 0.2 * 0.05
    assert model.config() == config  # the base rates, as built
    assert [layer.rate for layer in model.layers if isinstance(layer, matnet.Dropout)] == [0.2, 0.3]


class Zero(Schedule):
    name = "zero"

    def learning_rate(self, epoch, base_lr):
        return 0.0


def test_the_scheduled_values_are_what_the_steps_use():
    """A schedule at 0 trains exactly as rates / weight decay built at 0 (the value set is the one
    forward and the optimizer read), and differently from the unscheduled run."""
    X, y = make_data()
    options = dict(epochs=3, batch_size=16, verbose=0, seed=5, learning_rate=0.01)
    scheduled = model_with_dropout()
    matnet.fit(scheduled, X, y, callbacks=[DropoutSchedule(Zero())], **options)
    off = model_with_dropout()
    for layer in off.layers:
        if isinstance(layer, matnet.Dropout):
            layer.rate = 0.0
    matnet.fit(off, X, y, **options)
    plain = model_with_dropout()
    matnet.fit(plain, X, y, **options)
    assert np.array_equal(scheduled.flat_params, off.flat_params)
    assert not np.array_equal(scheduled.flat_params, plain.flat_params)

    results = []
    for decay, callbacks in ((0.05, [WeightDecaySchedule(Zero())]), (0.0, []), (0.05, [])):
        model = matnet.MLP([5, 8, 3], loss="cross_entropy", seed=0)
        opt = matnet.AdamW(weight_decay=decay)
        matnet.fit(model, X, y, optimizer=opt, callbacks=callbacks, **options)
        results.append(model.flat_params)
    assert np.array_equal(results[0], results[1])
    assert not np.array_equal(results[0], results[2])


@pytest.mark.parametrize(
    "optimizer, l2, scheduled",
    [
        (lambda: matnet.AdamW(weight_decay=0.02), 0.0, ["weight_decay"]),
        (lambda: matnet.Adam(), 1e-3, ["l2"]),
        (lambda: matnet.SGD(momentum=0.9), 1e-3, ["l2"]),
        (lambda: matnet.AdamW(weight_decay=0.02), 1e-3, ["weight_decay", "l2"]),
    ],
)
def test_weight_decay_follows_the_schedule_and_comes_back(optimizer, l2, scheduled):
    X, y = make_data()
    model, recorder, opt = (
        matnet.MLP([5, 8, 3], loss="cross_entropy", seed=0),
        Recorder(),
        optimizer(),
    )
    matnet.fit(
        model, X, y, optimizer=opt, l2=l2, epochs=6, batch_size=32, verbose=0,
        callbacks=[WeightDecaySchedule(FlatCos(6)), recorder],
    )  # fmt: skip
    base = {"l2": l2, "weight_decay": getattr(opt, "weight_decay", None)}
    sched = FlatCos(6)
    for epoch in range(1, 7):
        for name, value in base.items():
            want = sched.learning_rate(epoch - 1, value) if name in scheduled else value
            assert recorder.decay[epoch][name] == want
    assert recorder.decay[6][scheduled[0]] < 0.1 * base[scheduled[0]]
    assert opt.l2 == l2 and getattr(opt, "weight_decay", None) == base["weight_decay"]


@pytest.mark.parametrize(
    "optimizer, match",
    [
        (
            "adam",
            r"optimizer 'adam' has no weight decay to schedule \(l2=0\); use optimizer='adamw'",
        ),
        ("sgd", r"optimizer 'sgd' has no weight decay"),
        (
            {"name": "adamw", "weight_decay": 0.0},
            r"'adamw' has no weight decay to schedule \(l2=0, weight_decay=0\)",
        ),
    ],
)
def test_weight_decay_schedule_without_a_decay_is_refused_before_any_step(optimizer, match):
    X, y = make_data()
    model = matnet.MLP([5, 8, 3], loss="cross_entropy", seed=0)
    before = model.flat_params.copy()
    with pytest.raises(ValueError, match=match):
        matnet.fit(
            model, X, y, optimizer=optimizer, verbose=0, callbacks=[WeightDecaySchedule("flatcos")]
        )
    assert np.array_equal(model.flat_params, before)


def test_dropout_schedule_without_dropout_is_refused():
    X, y = make_data()
    model = matnet.MLP([5, 8, 3], loss="cross_entropy", seed=0)
    with pytest.raises(ValueError, match="no Dropout layer with a rate above 0"):
        matnet.fit(model, X, y, verbose=0, callbacks=[DropoutSchedule("flatcos")])


def test_a_schedule_that_leaves_the_range_stops_the_run_and_the_rates_come_back():
    X, y = make_data()
    model = model_with_dropout((0.4, 0.3))
    with pytest.raises(ValueError, match=r"rate=1.6 at epoch 3 \(base 0.4\)"):
        matnet.fit(
            model, X, y, epochs=4, verbose=0, callbacks=[DropoutSchedule(ExponentialDecay(2.0))]
        )
    assert [layer.rate for layer in model.layers if isinstance(layer, matnet.Dropout)] == [0.4, 0.3]


# --- resuming ---------------------------------------------------------------------------------


def scheduled_run(path=None, crash_at=None, **kwargs):
    """8 epochs of 6 steps with both schedules, AdamW, dropout, shuffling and a validation split."""
    X, y = make_data(n=100)
    model = model_with_dropout((0.25, 0.15))
    callbacks = [DropoutSchedule("flatcos"), WeightDecaySchedule(FlatCos(8))]
    callbacks += [CrashAt(crash_at)] if crash_at else []
    options = dict(
        optimizer=matnet.AdamW(learning_rate=0.01, weight_decay=0.05),
        epochs=8, batch_size=16, seed=7, validation_fraction=0.2, verbose=0,
        schedule=CosLog(8), checkpoint=path, callbacks=callbacks,
    )  # fmt: skip
    options.update(kwargs)
    history = matnet.fit(model, X, y, **options)
    return model, history


@pytest.mark.parametrize("every", ["epoch", 3])
@pytest.mark.parametrize("crash_at", [9, 27, 45])  # epochs 2 (flat), 5 and 8 (cosine)
def test_resume_with_the_schedules_is_bit_identical(tmp_path, every, crash_at):
    reference, ref_history = scheduled_run()
    path = tmp_path / "run.ckpt"
    with pytest.raises(CrashError):
        scheduled_run(path, crash_at=crash_at, checkpoint_every=every)
    ckpt = read_checkpoint(path)
    # The checkpoint holds the run's settings (a fresh model's and optimizer's), not the epoch's.
    rates = [layer["rate"] for layer in ckpt.model_config["layers"] if layer["type"] == "Dropout"]
    assert rates == [0.25, 0.15]
    assert ckpt.optimizer_config["weight_decay"] == 0.05
    assert ckpt.state.epoch > 1 or ckpt.state.batch > 0  # it stopped after some progress
    resumed, history = scheduled_run(path, resume=True, checkpoint_every=every)
    assert history.resumed_from is not None
    assert np.array_equal(resumed.flat_params, reference.flat_params)
    assert history["val_loss"] == ref_history["val_loss"]


def test_the_schedules_change_the_result():
    """The resume test above would pass trivially if the callbacks did nothing."""
    reference, _ = scheduled_run()
    plain, _ = scheduled_run(callbacks=[])
    assert not np.array_equal(reference.flat_params, plain.flat_params)


def test_the_documented_example_runs():
    text = (Path(__file__).resolve().parents[1] / "docs" / "schedules.md").read_text("utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    exec(compile(code, "docs/schedules.md", "exec"), namespace)
    history = namespace["history"]
    assert len(history) == 16 and history["loss"][-1] < history["loss"][0]
