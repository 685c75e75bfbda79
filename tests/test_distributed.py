"""Data-parallel training without MPI: k ranks simulated as k threads match single-process training."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import matnet
from matnet import distributed
from matnet.distributed import Communicator, ThreadCommunicator, simulate
from matnet.errors import OptionalDependencyError


def make_data(n=97, n_features=6, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y % n_classes


def make_model(seed=1, loss="cross_entropy", sizes=(6, 8, 5, 3), dropout=0.0):
    return matnet.MLP(list(sizes), "tanh", loss=loss, dtype="float64", seed=seed, dropout=dropout)


def train_single(X, y, **options):
    model = make_model(
        loss=options.pop("loss", "cross_entropy"), sizes=options.pop("sizes", (6, 8, 5, 3))
    )
    history = matnet.fit(model, X, y, verbose=0, **options)
    return model, history


def train_ranks(k, X, y, model_seed=lambda rank: 1, **options):
    loss = options.pop("loss", "cross_entropy")
    sizes = options.pop("sizes", (6, 8, 5, 3))

    def rank_main(comm):
        model = make_model(seed=model_seed(comm.rank), loss=loss, sizes=sizes)
        history = matnet.fit(model, X, y, verbose=0, comm=comm, **fresh(options))
        return model, history

    return simulate(k, rank_main)


CASES = {
    # the last global batch (97 = 3*32 + 1) has one row: with 2+ ranks some shares are empty
    "sgd-momentum-l2": dict(optimizer="sgd", learning_rate=0.1, l2=1e-3, batch_size=32, epochs=4),
    "nesterov-clip": dict(
        optimizer=matnet.SGD(0.05, momentum=0.9, nesterov=True),
        clip_norm=0.5,
        batch_size=10,
        epochs=3,
    ),
    "adam-validation-early-stop": dict(
        optimizer="adam",
        learning_rate=0.01,
        batch_size=16,
        epochs=12,
        validation_fraction=0.2,
        early_stopping=True,
        patience=1,
        schedule=matnet.CosineDecay(total_epochs=12),
    ),
    "adamw-sample-weight": dict(
        optimizer=matnet.AdamW(0.01, weight_decay=0.1),
        batch_size=20,
        epochs=3,
        sample_weight=np.linspace(0.1, 2.0, 97),
    ),
    "bce": dict(
        loss="binary_cross_entropy", sizes=(6, 8, 1), optimizer="adam", batch_size=25, epochs=3
    ),
    "mse-no-shuffle": dict(
        loss="mse", sizes=(6, 7, 2), optimizer="sgd", batch_size=13, epochs=2, shuffle=False
    ),
}


def targets_for(case, y, X):
    loss = CASES[case].get("loss", "cross_entropy")
    if loss == "binary_cross_entropy":
        return (y > 0).astype(int)
    if loss == "mse":
        return np.stack([X[:, 0] * 2 + X[:, 1], X[:, 3] ** 2], axis=1)
    return y


def fresh(options):
    """A copy of the options with a fresh optimizer instance (instances carry state)."""
    options = dict(options)
    opt = options.get("optimizer")
    if isinstance(opt, matnet.Optimizer):
        options["optimizer"] = matnet.get_optimizer(opt.config())
    return options


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("case", sorted(CASES))
def test_simulated_ranks_match_single_process_float64(case, k):
    X, y = make_data()
    y = targets_for(case, y, X)
    single, single_history = train_single(X, y, **fresh(CASES[case]))
    results = train_ranks(k, X, y, **fresh(CASES[case]))
    for rank, (model, history) in enumerate(results):
        # every rank holds exactly the same weights ...
        np.testing.assert_array_equal(model.flat_params, results[0][0].flat_params)
        # ... and they are single-process training's, to rounding
        np.testing.assert_allclose(model.flat_params, single.flat_params, rtol=1e-12, atol=1e-12)
        assert len(history) == len(single_history), f"rank {rank} ran a different number of epochs"
        assert history.best_epoch == single_history.best_epoch
        for key in single_history.keys():
            if key != "seconds":
                np.testing.assert_allclose(
                    history[key], single_history[key], rtol=1e-12, atol=1e-12
                )
    untrained = make_model(sizes=CASES[case].get("sizes", (6, 8, 5, 3)))
    assert np.max(np.abs(single.flat_params - untrained.flat_params)) > 1e-3, "training moved"


def test_rank0_parameters_and_optimizer_state_are_broadcast():
    """Ranks built from different seeds and optimizer states train rank 0's model."""
    X, y = make_data()
    warm = make_model(seed=1)
    adam = matnet.Adam(0.01)
    matnet.fit(warm, X, y, optimizer=adam, epochs=1, batch_size=32, verbose=0)
    state = {
        k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in adam.state_dict().items()
    }
    start = warm.flat_params.copy()

    single = make_model(seed=1)
    single.flat_params[...] = start
    opt = matnet.Adam(0.01)
    opt.prepare(single.flat_params, single.n_decay)
    opt.load_state_dict(state)
    matnet.fit(single, X, y, optimizer=opt, epochs=2, batch_size=32, verbose=0, seed=5)

    def rank_main(comm):
        model = make_model(seed=1 + comm.rank)  # different weights on every rank but 0
        opt = matnet.Adam(0.01)
        if comm.rank == 0:
            model.flat_params[...] = start
            opt.prepare(model.flat_params, model.n_decay)
            opt.load_state_dict(state)
        matnet.fit(
            model, X, y, optimizer=opt, epochs=2, batch_size=32, verbose=0, seed=5, comm=comm
        )
        return model, opt.t

    for model, t in simulate(3, rank_main):
        assert t == opt.t
        np.testing.assert_allclose(model.flat_params, single.flat_params, rtol=1e-12, atol=1e-12)


def test_unseeded_ranks_agree_on_rank0s_generator():
    X, y = make_data()

    def rank_main(comm):
        model = make_model(seed=1)
        matnet.fit(
            model,
            X,
            y,
            epochs=2,
            batch_size=8,
            seed=None,
            verbose=0,
            comm=comm,
            validation_fraction=0.25,
        )
        return model.flat_params

    params = simulate(2, rank_main)
    np.testing.assert_array_equal(params[0], params[1])


@pytest.mark.parametrize("k", [2, 3])
def test_dropout_draws_for_the_global_batch_so_ranks_equal_one_process(k):
    """Every rank draws the global batch's dropout masks from the shared stream and keeps its own
    rows: k ranks train the model one process trains (float64, to 1e-12), and each rank's mask is
    its rows of the one process's mask."""
    X, y = make_data()
    options = dict(epochs=3, batch_size=16, seed=7)

    def masks_of(model, into):
        layer = model.layers[2]
        original = layer.forward

        def spy(A_prev, training=False, rng=None, rows=None):
            A, backward = original(A_prev, training, rng, rows)
            into.append(layer._buffers["mask"][: A_prev.shape[0]].copy())
            return A, backward

        layer.forward = spy

    single_masks: list = []
    single = make_model(seed=1, dropout=0.3)
    masks_of(single, single_masks)
    matnet.fit(single, X, y, verbose=0, **options)

    def rank_main(comm):
        model = make_model(seed=1, dropout=0.3)
        masks: list = []
        masks_of(model, masks)
        matnet.fit(model, X, y, verbose=0, comm=comm, **options)
        return model.flat_params, masks

    results = simulate(k, rank_main)
    for params, _ in results:
        np.testing.assert_allclose(params, single.flat_params, rtol=0, atol=1e-12)
    first = single_masks[0]  # the first global batch: 16 rows, split in order over the ranks
    for rank, (_, masks) in enumerate(results):
        lo, hi = 16 * rank // k, 16 * (rank + 1) // k
        np.testing.assert_array_equal(masks[0], first[lo:hi])


def test_the_tabular_recipe_trains_the_same_model_on_simulated_ranks():
    """The default recipe (dropout after BatchEnsemble blocks, AdamW, cos-log schedule) under data
    parallelism equals one process (float64, to 1e-12)."""
    from matnet.tabular import fit_tabular

    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 5))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    run = fit_tabular(X, y, task="classification", dtype="float64", seed=2,
                      fit_options=dict(epochs=3, verbose=0))  # fmt: skip

    def rank_main(comm):
        ranked = fit_tabular(X, y, task="classification", dtype="float64", seed=2,
                             fit_options=dict(epochs=3, verbose=0, comm=comm))  # fmt: skip
        return ranked.model.flat_params

    for params in simulate(2, rank_main):
        np.testing.assert_allclose(params, run.model.flat_params, rtol=0, atol=1e-12)


def test_one_allreduce_per_step():
    """The gradient, the loss and two stop votes in one Allreduce per step; the votes since the
    epoch's last step in one small Allreduce per epoch."""
    X, y = make_data()
    calls = []

    def rank_main(comm):
        reduce = comm.allreduce_sum

        def counting(buffer):
            calls.append((comm.rank, buffer.shape[0]))
            reduce(buffer)

        comm.allreduce_sum = counting
        model = make_model(seed=1)
        matnet.fit(model, X, y, epochs=3, batch_size=32, verbose=0, comm=comm)
        return model.n_params

    n_params = simulate(2, rank_main)[0]
    steps = 3 * 4  # 97 rows in global batches of 32
    expected = [(r, n_params + 3) for r in range(2)] * steps + [(r, 2) for r in range(2)] * 3
    assert sorted(calls) == sorted(expected)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 32, 33])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_shards_partition_every_global_batch(n, k):
    idx = np.arange(100, 100 + n)
    group = distributed._ThreadGroup(k, timeout=1)
    comms = [ThreadCommunicator(group, r) for r in range(k)]
    counts = [c.local_rows(n) for c in comms]
    assert sum(counts) == n and max(counts) - min(counts) <= 1
    owned = np.concatenate([c.shard(idx)[: c.local_rows(n)] for c in comms])
    np.testing.assert_array_equal(owned, idx)
    if n:
        assert all(c.shard(idx).shape[0] >= 1 for c in comms), "no rank ever runs an empty batch"


def test_ranks_with_different_data_fail_together():
    X, y = make_data()

    def rank_main(comm):
        n = 97 if comm.rank == 0 else 90
        matnet.fit(make_model(), X[:n], y[:n], epochs=1, verbose=0, comm=comm)

    with pytest.raises(ValueError, match="disagree on .training rows"):
        simulate(2, rank_main)


def test_distributed_fit_silences_other_ranks(capsys):
    X, y = make_data()

    def rank_main(comm):
        model = make_model()
        return distributed.fit(model, X, y, comm=comm, epochs=2, batch_size=32, verbose=2)

    histories = simulate(2, rank_main)
    assert histories[0]["loss"] == histories[1]["loss"]
    assert capsys.readouterr().err.count("epoch 2:") == 1


def test_distributed_fit_rejects_a_non_communicator():
    X, y = make_data()
    with pytest.raises(TypeError, match="Communicator"):
        distributed.fit(make_model(), X, y, comm="world")


def test_simulate_validates_size_and_reraises():
    with pytest.raises(ValueError, match="size=0"):
        simulate(0, lambda comm: None)

    def rank_main(comm):
        if comm.rank == 1:
            raise RuntimeError("rank 1 broke")
        comm.allreduce_sum(np.zeros(3))  # would wait forever without the abort

    with pytest.raises(RuntimeError, match="rank 1 broke"):
        simulate(2, rank_main, timeout=30)


def test_communicator_is_abstract():
    with pytest.raises(TypeError):
        Communicator()


def test_mpi_communicator_names_the_extra_when_mpi4py_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    with pytest.raises(OptionalDependencyError, match=r"pip install 'matnet\[mpi\]'"):
        distributed.MPICommunicator()
    with pytest.raises(ImportError):
        distributed.world()


def test_mpi_communicator_as_a_group_of_one():
    pytest.importorskip("mpi4py", reason="mpi4py is in the mpi and dev extras")
    X, y = make_data()
    single, _ = train_single(X, y, epochs=2, batch_size=16)
    model = make_model()
    comm = distributed.MPICommunicator()
    assert (comm.rank, comm.size) == (0, 1) and comm.is_root
    distributed.fit(model, X, y, comm=comm, epochs=2, batch_size=16, verbose=0)
    np.testing.assert_allclose(model.flat_params, single.flat_params, rtol=1e-12, atol=1e-12)


def test_cli_setup(monkeypatch):
    assert distributed.cli_setup(False) is None
    group = distributed._ThreadGroup(2, timeout=1)
    root, other = ThreadCommunicator(group, 0), ThreadCommunicator(group, 1)
    stdout = sys.stdout
    monkeypatch.setattr(sys, "stdout", stdout)  # restored after the test
    assert distributed.cli_setup(True, root) is root and sys.stdout is stdout
    assert distributed.cli_setup(True, other) is other
    assert sys.stdout is not stdout and sys.stdout.name == os.devnull


def test_cli_setup_names_the_extra_without_mpi4py(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    with pytest.raises(OptionalDependencyError, match=r"pip install 'matnet\[mpi\]'"):
        distributed.cli_setup(True)


class NaNOnRank(matnet.SoftmaxCrossEntropy):
    """Softmax cross-entropy whose value is NaN on one rank at one step: a divergence that only
    that rank's shard sees."""

    def __init__(self, rank, at_call):
        super().__init__()
        self.rank, self.at_call, self.calls = rank, at_call, 0

    def __call__(self, Z, Y, sample_weight=None):
        value, dZ = super().__call__(Z, Y, sample_weight)
        self.calls += 1
        return (float("nan") if self.calls == self.at_call else value), dZ


def test_a_divergence_on_one_rank_stops_every_rank_at_the_same_step():
    X, y = make_data()

    def rank_main(comm):
        model = make_model()
        loss = NaNOnRank(1, at_call=6) if comm.rank == 1 else matnet.SoftmaxCrossEntropy()
        # (pytest.warns is not thread-safe: raise, and catch the error in each rank)
        with pytest.raises(matnet.TrainingDivergedError) as caught:
            matnet.fit(model, X, y, loss=loss, epochs=4, batch_size=32, verbose=0, comm=comm)
        return model.flat_params, caught.value

    (p0, e0), (p1, e1) = simulate(2, rank_main, timeout=60)
    for error in (e0, e1):
        assert "diverged at epoch 2, step 6" in str(error)
        assert (error.epoch, error.step, len(error.history)) == (2, 6, 1)
    np.testing.assert_array_equal(p0, p1)  # both restored the weights at the end of epoch 1
    reference = make_model()
    matnet.fit(reference, X, y, epochs=1, batch_size=32, verbose=0)
    np.testing.assert_allclose(p0, reference.flat_params, rtol=1e-12, atol=1e-12)


def test_only_rank0_writes_the_checkpoint_and_a_distributed_run_resumes(tmp_path, monkeypatch):
    import threading

    from matnet.training import callbacks

    writers = []
    write = callbacks.write_checkpoint

    def spy(*args, **kwargs):
        writers.append(threading.current_thread().name)
        return write(*args, **kwargs)

    monkeypatch.setattr(callbacks, "write_checkpoint", spy)
    X, y = make_data()
    path = tmp_path / "run.ckpt"
    options = dict(optimizer="adam", learning_rate=0.01, batch_size=16, verbose=0, checkpoint=path)

    def first(comm):
        matnet.fit(make_model(), X, y, epochs=2, comm=comm, **options)

    simulate(2, first)
    assert writers and set(writers) == {"rank-0"}, writers

    def resumed(comm):
        model = make_model(seed=9)  # the checkpoint's weights replace these
        matnet.fit(model, X, y, epochs=4, comm=comm, resume=True, **options)
        return model.flat_params

    single = make_model()
    matnet.fit(
        single, X, y, epochs=4, optimizer="adam", learning_rate=0.01, batch_size=16, verbose=0
    )
    for params in simulate(2, resumed):
        np.testing.assert_allclose(params, single.flat_params, rtol=1e-12, atol=1e-12)


# --- stopping together: a request on one rank stops every rank after the same step -------------


class _Recorder(matnet.Callback):
    """Records the steps and epochs a rank ran; asks to stop where ``stop_at`` says."""

    def __init__(self, rank, stop_at=None, stop_after_epoch=None):
        self.rank, self.stop_at, self.stop_after_epoch = rank, stop_at, stop_after_epoch
        self.steps, self.epochs = [], []

    def on_batch_end(self, step, logs):
        self.steps.append(step)
        return self.stop_at is not None and self.stop_at == (self.rank, step)

    def on_epoch_end(self, epoch, logs):
        self.epochs.append(epoch)
        return self.stop_after_epoch is not None and self.stop_after_epoch == (self.rank, epoch)


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize(("ask_at", "last_step"), [(3, 4), (7, 7)])
def test_a_callback_stop_on_one_rank_stops_every_rank_together(size, ask_at, last_step):
    """Asked at step 3: heard in step 4's Allreduce, every rank stops after step 4. Asked at step 7,
    the epoch's last (97 rows in batches of 16): heard in the epoch's end-of-epoch vote."""
    X, y = make_data()

    def rank_main(comm):
        model = make_model()
        recorder = _Recorder(comm.rank, stop_at=(size - 1, ask_at))  # the last rank asks
        history = matnet.fit(
            model, X, y, epochs=3, batch_size=16, verbose=0, comm=comm, callbacks=[recorder]
        )
        return recorder.steps, recorder.epochs, len(history), model.flat_params

    results = simulate(size, rank_main, timeout=60)  # a rank left waiting would time out
    for steps, epochs, n_epochs, params in results:
        assert steps == list(range(1, last_step + 1))
        assert epochs == [1] and n_epochs == 1
        np.testing.assert_array_equal(params, results[0][3])


def test_an_epoch_end_stop_on_one_rank_stops_every_rank():
    X, y = make_data()

    def rank_main(comm):
        recorder = _Recorder(comm.rank, stop_after_epoch=(1, 1))
        history = matnet.fit(
            make_model(), X, y, epochs=4, batch_size=32, verbose=0, comm=comm, callbacks=[recorder]
        )
        return recorder.epochs, len(history)

    assert simulate(2, rank_main, timeout=60) == [([1], 1), ([1], 1)]


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(capsys):
    """SIGINT reaches the ranks of an mpiexec job at different moments; each rank's flag travels in
    the next Allreduce, so no rank is left waiting in one the others never join."""

    class CtrlC(_Recorder):
        def on_batch_end(self, step, logs):
            # Only the main thread may install the SIGINT handler, so the ranks (threads) here get
            # none; setting the flag the handler would set is a Ctrl-C on rank 0 during step 4.
            if self.rank == 0 and step == 4:
                self.trainer.interrupt.requested = True
            return super().on_batch_end(step, logs)

    X, y = make_data()

    def rank_main(comm):
        recorder = CtrlC(comm.rank)
        history = matnet.fit(
            make_model(), X, y, epochs=3, batch_size=16, verbose=0, comm=comm, callbacks=[recorder]
        )
        return recorder.steps, history.interrupted, len(history)

    assert simulate(2, rank_main, timeout=60) == [([1, 2, 3, 4, 5], True, 0)] * 2
    assert capsys.readouterr().err.count("interrupted at epoch 1, step 5") == 1  # rank 0 only
