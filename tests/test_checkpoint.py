"""Checkpoints: resuming gives bit-identical weights, and a bad checkpoint is refused before any work.

The in-process tests stop a run by raising from a callback (the process survives, the checkpoint on disk
is all that is kept). The SIGKILL tests in test_checkpoint_kill.py do the same with real processes.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from crash import CrashAt, CrashError

import matnet
from matnet.checkpoint import CHECKPOINT_VERSION, load_model, read_checkpoint
from matnet.io import decode_tensors, encode_tensors


def make_data(n=150, d=6, k=3, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, :k] @ rng.normal(size=(k,)) > 0).astype(int) + (X[:, 0] > 1)
    return X, y


def train(path=None, *, dtype="float32", crash_at=None, **kwargs):
    """A small run with everything that consumes randomness: shuffling, dropout, a validation split."""
    X, y = make_data()
    model = matnet.MLP([6, 12, 3], dropout=0.25, loss="cross_entropy", seed=0, dtype=dtype)
    options = dict(
        epochs=6,
        batch_size=16,
        seed=7,
        validation_fraction=0.2,
        verbose=0,
        optimizer="adam",
        learning_rate=0.01,
    )
    options.update(kwargs)
    if path is not None:
        options.setdefault("checkpoint", path)
    callbacks = [CrashAt(crash_at)] if crash_at else None
    history = model.fit(X, y, callbacks=callbacks, **options)
    return model, history


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("every", "crash_at"),
    [("epoch", 20), (4, 18), (4, 16), (1, 1), (3, 42)],
    ids=["epoch-end", "mid-epoch", "mid-epoch-on-the-step", "first-step", "last-step"],
)
def test_resume_is_bit_identical(tmp_path, dtype, every, crash_at):
    reference, ref_history = train(dtype=dtype)
    path = tmp_path / "run.ckpt"
    with pytest.raises(CrashError):
        train(path, dtype=dtype, checkpoint_every=every, crash_at=crash_at)
    assert path.exists()
    state = read_checkpoint(path).state
    if every == "epoch":
        assert state.batch == 0 and state.epoch > 1
    resumed, history = train(path, dtype=dtype, checkpoint_every=every, resume=True)
    assert history.resumed_from == (state.epoch, state.batch)
    assert resumed.flat_params.dtype == np.dtype(dtype)
    assert np.array_equal(resumed.flat_params, reference.flat_params)
    assert history["loss"] == ref_history["loss"]
    assert history["val_loss"] == ref_history["val_loss"]


def test_resume_with_early_stopping_schedule_and_momentum(tmp_path):
    options = dict(
        optimizer=matnet.SGD(0.05, momentum=0.9, nesterov=True),
        schedule=matnet.ReduceLROnPlateau(factor=0.5, patience=1),
        early_stopping=True,
        patience=2,
        epochs=12,
        sample_weight=np.linspace(0.5, 1.5, 150),
    )
    reference, ref_history = train(**options)
    path = tmp_path / "run.ckpt"
    options["optimizer"] = matnet.SGD(0.05, momentum=0.9, nesterov=True)
    options["schedule"] = matnet.ReduceLROnPlateau(factor=0.5, patience=1)
    with pytest.raises(CrashError):
        train(path, checkpoint_every=5, crash_at=37, **options)
    options["optimizer"] = matnet.SGD(0.05, momentum=0.9, nesterov=True)
    options["schedule"] = matnet.ReduceLROnPlateau(factor=0.5, patience=1)
    resumed, history = train(path, resume=True, **options)
    assert np.array_equal(resumed.flat_params, reference.flat_params)
    assert history.best_epoch == ref_history.best_epoch
    assert history.stopped_early == ref_history.stopped_early
    assert history["learning_rate"] == ref_history["learning_rate"]


def test_resume_true_without_a_file_starts_fresh_and_finished_run_resumes_to_itself(tmp_path):
    path = tmp_path / "run.ckpt"
    reference, _ = train()
    model, history = train(path, resume=True)
    assert history.resumed_from is None
    assert np.array_equal(model.flat_params, reference.flat_params)
    state = read_checkpoint(path).state
    assert (state.epoch, state.batch) == (7, 0)
    # Resuming a finished run trains no further and ends with the same weights.
    again, history = train(path, resume=True)
    assert history.resumed_from == (7, 0) and len(history) == 6
    assert np.array_equal(again.flat_params, reference.flat_params)
    # More epochs continue it.
    longer, history = train(path, resume=True, epochs=8)
    assert len(history) == 8
    assert not np.array_equal(longer.flat_params, reference.flat_params)


def test_resume_from_explicit_path_writes_elsewhere(tmp_path):
    first = tmp_path / "a.ckpt"
    with pytest.raises(CrashError):
        train(first, checkpoint_every=2, crash_at=11)
    before = first.read_bytes()
    reference, _ = train()
    model, _ = train(resume=first, checkpoint=tmp_path / "b.ckpt")
    assert np.array_equal(model.flat_params, reference.flat_params)
    assert first.read_bytes() == before
    assert read_checkpoint(tmp_path / "b.ckpt").state.epoch == 7


def test_checkpoint_contents_and_load_model(tmp_path):
    path = tmp_path / "run.ckpt"
    with pytest.raises(CrashError):
        train(path, checkpoint_every=3, crash_at=10, early_stopping=True)
    ckpt = read_checkpoint(path)
    assert ckpt.state.step == 9 and ckpt.state.epoch == 2 and ckpt.state.batch == 1
    assert sorted(ckpt.state.perm.tolist()) == list(range(120))
    assert ckpt.val_idx.shape == (30,)
    assert set(ckpt.optimizer_state) >= {"m", "v", "t", "learning_rate"}
    assert ckpt.rng_state["bit_generator"] == "PCG64"
    assert ckpt.state.best_params is not None
    assert len(ckpt.state.records) == 1
    model = load_model(path)
    assert np.array_equal(model.flat_params, ckpt.params)
    assert model.predict(make_data()[0]).shape == (150,)
    # A checkpoint is not a model file, and a model file is not a checkpoint.
    with pytest.raises(matnet.ModelFileError, match="not a matnet model"):
        matnet.load(path)
    matnet.save(model, tmp_path / "m.safetensors")
    with pytest.raises(matnet.ModelFileError, match="not a matnet checkpoint"):
        read_checkpoint(tmp_path / "m.safetensors")


def test_stale_temporary_files_are_removed(tmp_path):
    path = tmp_path / "run.ckpt"
    stale = tmp_path / ".run.ckpt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.ckpt.abc123.tmp"
    other.write_bytes(b"not ours")
    train(path, epochs=1)
    assert not stale.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.ckpt.abc123.tmp", "run.ckpt"]


# --- refusing a checkpoint that does not fit, before any parameter changes -----------------------


@pytest.fixture
def checkpoint_file(tmp_path):
    path = tmp_path / "run.ckpt"
    with pytest.raises(CrashError):
        train(path, checkpoint_every=2, crash_at=9)
    return path


def fresh_model(sizes=(6, 12, 3), dtype="float32"):
    return matnet.MLP(list(sizes), dropout=0.25, loss="cross_entropy", seed=0, dtype=dtype)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(model=((6, 13, 3), "float32")), "another model"),
        (dict(model=((6, 12, 3), "float64")), "another model"),
        (dict(optimizer="sgd"), "optimizer 'adam', not 'sgd'"),
        (dict(learning_rate=0.02), "optimizer settings"),
        (dict(l2=0.1), "optimizer settings"),
        (dict(rows=149), "other training data"),
        (dict(shift=1e-9), "other training data"),
        (dict(batch_size=8), "batch_size=16"),
        (dict(validation_fraction=0.0), "validation_fraction"),
    ],
)
def test_mismatched_resume_is_refused_before_any_change(checkpoint_file, change, match):
    X, y = make_data()
    sizes, dtype = change.pop("model", ((6, 12, 3), "float32"))
    model = fresh_model(sizes, dtype)
    if "rows" in change:
        X, y = X[: change.pop("rows")], y[:149]
    if "shift" in change:
        X = X.copy()
        X[3, 2] += change.pop("shift")
    options = dict(
        epochs=6,
        batch_size=16,
        seed=7,
        validation_fraction=0.2,
        verbose=0,
        optimizer="adam",
        learning_rate=0.01,
    )
    options.update(change)
    before = model.flat_params.copy()
    stamp = checkpoint_file.stat().st_mtime_ns, checkpoint_file.read_bytes()
    with pytest.raises(ValueError, match=match):
        model.fit(X, y, resume=True, checkpoint=checkpoint_file, **options)
    assert np.array_equal(model.flat_params, before)
    assert (checkpoint_file.stat().st_mtime_ns, checkpoint_file.read_bytes()) == stamp


def rewrite(path, edit_meta=None, edit_tensors=None):
    tensors, meta = decode_tensors(path.read_bytes())
    meta.pop("matnet.sha256")
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    path.write_bytes(encode_tensors(tensors, meta))


def _set_state(key, value):
    def edit(meta):
        state = json.loads(meta["state"])
        state[key] = value
        meta["state"] = json.dumps(state)

    return edit


@pytest.mark.parametrize(
    ("meta_edit", "tensor_edit", "match"),
    [
        (lambda m: m.update(format_version=str(CHECKPOINT_VERSION + 1)), None, "newer"),
        (lambda m: m.update(format_version="one"), None, "not an integer"),
        (lambda m: m.pop("rng"), None, "lacks 'rng'"),
        (lambda m: m.update(state="{"), None, "not valid JSON"),
        (lambda m: m.update(state="[1]"), None, "must be a JSON object"),
        (_set_state("epoch", -1), None, "non-negative integers"),
        (_set_state("batch", 0), None, "permutation"),
        (_set_state("records", "x"), None, "records"),
        (
            lambda m: m.update(rng=json.dumps({"bit_generator": "os.system", "state": {}})),
            None,
            "unknown random bit generator",
        ),
        (
            lambda m: m.update(
                rng=json.dumps({"bit_generator": "PCG64", "state": {"state": "x", "inc": 1}})
            ),
            None,
            "generator state is invalid",
        ),
        (None, lambda t: t.update(params=np.full_like(t["params"], np.nan)), "not all finite"),
        (None, lambda t: t.update({"optimizer.m": t["optimizer.m"][:-1]}), "optimizer tensor"),
        (None, lambda t: t.update(perm=t["perm"][::-1][1:]), "permutation"),
        (None, lambda t: t.update(perm=np.zeros_like(t["perm"])), "permutation"),
        (None, lambda t: t.update(val_idx=t["val_idx"] + 500), "validation rows"),
        (None, lambda t: t.update(extra=np.zeros(2)), "unexpected tensor"),
        (None, lambda t: t.pop("optimizer.v"), "optimizer or schedule state"),
    ],
)
def test_hand_edited_checkpoint_is_refused(checkpoint_file, meta_edit, tensor_edit, match):
    rewrite(checkpoint_file, meta_edit, tensor_edit)
    X, y = make_data()
    model = fresh_model()
    before = model.flat_params.copy()
    with pytest.raises(matnet.ModelFileError, match=match):
        model.fit(
            X,
            y,
            resume=checkpoint_file,
            learning_rate=0.01,
            epochs=6,
            batch_size=16,
            seed=7,
            validation_fraction=0.2,
            verbose=0,
        )
    assert np.array_equal(model.flat_params, before)


def test_truncated_or_flipped_checkpoint_is_refused(checkpoint_file):
    blob = checkpoint_file.read_bytes()
    X, y = make_data()
    for broken in (blob[: len(blob) // 2], blob[:-1], blob[:-8] + bytes(8)):
        checkpoint_file.write_bytes(broken)
        model = fresh_model()
        before = model.flat_params.copy()
        with pytest.raises(matnet.ModelFileError):
            model.fit(X, y, resume=checkpoint_file, validation_fraction=0.2, verbose=0)
        assert np.array_equal(model.flat_params, before)


def test_checkpoint_option_errors(tmp_path):
    X, y = make_data()
    model = fresh_model()
    cases = [
        (dict(resume=True), ValueError, "needs checkpoint"),
        (dict(resume=tmp_path / "missing.ckpt"), matnet.ModelFileError, "no such file"),
        (dict(resume=3), TypeError, "resume must be"),
        (dict(checkpoint=tmp_path / "no" / "x.ckpt"), ValueError, "does not exist"),
        (dict(checkpoint=tmp_path), ValueError, "is a directory"),
        (dict(checkpoint=tmp_path / "x.ckpt", checkpoint_every=0), ValueError, "positive"),
        (dict(checkpoint=tmp_path / "x.ckpt", checkpoint_every="step"), ValueError, "positive"),
    ]
    before = model.flat_params.copy()
    for options, error, match in cases:
        with pytest.raises(error, match=match):
            model.fit(X, y, verbose=0, **options)
    assert np.array_equal(model.flat_params, before)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_without_shuffling_and_with_validation_data(tmp_path, dtype):
    X, y = make_data()
    options = dict(
        shuffle=False,
        validation_fraction=0.0,
        validation_data=(X[:20], y[:20]),
        schedule="cosine",
        dtype=dtype,
    )
    reference, ref_history = train(**options)
    path = tmp_path / "run.ckpt"
    with pytest.raises(CrashError):
        train(path, checkpoint_every=7, crash_at=30, **options)
    assert read_checkpoint(path).state.perm is not None  # step 28: mid-epoch 3
    resumed, history = train(path, resume=True, **options)
    assert np.array_equal(resumed.flat_params, reference.flat_params)
    assert history["val_loss"] == ref_history["val_loss"]
    assert history["learning_rate"] == ref_history["learning_rate"]
