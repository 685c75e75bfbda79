"""The training loop's protocol: non-trainable state through fit, checkpoints and ranks; what a
callback may change (the rate, stopping, the parameters at the end); the optimizer's sharp edges."""

from __future__ import annotations

import numpy as np
import pytest

import matnet
from matnet.checkpoint import read_checkpoint
from matnet.distributed import Communicator, simulate
from matnet.layers import Activation, Dense, Layer
from matnet.losses import MeanSquaredError
from matnet.model import Sequential
from matnet.training import Callback, LocalComm, Trainer


class Shift(Layer):
    """Test-only layer with non-trainable state: subtracts a per-feature mean fitted by adapt()."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width, self.fitted, self.adapt_calls = width, False, 0

    def state_specs(self):
        return [("mean", (self.width,))]

    def bind_state(self, state):
        self.mean = state["mean"]

    def needs_adapt(self):
        return not self.fitted

    def adapt(self, A_prev):
        self.mean[...] = A_prev.mean(axis=0)
        self.fitted = True
        self.adapt_calls += 1

    def forward(self, A_prev, training=False, rng=None, rows=None):
        return A_prev - self.mean, lambda dA: dA

    def config(self):
        return {"type": "Shift", "width": self.width}


def shift_model() -> Sequential:
    layers = [Dense(5, 8), Shift(8), Activation("tanh"), Dense(8, 3)]
    return Sequential(layers, dtype="float64", seed=4, loss="cross_entropy")


def shift(model: Sequential) -> Shift:
    return model.layers[1]


def data(n: int = 150):
    rng = np.random.default_rng(7)
    X = rng.normal(2.0, 1.5, size=(n, 5))  # off-centre, so the fitted mean is far from zero
    y = (X[:, 0] > 2).astype(int) + (X[:, 1] > 3)
    return X, y


OPTIONS = dict(
    batch_size=16, learning_rate=0.01, validation_fraction=0.2, seed=3, verbose=0, epochs=4
)


def test_fit_adapts_the_state_on_the_training_rows_after_the_split(tmp_path):
    X, y = data()
    model = shift_model()
    path = tmp_path / "run.ckpt"
    matnet.fit(model, X, y, checkpoint=path, **OPTIONS)
    assert shift(model).adapt_calls == 1
    val_idx = read_checkpoint(path).val_idx
    train = np.setdiff1d(np.arange(len(X)), val_idx)
    expected = shift_model()  # the same initial weights: adapt runs before the first step
    expected.adapt(X[train])
    np.testing.assert_array_equal(model.flat_state, expected.flat_state)
    assert np.abs(model.flat_state).max() > 0.5  # a real fitted mean, not the zeros it started at


def test_state_survives_checkpoint_and_resume_bit_identically(tmp_path):
    X, y = data()
    whole = shift_model()
    matnet.fit(whole, X, y, **OPTIONS)

    path = tmp_path / "run.ckpt"
    first = shift_model()
    matnet.fit(first, X, y, checkpoint=path, **{**OPTIONS, "epochs": 2})
    np.testing.assert_array_equal(read_checkpoint(path).flat_state, first.flat_state)
    resumed = shift_model()  # a fresh process: state zeros, layer not fitted
    history = matnet.fit(resumed, X, y, checkpoint=path, resume=True, **OPTIONS)
    assert history.resumed_from == (3, 0)
    assert shift(resumed).adapt_calls == 0  # the state comes from the checkpoint, not the data
    np.testing.assert_array_equal(resumed.flat_state, whole.flat_state)
    np.testing.assert_array_equal(resumed.flat_params, whole.flat_params)


def test_a_checkpoint_without_the_models_state_is_refused(tmp_path):
    X, y = data()
    path = tmp_path / "run.ckpt"
    matnet.fit(shift_model(), X, y, checkpoint=path, **{**OPTIONS, "epochs": 1})
    tensors, meta = matnet.io.load_tensors(path)
    del tensors["state"]
    matnet.io.save_tensors(path, tensors, meta)
    with pytest.raises(matnet.errors.ModelFileError, match="8"):
        matnet.fit(shift_model(), X, y, checkpoint=path, resume=True, **OPTIONS)


def test_rank0s_state_is_broadcast_to_every_rank():
    X, y = data()

    def rank_main(comm):
        model = shift_model()
        if comm.rank:  # other ranks hold a different, already "fitted" state: rank 0's must win
            shift(model).mean[...] = 100.0 + comm.rank
            shift(model).fitted = True
        matnet.fit(model, X, y, comm=comm, **{**OPTIONS, "validation_fraction": 0.0})
        return model.flat_state.copy(), model.flat_params.copy()

    results = simulate(3, rank_main, timeout=60)
    reference = shift_model()
    reference.adapt(X)
    for state, params in results:
        np.testing.assert_array_equal(state, reference.flat_state)
        np.testing.assert_array_equal(params, results[0][1])


# --- the callback protocol ---------------------------------------------------------------------


def small_mlp():
    return matnet.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", seed=1)


class RateSetter(Callback):
    """Divide the rate by 5 after every epoch, as scikit-learn's ``adaptive`` rule does."""

    def __init__(self):
        self.seen = []

    def on_epoch_begin(self, epoch, logs):
        self.seen.append(self.trainer.optimizer.learning_rate)

    def on_epoch_end(self, epoch, logs):
        self.trainer.optimizer.learning_rate /= 5


def test_a_rate_set_by_a_callback_holds_under_the_default_schedule():
    X, y = data()
    setter = RateSetter()
    history = matnet.fit(small_mlp(), X, y, optimizer="sgd", learning_rate=0.5, epochs=3,
                         verbose=0, callbacks=setter)  # fmt: skip
    assert setter.seen == pytest.approx([0.5, 0.1, 0.02])
    assert history["learning_rate"] == pytest.approx([0.5, 0.1, 0.02])


def test_a_non_constant_schedule_sets_the_rate_from_base_lr():
    X, y = data()

    class Halve(Callback):
        def on_epoch_end(self, epoch, logs):
            self.trainer.state.base_lr /= 2  # the schedule's base, which it scales

    history = matnet.fit(small_mlp(), X, y, optimizer="sgd", learning_rate=0.8, epochs=3,
                         verbose=0, schedule=matnet.schedules.StepDecay(1, 0.5),
                         callbacks=[RateSetter(), Halve()])  # fmt: skip
    # The schedule overrides RateSetter's change; Halve's change to base_lr compounds with it.
    assert history["learning_rate"] == pytest.approx([0.8, 0.2, 0.05])


def test_request_stop_from_a_batch_and_from_an_epoch():
    X, y = data()

    class StopAtStep(Callback):
        def on_batch_end(self, step, logs):
            if step == 3:
                self.trainer.request_stop("enough")

    model = small_mlp()
    history = matnet.fit(model, X, y, epochs=5, verbose=0, callbacks=StopAtStep(), batch_size=10)
    assert len(history) == 1 and history["loss"]  # the epoch in progress is recorded

    class StopAtEpoch(Callback):
        def on_epoch_end(self, epoch, logs):
            self.reason_before = self.trainer.stop_reason
            if epoch == 2:
                self.trainer.request_stop("tol reached")

    cb = StopAtEpoch()
    history = matnet.fit(small_mlp(), X, y, epochs=5, verbose=0, callbacks=cb)
    assert len(history) == 2 and cb.trainer.stop_reason == "tol reached"


def test_a_callback_owns_best_parameter_restore():
    """What scikit-learn's early stopping needs: its own score, its own best parameters, restored
    at the end, and the record it annotates."""
    X, y = data()

    class KeepBest(Callback):
        def on_train_begin(self, logs):
            self.best, self.best_params = -np.inf, None

        def on_epoch_end(self, epoch, logs):
            X_val, Y_val = self.trainer.validation
            score = float(np.mean(self.trainer.model.predict(X_val) == Y_val))
            logs["val_score"] = score
            if epoch == 1 or score > self.best:
                self.best, self.best_params = score, self.trainer.model.flat_params.copy()
                self.best_epoch = epoch

        def on_train_end(self, logs):
            self.trainer.model.flat_params[...] = self.best_params

    model, keep = small_mlp(), KeepBest()
    history = matnet.fit(model, X, y, epochs=6, verbose=0, callbacks=keep, learning_rate=0.05,
                         validation_fraction=0.3, seed=2)  # fmt: skip
    assert "val_score" in history.keys()
    np.testing.assert_array_equal(model.flat_params, keep.best_params)
    assert keep.best_epoch < 6 or history["val_score"][-1] == max(history["val_score"])


class RecordingSquaredError(MeanSquaredError):
    """A loss wrapper as the estimators use one: sees every batch and sets the optimizer's l2."""

    def __init__(self, optimizer, l2):
        super().__init__()
        self.optimizer, self.l2, self.batches = optimizer, l2, []

    def __call__(self, Z, Y, sample_weight=None):
        self.batches.append(Y.copy())
        self.optimizer.l2 = self.l2
        return super().__call__(Z, Y, sample_weight)


def test_shuffle_false_takes_rows_in_order_and_a_loss_wrapper_sets_l2_per_batch():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 5)), np.arange(40.0)
    model = matnet.MLP([5, 4, 1], loss="mse", dtype="float64", seed=0)
    opt = matnet.SGD(0.001)
    wrapper = RecordingSquaredError(opt, 0.3)
    matnet.fit(model, X, y, loss=wrapper, optimizer=opt, epochs=2, batch_size=16, shuffle=False,
               verbose=0)  # fmt: skip
    order = np.concatenate([b.ravel() for b in wrapper.batches])
    np.testing.assert_array_equal(order, np.concatenate([y, y]))
    reference = matnet.MLP([5, 4, 1], loss="mse", dtype="float64", seed=0)
    matnet.fit(reference, X, y, optimizer="sgd", learning_rate=0.001, l2=0.3, epochs=2,
               batch_size=16, shuffle=False, verbose=0)  # fmt: skip
    np.testing.assert_array_equal(model.flat_params, reference.flat_params)


def test_batch_hooks_are_called_only_on_callbacks_that_define_them():
    X, y = data()

    class EpochsOnly(Callback):
        def on_train_begin(self, logs):
            self.batch_callbacks = list(self.trainer.batch_callbacks)

    class Steps(Callback):
        def on_batch_end(self, step, logs):
            pass

    epochs_only, steps = EpochsOnly(), Steps()
    matnet.fit(small_mlp(), X, y, epochs=1, verbose=0, callbacks=[epochs_only])
    assert epochs_only.batch_callbacks == []
    matnet.fit(small_mlp(), X, y, epochs=1, verbose=0, callbacks=[epochs_only, steps])
    assert epochs_only.batch_callbacks == [steps]
    assert isinstance(epochs_only.trainer, Trainer)


def test_a_flag_set_like_ctrl_c_stops_after_that_step_in_one_process():
    X, y = data()

    class CtrlC(Callback):
        def on_batch_end(self, step, logs):
            self.last = step
            if step == 2:
                self.trainer.interrupt.requested = True

    cb = CtrlC()
    history = matnet.fit(small_mlp(), X, y, epochs=3, verbose=0, batch_size=10, callbacks=cb)
    assert cb.last == 2 and history.interrupted and len(history) == 0


def test_local_comm_has_the_communicators_interface():
    comm = LocalComm()
    assert isinstance(comm, Communicator) and comm.is_root and comm.size == 1
    idx = np.arange(5)
    assert comm.shard(idx) is idx
    rng = np.random.default_rng(0)
    params = np.ones(3)
    assert comm.start(params, matnet.SGD(0.1), rng, 10, state=np.zeros(2)) is rng


class PoisonedSGD(matnet.SGD):
    """SGD whose step number ``at`` leaves an infinite weight behind (the loss of that batch was
    finite, so only the parameters show it)."""

    def __init__(self, at):
        super().__init__(0.01)
        self.at, self.steps = at, 0

    def step(self, params, grads):
        super().step(params, grads)
        self.steps += 1
        if self.steps == self.at:
            params[0] = np.inf


def test_a_step_checkpoint_is_never_a_diverged_state(tmp_path):
    X, y = data()
    path = tmp_path / "run.ckpt"
    model, kept = small_mlp(), []

    class Keep(Callback):
        def on_batch_end(self, step, logs):
            kept.append(self.trainer.model.flat_params.copy())

    with pytest.warns(RuntimeWarning, match="diverged"):
        history = matnet.fit(model, X, y, optimizer=PoisonedSGD(at=5), epochs=3, batch_size=10,
                             checkpoint=path, checkpoint_every=1, on_divergence="warn",
                             verbose=0, callbacks=Keep())  # fmt: skip
    assert history.diverged
    ckpt = read_checkpoint(path)  # readable: a checkpoint's parameters must all be finite
    assert ckpt.state.step == 4  # step 5's state was not written; the file keeps step 4's
    np.testing.assert_array_equal(ckpt.params, kept[3])


# --- the optimizer's sharp edges ---------------------------------------------------------------


@pytest.mark.parametrize(
    "optimizer, named",
    [
        (matnet.SGD(0.1, l2=0.5), "l2=0.5"),
        (matnet.Adam(0.1, l2=0.5), "l2=0.5"),
        (matnet.AdamW(0.1, weight_decay=0.1), "weight_decay=0.1"),
    ],
)
def test_step_without_prepare_refuses_to_ignore_decay(optimizer, named):
    params, grads = np.ones(6), np.full(6, 0.5)
    before = params.copy()
    with pytest.raises(ValueError, match=rf"{named}.*optimizer\.prepare\(model\.flat_params, "):
        optimizer.step(params, grads)
    np.testing.assert_array_equal(params, before)  # nothing changed on the way to the error
    optimizer.prepare(params, 4)  # the weights are the first 4 entries
    optimizer.step(params, grads)
    assert np.all(params != before)


def test_step_without_decay_needs_no_prepare_and_l2_set_later_is_not_ignored():
    opt = matnet.SGD(0.1)
    params = np.ones(4)
    opt.step(params, np.ones(4))
    np.testing.assert_allclose(params, 0.9)
    opt.l2 = 0.5  # set after the optimizer set itself up without knowing the weights
    with pytest.raises(ValueError, match="n_decay"):
        opt.step(params, np.ones(4))


def test_prepared_l2_decays_only_the_weights():
    opt = matnet.SGD(1.0, l2=0.5)
    params = np.ones(4)
    opt.prepare(params, 2)
    opt.step(params, np.zeros(4))
    np.testing.assert_array_equal(params, [0.5, 0.5, 1.0, 1.0])


def test_fit_applies_l2_to_an_optimizer_instance_like_learning_rate():
    X, y = data()
    given = small_mlp()
    opt = matnet.SGD(0.01, momentum=0.9)
    matnet.fit(given, X, y, optimizer=opt, learning_rate=0.05, l2=0.5, epochs=2, verbose=0)
    assert (opt.learning_rate, opt.l2) == (0.05, 0.5)
    named = small_mlp()
    matnet.fit(named, X, y, optimizer={"name": "sgd", "momentum": 0.9}, learning_rate=0.05,
               l2=0.5, epochs=2, verbose=0)  # fmt: skip
    np.testing.assert_array_equal(given.flat_params, named.flat_params)
    kept = matnet.SGD(0.01, l2=0.2)
    matnet.fit(small_mlp(), X, y, optimizer=kept, epochs=1, verbose=0)
    assert kept.l2 == 0.2  # the default l2=0 leaves the instance's own
    with pytest.raises(ValueError, match="l2"):
        matnet.fit(small_mlp(), X, y, optimizer=kept, l2=-1.0, epochs=1, verbose=0)
    assert kept.l2 == 0.2
