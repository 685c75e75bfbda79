"""Training state under attack (issue 15, items 9-17): divergence with step checkpoints, resumes with
changed settings, two runs on one checkpoint, predict during fit, unwritable checkpoints, ranks from
different checkpoints, SIGTERM, the validation split of a large X, and BLAS threads."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import tracemalloc
import warnings

import numpy as np
import pytest

import matnet
from matnet.checkpoint import CheckpointLock, load_model, read_checkpoint
from matnet.distributed import simulate


class CrashError(Exception):
    """Stands in for the process dying right after a given step."""


class CrashAt(matnet.Callback):
    def __init__(self, step):
        self.step = step

    def on_batch_end(self, step, logs):
        if step == self.step:
            raise CrashError


def make_data(n=150, d=6, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, :3] @ rng.normal(size=(3,)) > 0).astype(int) + (X[:, 0] > 1)
    return X, y


def make_model(dtype="float32"):
    return matnet.MLP([6, 12, 3], dropout=0.25, loss="cross_entropy", seed=0, dtype=dtype)


OPTIONS = dict(
    epochs=6,
    batch_size=16,
    seed=7,
    validation_fraction=0.2,
    verbose=0,
    optimizer="adam",
    learning_rate=0.01,
)


# --- 9: a diverged state never reaches a step checkpoint ------------------------------------------


@pytest.mark.parametrize("learning_rate", [1e39, 1e20])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_step_checkpoints_of_a_diverging_run_stay_resumable(tmp_path, optimizer, learning_rate):
    """The issue's case: checkpoint_every=1, float32, learning rate 1e39 (the first step diverges,
    so no checkpoint may be written), and 1e20 (some finite steps are written first)."""
    X, y = make_data()
    path = tmp_path / "run.ckpt"
    options = dict(
        optimizer=optimizer, learning_rate=learning_rate, epochs=3, verbose=0, checkpoint=path,
        checkpoint_every=1,
    )  # fmt: skip
    net = matnet.MLP([6, 12, 3], loss="cross_entropy", seed=0, dtype="float32")
    with pytest.raises(matnet.TrainingDivergedError):
        net.fit(X, y, **options)
    if path.exists():
        ckpt = read_checkpoint(path)  # raises for non-finite parameters
        assert np.all(np.isfinite(ckpt.params)) and ckpt.state.step >= 1
        load_model(path)
    # the next resume works: it diverges again, and says so, instead of failing on the file
    resumed = matnet.MLP([6, 12, 3], loss="cross_entropy", seed=0, dtype="float32")
    with pytest.warns(RuntimeWarning, match="training diverged"):
        history = resumed.fit(X, y, resume=True, on_divergence="warn", **options)
    assert history.diverged and np.all(np.isfinite(resumed.flat_params))


# --- 10: a resume with other settings is refused, or overridden and said so ---------------------


@pytest.fixture
def checkpoint_file(tmp_path):
    path = tmp_path / "run.ckpt"
    with pytest.raises(CrashError):
        make_model().fit(
            *make_data(), checkpoint=path, checkpoint_every=2, callbacks=CrashAt(9), **OPTIONS
        )
    return path


CHANGES = {
    "validation_fraction": dict(validation_fraction=0.3),
    "clip_norm": dict(clip_norm=1.0),
    "shuffle": dict(shuffle=False),
    "schedule": dict(schedule="cosine"),
    "sample_weight": dict(sample_weight=np.linspace(0.5, 1.5, 150)),
    "early_stopping": dict(early_stopping=True),
    "min_delta": dict(min_delta=0.1),
    "validation_data": dict(validation_fraction=0.0, validation_data=make_data(20, seed=3)),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_resume_with_changed_settings_is_refused_before_any_change(checkpoint_file, name):
    net = make_model()
    before = net.flat_params.copy()
    stamp = checkpoint_file.read_bytes()
    options = {**OPTIONS, **CHANGES[name]}
    with pytest.raises(ValueError, match=f"other settings \\({name}|validation_fraction"):
        net.fit(*make_data(), resume=True, checkpoint=checkpoint_file, **options)
    assert np.array_equal(net.flat_params, before)
    assert checkpoint_file.read_bytes() == stamp


def test_patience_counts_only_with_early_stopping(tmp_path):
    path = tmp_path / "run.ckpt"
    options = {**OPTIONS, "early_stopping": True, "patience": 3}
    with pytest.raises(CrashError):
        make_model().fit(*make_data(), checkpoint=path, callbacks=CrashAt(9), **options)
    with pytest.raises(ValueError, match="patience: 3 then, 5 now"):
        make_model().fit(*make_data(), resume=path, **{**options, "patience": 5})


def test_a_named_override_is_announced_and_takes_effect(checkpoint_file):
    net = make_model()
    with pytest.warns(UserWarning, match=r"changed settings \(clip_norm None -> 0.5\)"):
        net.fit(
            *make_data(), resume=True, checkpoint=checkpoint_file, clip_norm=0.5,
            resume_overrides=["clip_norm"], **OPTIONS,
        )  # fmt: skip
    # the run went on with the new value, and its checkpoint now holds it
    assert read_checkpoint(checkpoint_file).data["settings"]["clip_norm"] == 0.5


def test_the_validation_split_cannot_be_overridden(checkpoint_file):
    with pytest.raises(ValueError, match="resume_overrides names 'validation_fraction'"):
        make_model().fit(
            *make_data(), resume=True, checkpoint=checkpoint_file,
            resume_overrides=["validation_fraction"], **OPTIONS,
        )  # fmt: skip


def test_the_same_settings_resume_bit_identically(checkpoint_file):
    uninterrupted = make_model()
    uninterrupted.fit(*make_data(), **OPTIONS)
    resumed = make_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed.fit(*make_data(), resume=True, checkpoint=checkpoint_file, **OPTIONS)
    assert np.array_equal(resumed.flat_params, uninterrupted.flat_params)


# --- 11: one run per checkpoint path ----------------------------------------------------------


def test_a_second_run_on_the_same_checkpoint_is_refused_naming_the_holder(tmp_path):
    """The issue's case: the second run used to delete the first's in-flight temporary file, and
    the first died in os.replace with a raw FileNotFoundError."""
    X, y = make_data()
    path = tmp_path / "run.ckpt"
    paused, resume = threading.Event(), threading.Event()

    class Pause(matnet.Callback):
        def on_batch_end(self, step, logs):
            if step == 3:
                paused.set()
                resume.wait(30)

    first_result = {}

    def first():
        net = make_model()
        first_result["history"] = net.fit(
            X, y, checkpoint=path, checkpoint_every=1, callbacks=Pause(), **OPTIONS
        )

    thread = threading.Thread(target=first)
    thread.start()
    assert paused.wait(30)
    second = make_model()
    before = second.flat_params.copy()
    try:
        with pytest.raises(matnet.CheckpointInUseError) as info:
            second.fit(X, y, checkpoint=path, **OPTIONS)
    finally:
        resume.set()
        thread.join(60)
    message = str(info.value)
    assert f"process {os.getpid()} on {socket.gethostname()!r}" in message
    assert "run.ckpt.lock" in message
    assert np.array_equal(second.flat_params, before)
    assert len(first_result["history"]) == 6  # the first run finished, its file whole
    assert read_checkpoint(path).state.epoch == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]  # lock released


def test_a_lock_held_by_a_live_process_refuses_and_a_dead_ones_is_taken_over(tmp_path):
    X, y = make_data()
    path = tmp_path / "run.ckpt"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / "run.ckpt.lock"
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        with pytest.raises(matnet.CheckpointInUseError, match=f"process {holder.pid}"):
            make_model().fit(X, y, checkpoint=path, **OPTIONS)
    finally:
        holder.kill()
        holder.wait()
    make_model().fit(X, y, checkpoint=path, **OPTIONS)  # the holder is gone: a stale lock
    assert not lock.exists() and path.exists()
    # a holder on another host cannot be checked from here: refused, with the way out
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(matnet.CheckpointInUseError, match="process 1 on 'elsewhere.example'"):
        make_model().fit(X, y, checkpoint=path, **OPTIONS)


def test_the_lock_is_released_when_fit_raises(tmp_path):
    path = tmp_path / "run.ckpt"
    with pytest.raises(CrashError):
        make_model().fit(*make_data(), checkpoint=path, callbacks=CrashAt(2), **OPTIONS)
    assert not (tmp_path / "run.ckpt.lock").exists()
    with CheckpointLock(path) as lock:
        assert lock.held and (tmp_path / "run.ckpt.lock").exists()
    assert not (tmp_path / "run.ckpt.lock").exists()


# --- 12: predict while fit runs ----------------------------------------------------------------


def test_predict_from_other_threads_during_fit_leaves_training_exact():
    """The issue's case: 6 trials, predict in other threads while fit trains the same model; the
    final weights equal an undisturbed run's exactly."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 20))
    y = (X[:, :4].sum(axis=1) > 0).astype(int) + (X[:, 4] > 0)

    def build():
        return matnet.MLP([20, 64, 64, 3], loss="cross_entropy", seed=0, dtype="float64")

    options = dict(epochs=3, batch_size=32, optimizer="adam", learning_rate=0.01, verbose=0)
    reference = build()
    reference.fit(X, y, **options)
    for trial in range(6):
        net = build()
        done = threading.Event()
        predictions = []

        def hammer(net=net, done=done, predictions=predictions):
            while not done.is_set():
                predictions.append(net.predict_proba(X[:300]).shape)

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            net.fit(X, y, **options)
        finally:
            done.set()
            for thread in threads:
                thread.join()
        assert predictions, "the other threads never predicted"
        assert np.array_equal(net.flat_params, reference.flat_params), f"trial {trial}"


# --- 13: an unwritable checkpoint is refused up front, a full disk names the file ----------------


def test_a_checkpoint_in_a_folder_that_cannot_be_written_is_refused_before_training():
    # /proc refuses new files even to root, for whom os.access answers yes
    X, y = make_data()
    net = make_model()
    before = net.flat_params.copy()
    with pytest.raises(ValueError, match="cannot write in folder '/proc'"):
        net.fit(X, y, checkpoint="/proc/matnet-run.ckpt", **OPTIONS)
    assert np.array_equal(net.flat_params, before)


def test_a_full_disk_names_the_checkpoint(tmp_path, monkeypatch):
    from matnet import checkpoint

    def full(path, tensors, metadata):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "save_tensors", full)
    path = tmp_path / "run.ckpt"
    with pytest.raises(
        OSError, match="could not write the checkpoint .*run.ckpt.*No space"
    ) as info:
        make_model().fit(*make_data(), checkpoint=path, **OPTIONS)
    assert info.value.errno == errno.ENOSPC
    assert not (tmp_path / "run.ckpt.lock").exists()


def test_cli_train_on_a_full_disk_reports_no_results(tmp_path, monkeypatch, capsys):
    from matnet import cli
    from matnet.cli import commands

    X, y = make_data(60)
    data = tmp_path / "data.csv"
    rows = ["a,b,c,d,e,f,y"] + [",".join(map(str, [*x, t])) for x, t in zip(X, y, strict=True)]
    data.write_text("\n".join(rows) + "\n")

    def full(path, blob):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(commands, "atomic_write", full)
    out = tmp_path / "model.safetensors"
    argv = ["train", str(data), "--target", "y", "--out", str(out), "--epochs", "2", "--quiet"]
    status = cli.main(argv)
    captured = capsys.readouterr()
    assert status == 2
    assert "trained" not in captured.out and "accuracy" not in captured.out, captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and str(out) in err[0], err
    assert not out.exists()


# --- 14: ranks that resume from different checkpoints fail together, at once --------------------


def test_ranks_resuming_from_different_checkpoints_raise_on_every_rank(tmp_path):
    X, y = make_data()
    paths = [tmp_path / "a.ckpt", tmp_path / "b.ckpt"]
    for path, crash in zip(paths, (9, 5), strict=True):  # a newer and a stale copy
        with pytest.raises(CrashError):
            make_model().fit(X, y, checkpoint=path, checkpoint_every=2, callbacks=CrashAt(crash),
                             **OPTIONS)  # fmt: skip

    def rank_main(comm):
        try:
            make_model().fit(X, y, comm=comm, resume=paths[comm.rank], **OPTIONS)
        except ValueError as exc:
            return str(exc)
        return None

    errors = simulate(2, rank_main, timeout=30)
    assert all(e is not None and "start from different points" in e for e in errors), errors
    assert "rank 0: (1, 8, 8," in errors[0] and "rank 1: (1, 4, 4," in errors[0]

    def fresh_and_resumed(comm):  # one rank resumes, the other starts fresh
        try:
            kwargs = {"resume": paths[0]} if comm.rank else {}
            make_model().fit(X, y, comm=comm, **kwargs, **OPTIONS)
        except ValueError as exc:
            return str(exc)
        return None

    errors = simulate(2, fresh_and_resumed, timeout=30)
    assert all(e is not None and "(1, 0, 0, None)" in e for e in errors), errors


# --- 15: SIGTERM stops like Ctrl-C -------------------------------------------------------------


class Signal(matnet.Callback):
    def __init__(self, step, signum, times=1):
        self.step, self.signum, self.times = step, signum, times

    def on_batch_end(self, step, logs):
        if step == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


def test_sigterm_stops_after_the_step_writes_the_checkpoint_and_says_so(tmp_path, capsys):
    X, y = make_data()
    handler = signal.getsignal(signal.SIGTERM)
    path = tmp_path / "run.ckpt"
    options = {**OPTIONS, "validation_fraction": 0.0}
    history = make_model().fit(
        X, y, checkpoint=path, callbacks=Signal(12, signal.SIGTERM), **options
    )
    assert history.interrupted and len(history) == 1
    assert signal.getsignal(signal.SIGTERM) is handler
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"matnet: interrupted by SIGTERM at epoch 2, step 12; kept the current weights; "
        f"checkpoint written to {path}"
    ]
    assert read_checkpoint(path).state.step == 12
    with pytest.raises(KeyboardInterrupt):  # a second signal ends it at once
        make_model().fit(X, y, callbacks=Signal(2, signal.SIGTERM, times=2), **options)
    assert signal.getsignal(signal.SIGTERM) is handler


# --- 16: a validation split by index, not a copy of X -------------------------------------------


def test_a_validation_split_does_not_copy_x(tmp_path):
    rng = np.random.default_rng(0)
    n, d = 60_000, 200  # 48 MB of float32
    X = np.lib.format.open_memmap(tmp_path / "X.npy", "w+", np.float32, (n, d))
    X[:] = rng.standard_normal((n, d), dtype=np.float32)
    X.flush()
    X = np.load(tmp_path / "X.npy", mmap_mode="r")
    y = (np.asarray(X[:, 0]) > 0).astype(int)
    net = matnet.MLP([d, 8, 2], loss="cross_entropy", seed=0)
    tracemalloc.start()
    try:
        net.fit(X, y, epochs=1, batch_size=256, validation_fraction=0.5, verbose=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 4, f"fit allocated {peak / 2**20:.1f} MiB for {X.nbytes / 2**20} MiB"


def test_rows_and_a_split_by_index_train_as_the_copied_rows_do():
    X, y = make_data(200)
    rows = np.random.default_rng(5).permutation(200)[:150]
    by_index, copied = make_model("float64"), make_model("float64")
    h1 = by_index.fit(X, y, rows=rows, **OPTIONS)
    h2 = copied.fit(X[rows], y[rows], **OPTIONS)
    assert np.array_equal(by_index.flat_params, copied.flat_params)
    assert h1["val_loss"] == h2["val_loss"]


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (np.array([0, 0, 1]), "more than once"),
        (np.array([0, 150]), "X has 150 rows"),
        (np.array([-1]), "X has 150 rows"),
        (np.array([0.5]), "integer row numbers"),
        (np.zeros((2, 2), dtype=int), "1-D"),
        (np.array([], dtype=int), "non-empty"),
    ],
)
def test_bad_rows_are_refused(rows, match):
    with pytest.raises(ValueError, match=match):
        make_model().fit(*make_data(), rows=rows, verbose=0)


# --- 17: BLAS threads ------------------------------------------------------------------------


def _blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    info = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    if not info:
        pytest.skip("no BLAS thread pool that threadpoolctl can see")
    return max(p["num_threads"] for p in info)


class SeeThreads(matnet.Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, epoch, logs):
        self.seen.append(_blas_threads())


def test_threads_limits_blas_during_fit_and_puts_it_back():
    outside = _blas_threads()
    X, y = make_data()
    see = SeeThreads()
    make_model().fit(X, y, threads=1, callbacks=see, **{**OPTIONS, "epochs": 2})
    assert see.seen == [1, 1]
    assert _blas_threads() == outside


def test_inside_a_joblib_worker_the_default_is_one_thread(monkeypatch):
    """The decision, recorded at threadpoolctl: the thread count itself is the BLAS library's, one
    for the whole process, so two workers reading it at once see each other's limits."""
    joblib = pytest.importorskip("joblib")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    asked = []
    limits = threadpoolctl.threadpool_limits

    def spy(limits_=None, **kwargs):
        asked.append(kwargs.get("limits", limits_))
        return limits(**kwargs) if limits_ is None else limits(limits_, **kwargs)

    monkeypatch.setattr(threadpoolctl, "threadpool_limits", spy)
    X, y = make_data()

    def job(threads=None):
        make_model().fit(X, y, threads=threads, **{**OPTIONS, "epochs": 1})

    joblib.Parallel(n_jobs=2, backend="threading")(joblib.delayed(job)() for _ in "ab")
    assert asked == [1, 1]
    asked.clear()
    job()  # outside joblib: left alone
    assert asked == []
    joblib.Parallel(n_jobs=2, backend="threading")(joblib.delayed(job)(3) for _ in "ab")
    assert asked == [3, 3]  # an explicit count wins
    asked.clear()
    joblib.Parallel(n_jobs=1)(joblib.delayed(job)() for _ in "ab")
    assert asked == []  # n_jobs=1 runs here, not in workers


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_bad_threads_are_refused(threads):
    with pytest.raises(ValueError, match="threads="):
        make_model().fit(*make_data(), threads=threads, verbose=0)


def test_threads_without_threadpoolctl_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    net = make_model()
    before = net.flat_params.copy()
    with pytest.raises(matnet.errors.OptionalDependencyError, match=r"matnet\[threads\]"):
        net.fit(*make_data(), threads=2, verbose=0)
    assert np.array_equal(net.flat_params, before)


def test_cli_threads_option(tmp_path, capsys):
    from matnet import cli

    X, y = make_data(60)
    data = tmp_path / "data.csv"
    rows = ["a,b,c,d,e,f,y"] + [",".join(map(str, [*x, t])) for x, t in zip(X, y, strict=True)]
    data.write_text("\n".join(rows) + "\n")
    base = ["train", str(data), "--target", "y", "--epochs", "1", "--quiet"]
    assert cli.main([*base, "--threads", "0", "--out", str(tmp_path / "a.safetensors")]) == 2
    assert "--threads: '0' must be at least 1" in capsys.readouterr().err
    assert cli.main([*base, "--threads", "1", "--out", str(tmp_path / "b.safetensors")]) == 0
    assert matnet.load(tmp_path / "b.safetensors").metadata["training"]["interrupted"] is None


# --- the estimators: threads and the early-stopping split -----------------------------------------


def test_estimator_threads_and_its_joblib_default():
    pytest.importorskip("sklearn")
    from matnet.sklearn import MLPClassifier

    X, y = make_data()
    see = SeeThreads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=2 does not converge
        MLPClassifier((8,), max_iter=2, threads=1, callbacks=see, random_state=0).fit(X, y)
    assert see.seen == [1, 1]
    with pytest.raises(ValueError, match="threads"):
        MLPClassifier((8,), threads=0).fit(X, y)


def test_estimator_early_stopping_does_not_copy_x(tmp_path):
    pytest.importorskip("sklearn")
    from matnet.sklearn import MLPClassifier

    rng = np.random.default_rng(0)
    n, d = 60_000, 200  # 48 MB of float32
    X = np.lib.format.open_memmap(tmp_path / "X.npy", "w+", np.float32, (n, d))
    X[:] = rng.standard_normal((n, d), dtype=np.float32)
    X.flush()
    X = np.load(tmp_path / "X.npy", mmap_mode="r")
    y = (np.asarray(X[:, 0]) > 0).astype(int)
    clf = MLPClassifier((8,), max_iter=1, batch_size=256, early_stopping=True, random_state=0)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # max_iter=1 does not converge
            clf.fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 4, f"fit allocated {peak / 2**20:.1f} MiB for {X.nbytes / 2**20} MiB"
    assert len(clf.validation_scores_) == 1


@pytest.mark.parametrize("labels", ["ints", "strings", "uneven"])
def test_the_lean_stratified_split_is_scikit_learns(labels):
    pytest.importorskip("sklearn")
    from sklearn.model_selection import StratifiedShuffleSplit

    from matnet.sklearn.estimators import _stratified_split

    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 1001)
    if labels == "strings":
        y = np.array(["b", "a", "c"])[y]
    if labels == "uneven":
        y = np.where(rng.random(1001) < 0.97, 0, 1)
    for fraction, seed in [(0.1, 0), (0.25, 7), (0.5, 123)]:
        expected = next(StratifiedShuffleSplit(test_size=fraction, random_state=seed).split(y, y))
        got = _stratified_split(y, fraction, seed)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    with pytest.raises(ValueError, match="only 1 member"):
        _stratified_split(np.array([0, 0, 0, 1]), 0.5, 0)
