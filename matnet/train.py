"""Mini-batch training: :func:`fit`, its :class:`History`, and :class:`Callback`.

One step is the article end to end: gather a batch into a reused buffer, ``forward`` through the layers,
``(value, dZ) = loss(Z, Y)``, ``backward(dZ)`` into the flat gradient vector, one optimizer step on the
flat parameter vector. Every input is validated before the first step, so bad data never changes a
parameter.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from matnet import _accel
from matnet.checkpoint import (
    Checkpoint,
    TrainState,
    data_fingerprint,
    read_checkpoint,
    remove_stale_temporaries,
    restore_generator,
    write_checkpoint,
)
from matnet.errors import ModelFileError, TrainingDivergedError
from matnet.losses import Loss, SoftmaxCrossEntropy, get_loss
from matnet.model import Sequential
from matnet.optim import Optimizer, get_optimizer
from matnet.schedules import Schedule, get_schedule
from matnet.validation import (
    as_generator,
    check_features,
    check_number,
    check_positive_int,
    check_sample_weight,
    check_targets,
    split_validation,
)

__all__ = ["fit", "History", "Callback"]

Array = Any


# --- validation at the boundary --------------------------------------------------------------


# --- history and callbacks ---------------------------------------------------------------------


class History:
    """Per-epoch records of a :func:`fit` call.

    Each record is a dict with ``epoch`` (1-based), ``loss``, ``seconds``, ``learning_rate`` and, with
    validation data, ``val_loss`` and ``val_<metric>`` (``val_accuracy`` or ``val_r2``).
    ``history["loss"]`` gives one key across all epochs.
    """

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self.records: list[dict[str, Any]] = [dict(r) for r in records]
        self.best_epoch: int | None = None
        self.stopped_early = False
        #: Ctrl-C stopped training (after a whole step; the best weights were kept).
        self.interrupted = False
        #: Training diverged and ``on_divergence="warn"`` stopped it quietly.
        self.diverged = False
        #: ``(epoch, batch)`` where a resumed run picked up, or None.
        self.resumed_from: tuple[int, int] | None = None

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def __getitem__(self, key: str) -> list[Any]:
        if not self.records or key not in self.records[-1]:
            raise KeyError(f"{key!r} is not recorded; available: {sorted(self.keys())}")
        return [r.get(key) for r in self.records]

    def keys(self) -> list[str]:
        return list(self.records[-1]) if self.records else []

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        last = self.records[-1] if self.records else {}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float))
        return f"History({len(self)} epochs; last: {shown})"


class Callback:
    """Hooks called by :func:`fit`. Return True from ``on_epoch_end`` or ``on_batch_end`` to stop
    training after that point. Any plain callable passed as a callback is called as
    ``on_epoch_end(epoch, logs)``."""

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        """Before the first epoch; ``logs`` holds the run's settings."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        """Before each epoch (1-based ``epoch``)."""

    def on_batch_end(self, step: int, logs: dict[str, Any]) -> bool | None:
        """After each optimizer step; ``logs`` holds ``loss`` (of the batch) and ``batch_size``."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool | None:
        """After each epoch, with that epoch's record of the :class:`History`."""

    def on_train_end(self, logs: dict[str, Any]) -> None:
        """After the last epoch (and after the best weights were restored)."""


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[int, dict[str, Any]], Any]) -> None:
        self.fn = fn

    def on_epoch_end(self, epoch, logs):
        return self.fn(epoch, logs)


def as_callbacks(callbacks: Any) -> list[Callback]:
    """Normalize ``callbacks=``: None, one callback, or a list of Callback objects and callables."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or callable(callbacks):
        callbacks = [callbacks]
    result = []
    for cb in callbacks:
        if isinstance(cb, Callback):
            result.append(cb)
        elif callable(cb):
            result.append(_FunctionCallback(cb))
        else:
            raise TypeError(f"callback {cb!r} is neither a matnet.Callback nor callable")
    return result


class _Progress:
    """A tqdm bar over epochs when tqdm is installed; otherwise one printed line per epoch."""

    def __init__(self, verbose: int, epochs: int, initial: int) -> None:
        self.verbose, self.bar = verbose, None
        if verbose == 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(
                    total=epochs, initial=initial, unit="epoch", file=sys.stderr, dynamic_ncols=True
                )

    def update(self, record: dict[str, Any]) -> None:
        shown = {
            k: f"{v:.4g}"
            for k, v in record.items()
            if k not in ("epoch", "learning_rate", "seconds") and isinstance(v, float)
        }
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)
        elif self.verbose:
            parts = " ".join(f"{k}={v}" for k, v in shown.items())
            print(f"epoch {record['epoch']}: {parts}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- splitting --------------------------------------------------------------------------------


# --- interruption -----------------------------------------------------------------------------


class _InterruptFlag:
    """While active, Ctrl-C (SIGINT) asks training to stop after the current step instead of raising
    KeyboardInterrupt; a second Ctrl-C raises at once. Installed only in the main thread, and the
    previous handler is put back on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not None:  # None: set outside Python, so it could not be put back
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


# --- checkpoints and resuming -----------------------------------------------------------------


def _check_checkpoint_options(checkpoint: Any, checkpoint_every: Any, resume: Any) -> Any:
    """Validate the checkpoint options; return the path to resume from (or None)."""
    if checkpoint_every != "epoch":
        checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a file path, got {type(checkpoint).__name__}")
        folder = Path(checkpoint).parent
        if not folder.is_dir():
            raise ValueError(
                f"checkpoint={str(checkpoint)!r}: folder {str(folder)!r} does not exist"
            )
        if Path(checkpoint).is_dir():
            raise ValueError(f"checkpoint={str(checkpoint)!r} is a directory; give a file path")
    if resume is True:
        if checkpoint is None:
            raise ValueError("resume=True needs checkpoint=PATH (or give resume=PATH)")
        return checkpoint if Path(checkpoint).exists() else None  # first run: start fresh
    if resume is False or resume is None:
        return None
    if not isinstance(resume, (str, os.PathLike)):
        raise TypeError(f"resume must be True, False or a checkpoint path, got {resume!r}")
    return resume


def _check_resumable(
    ckpt: Checkpoint,
    source: Any,
    model: Sequential,
    opt: Optimizer,
    data: dict[str, Any],
    batch_size: int,
    val_split: bool,
) -> None:
    """Refuse a checkpoint that belongs to another model, optimizer, data set or batch size."""
    if ckpt.model_config != model.config():
        raise ValueError(
            f"checkpoint {source} was written for another model ({ckpt.model_config}); this model "
            f"is {model.config()}"
        )
    if ckpt.optimizer_config.get("name") != opt.name:
        raise ValueError(
            f"checkpoint {source} was written with optimizer "
            f"{ckpt.optimizer_config.get('name')!r}, not {opt.name!r}; pass the same optimizer"
        )
    # The optimizer's current rate is the schedule's; its settings and the base rate must match.
    saved = {**ckpt.optimizer_config, "learning_rate": ckpt.state.base_lr}
    if saved != opt.config():
        raise ValueError(
            f"checkpoint {source} was written with optimizer settings {saved}; this run has "
            f"{opt.config()}. Resume with the same settings."
        )
    saved = {k: ckpt.data.get(k) for k in ("n_samples", "n_features", "crc32")}
    current = {k: data[k] for k in saved}
    if saved != current:
        raise ValueError(
            f"checkpoint {source} was written for other training data ({saved}); this data is "
            f"{current}. Resume with the same X and y."
        )
    if (ckpt.val_idx is not None) != val_split:
        raise ValueError(
            f"checkpoint {source} was written "
            f"{'with' if ckpt.val_idx is not None else 'without'} a validation_fraction split; "
            "resume with the same validation settings"
        )
    state = ckpt.state
    if state.batch and ckpt.data.get("batch_size") != batch_size:
        raise ValueError(
            f"checkpoint {source} stopped in the middle of an epoch with "
            f"batch_size={ckpt.data.get('batch_size')}; resume with that batch size"
        )


def _check_permutation(ckpt: Checkpoint, source: Any, n_train: int, batch_size: int) -> None:
    state = ckpt.state
    n_batches = -(-n_train // batch_size)
    if state.perm is not None and (
        state.perm.shape != (n_train,)
        or state.batch > n_batches
        or not np.array_equal(np.sort(state.perm), np.arange(n_train))
    ):
        raise ModelFileError(f"{source}: the saved permutation does not fit {n_train} rows")


def _validation_rows(ckpt: Checkpoint, source: Any, n: int) -> np.ndarray:
    val_idx = ckpt.val_idx
    if not (
        val_idx.size
        and val_idx.size < n
        and val_idx[0] >= 0
        and val_idx[-1] < n
        and np.all(np.diff(val_idx) > 0)
    ):
        raise ModelFileError(f"{source}: the saved validation rows do not fit {n} samples")
    return val_idx


def _restore(
    ckpt: Checkpoint,
    source: Any,
    model: Sequential,
    opt: Optimizer,
    sched: Schedule,
    rng: np.random.Generator,
) -> np.random.Generator:
    """Load the checkpoint's generator, schedule, optimizer and parameters (the parameters last, so
    a defect found on the way leaves the model untouched)."""
    rng = restore_generator(rng, ckpt.rng_state, source)
    try:
        sched.load_state_dict(ckpt.schedule_state)
        opt.load_state_dict(ckpt.optimizer_state)
        if not model.backend.is_host:  # the moments go where the parameters are
            opt.to_device(model.backend.asarray)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{source}: the optimizer or schedule state is invalid ({exc})"
        ) from None
    model.flat_params[...] = ckpt.params
    return rng


# --- fit --------------------------------------------------------------------------------------


def fit(
    model: Sequential,
    X: Any,
    y: Any,
    *,
    loss: str | Loss | None = None,
    optimizer: str | dict | Optimizer = "adam",
    learning_rate: float | None = None,
    l2: float = 0.0,
    epochs: int = 10,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | np.random.Generator | None = 0,
    validation_data: tuple[Any, Any] | None = None,
    validation_fraction: float = 0.0,
    early_stopping: bool = False,
    patience: int = 10,
    min_delta: float = 0.0,
    schedule: str | Schedule | None = None,
    clip_norm: float | None = None,
    sample_weight: Any = None,
    callbacks: Any = None,
    verbose: int = 1,
    on_divergence: str = "raise",
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | str = "epoch",
    resume: bool | str | os.PathLike = False,
    comm: Any = None,
) -> History:
    """Train ``model`` on ``(X, y)`` with mini-batches reshuffled every epoch.

    Parameters
    ----------
    model : Sequential
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Class indices or one-hot rows (cross-entropy), 0/1 labels (binary cross-entropy), or values.
    loss : str or Loss, optional
        ``"cross_entropy"``, ``"binary_cross_entropy"`` or ``"mse"``; defaults to the model's loss.
        The model keeps it for ``predict``/``predict_proba``.
    optimizer : str, dict or Optimizer
        ``"sgd"``, ``"adam"``, ``"adamw"``, or a configured instance (for momentum, betas, ...).
    learning_rate : float, optional
        Initial learning rate for an optimizer given by name (default: the optimizer's).
    l2 : float
        L2 penalty on the weights for an optimizer given by name.
    epochs : int
        Passes over the training data (in total, counting those done before a resume).
    batch_size : int
        Rows per step; the last batch of an epoch may be smaller. Larger than the data means one batch.
    shuffle : bool
        Reshuffle the rows every epoch (from ``seed``).
    seed : int or numpy.random.Generator
        Drives shuffling, dropout and the validation split. The same seed, data and BLAS thread count
        give bit-identical weights.
    validation_data : (X_val, y_val), optional
    validation_fraction : float in [0, 1)
        Hold out this fraction of ``(X, y)`` (stratified for class indices) when no validation_data.
    early_stopping : bool
        Stop when the monitored loss (validation loss if any, else training loss) has not improved by
        ``min_delta`` for ``patience`` epochs, and restore the weights of the best epoch.
    schedule : str or Schedule, optional
        Learning-rate schedule, applied at the start of each epoch.
    clip_norm : float, optional
        Rescale the whole gradient vector when its L2 norm exceeds this value.
    sample_weight : array-like of shape (n_samples,), optional
    callbacks : Callback, callable or list of them
    verbose : int
        0 silent, 1 a progress bar (tqdm, when installed), 2 one line per epoch.
    on_divergence : {"raise", "warn"}
        The loss is checked for NaN/infinity at every step and the parameters at every epoch end. On
        failure training stops and the last good weights are restored (the best epoch's with early
        stopping, else those at the end of the last finite epoch); then ``"raise"`` raises
        :class:`~matnet.errors.TrainingDivergedError` and ``"warn"`` warns and returns the history
        with ``history.diverged = True``.
    checkpoint : path, optional
        Write the whole training state here (atomically; see :mod:`matnet.checkpoint`) every
        ``checkpoint_every``, at the end, and on Ctrl-C.
    checkpoint_every : int or "epoch"
        A number of optimizer steps, or ``"epoch"`` for every epoch end.
    resume : bool or path
        ``True``: continue from ``checkpoint`` if that file exists (else start fresh); a path:
        continue from that checkpoint. The result is bit-identical to the run never having stopped.
    comm : matnet.distributed.Communicator, optional
        Train data-parallel across the ranks of ``comm`` (see :mod:`matnet.distributed`): each rank
        computes its share of every global batch of ``batch_size`` rows and one Allreduce per step
        sums the gradients and the loss. Only rank 0 writes the checkpoint.

    Returns
    -------
    History
        ``history.interrupted`` is True when Ctrl-C stopped training (after the current step; the
        best weights are kept and the checkpoint written), ``history.diverged`` when training diverged
        with ``on_divergence="warn"``.

    Raises
    ------
    TrainingDivergedError
        When the loss or the parameters stop being finite (unless ``on_divergence="warn"``).
    ModelFileError
        When the checkpoint to resume from is corrupted or not a checkpoint.
    """
    # Everything is checked before the first parameter changes.
    if not isinstance(model, Sequential):
        raise TypeError(f"fit() needs a matnet Sequential model, got {type(model).__name__}")
    loss_fn = get_loss(loss) if loss is not None else model.loss
    if loss_fn is None:
        raise ValueError(
            "no loss given: pass loss='cross_entropy', 'binary_cross_entropy' or 'mse'"
        )
    if isinstance(optimizer, Optimizer):
        if learning_rate is not None:
            optimizer.learning_rate = check_number(
                "learning_rate", learning_rate, 0, math.inf, low_open=True
            )
        opt = optimizer
    else:
        options: dict[str, Any] = {"l2": l2}
        if learning_rate is not None:
            options["learning_rate"] = learning_rate
        opt = get_optimizer(optimizer, **options)
    if isinstance(loss_fn, SoftmaxCrossEntropy) and model.n_outputs < 2:
        raise ValueError(
            "softmax cross-entropy needs one output per class, at least 2; this model has 1 "
            "output (use 2 outputs, or loss='binary_cross_entropy' for a single 0/1 output)"
        )
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
        raise ValueError(f"patience={patience!r} must be a non-negative integer")
    if not (
        isinstance(validation_fraction, (int, float))
        and not isinstance(validation_fraction, bool)
        and 0 <= validation_fraction < 1
    ):
        raise ValueError(f"validation_fraction={validation_fraction!r} must be in [0, 1)")
    if not (isinstance(min_delta, (int, float)) and math.isfinite(min_delta) and min_delta >= 0):
        raise ValueError(f"min_delta={min_delta!r} must be a finite non-negative number")
    if clip_norm is not None and not (
        isinstance(clip_norm, (int, float)) and math.isfinite(clip_norm) and clip_norm > 0
    ):
        raise ValueError(f"clip_norm={clip_norm!r} must be a positive number or None")
    if verbose not in (0, 1, 2, False, True):
        raise ValueError(f"verbose={verbose!r} must be 0, 1 or 2")
    if on_divergence not in ("raise", "warn"):
        raise ValueError(f"on_divergence={on_divergence!r} must be 'raise' or 'warn'")
    resume_from = _check_checkpoint_options(checkpoint, checkpoint_every, resume)
    if comm is not None and not comm.is_root:
        checkpoint = None  # only rank 0 writes files (every rank reads the one it resumes from)
    if schedule == "cosine":  # named by string: anneal over this run's epochs
        sched = get_schedule("cosine", total_epochs=epochs)
    else:
        sched = get_schedule(schedule)
    cbs = as_callbacks(callbacks)
    rng = as_generator(seed) if comm is None else comm.shared_generator(seed)
    ckpt = read_checkpoint(resume_from) if resume_from is not None else None

    X = check_features(X, model.n_features, model.dtype)
    n = X.shape[0]
    Y = check_targets(loss_fn, y, n, model.n_outputs, model.dtype)
    W_sample = check_sample_weight(sample_weight, n, model.dtype)
    data = None
    if checkpoint is not None or ckpt is not None:
        data = {**data_fingerprint(X, Y), "batch_size": batch_size}
    if ckpt is not None:
        val_split = validation_data is None and validation_fraction > 0
        _check_resumable(ckpt, resume_from, model, opt, data, batch_size, val_split)
    val_idx = None  # the rows a validation_fraction split holds out; saved in checkpoints
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        X_val = check_features(validation_data[0], model.n_features, model.dtype)
        Y_val = check_targets(
            loss_fn, validation_data[1], X_val.shape[0], model.n_outputs, model.dtype
        )
    elif validation_fraction > 0:
        if ckpt is not None and ckpt.val_idx is not None:
            val_idx = _validation_rows(ckpt, resume_from, n)
            train_idx = np.setdiff1d(np.arange(n), val_idx, assume_unique=True)
        else:
            stratify = isinstance(loss_fn, SoftmaxCrossEntropy) and Y.ndim == 1
            train_idx, val_idx = split_validation(n, validation_fraction, Y, rng, stratify)
        X_val, Y_val = X[val_idx], Y[val_idx]
        X, Y = X[train_idx], Y[train_idx]
        W_sample = None if W_sample is None else W_sample[train_idx]
        n = X.shape[0]
    else:
        X_val = Y_val = None

    model.loss = loss_fn
    params, grads = model.flat_params, model.flat_grads
    if ckpt is not None:
        _check_permutation(ckpt, resume_from, n, batch_size)
    opt.prepare(params, model.n_decay)  # keeps the state of an optimizer reused on this model
    if ckpt is not None:
        rng = _restore(ckpt, resume_from, model, opt, sched, rng)
        state = ckpt.state
    else:
        state = TrainState(base_lr=opt.learning_rate)
    # Distributed: rank 0's parameters and optimizer state everywhere; dropout streams per rank.
    drop_rng = rng if comm is None else comm.start(params, opt, rng, n)
    if checkpoint is not None:
        remove_stale_temporaries(checkpoint)

    def save_checkpoint() -> None:
        write_checkpoint(checkpoint, model, opt, sched, rng, state, val_idx=val_idx, data=data)

    monitor = "val_loss" if X_val is not None else "loss"
    every_steps = None if checkpoint is None or checkpoint_every == "epoch" else checkpoint_every
    # The weights to fall back on if training diverges: those at the last finite epoch end.
    last_good = params.copy()
    last_good_at = f"the end of epoch {state.epoch - 1}" if state.epoch > 1 else "the start"
    if state.batch:
        last_good_at = f"the checkpoint (epoch {state.epoch}, batch {state.batch})"

    # Reused batch buffers: np.take(..., out=, mode="clip") gathers rows without allocating.
    m_max = min(batch_size, n)
    X_buf = np.empty((m_max, X.shape[1]), dtype=X.dtype)
    Y_buf = np.empty((m_max, *Y.shape[1:]), dtype=Y.dtype)
    W_buf = None if W_sample is None else np.empty(m_max, dtype=W_sample.dtype)
    order = np.arange(n)
    n_batches = -(-n // batch_size)

    for cb in cbs:
        cb.on_train_begin({"epochs": epochs, "batch_size": batch_size, "n_samples": n})
    progress = _Progress(int(verbose), epochs, min(state.epoch - 1, epochs))
    resumed_from = (state.epoch, state.batch) if ckpt is not None else None
    diverged: str | None = None  # what went wrong, when the loss or parameters stop being finite
    diverged_step = 0
    # A callback's request to stop, and Ctrl-C: acted on after the current step by one process; in
    # distributed training, after the step at which every rank has heard of it (see votes below).
    asked_to_stop = interrupted = False
    unsaved = False  # the state has moved on since the last checkpoint
    # Overflow and NaN warnings are silenced: the checks below turn them into one clear error.
    with (
        _InterruptFlag() as interrupt,
        closing(progress),
        np.errstate(over="ignore", invalid="ignore"),
    ):
        while state.epoch <= epochs and not state.stopped:
            epoch = state.epoch
            started = time.perf_counter()
            opt.learning_rate = sched.learning_rate(epoch - 1, state.base_lr)
            if state.batch == 0:
                for cb in cbs:
                    cb.on_epoch_begin(epoch, {"learning_rate": opt.learning_rate})
                state.perm = rng.permutation(n) if shuffle else order
            perm = state.perm
            stop = False
            for start in range(state.batch * batch_size, n, batch_size):
                idx = perm[start : start + batch_size]
                if comm is not None:  # this rank's share of the global batch
                    m_global, idx = idx.shape[0], comm.shard(idx)
                m = idx.shape[0]
                xb = _accel.take_rows(X, idx, X_buf)
                yb = np.take(Y, idx, axis=0, out=Y_buf[:m], mode="clip")
                wb = None if W_buf is None else np.take(W_sample, idx, out=W_buf[:m], mode="clip")
                Z, backward = model.forward(xb, training=True, rng=drop_rng)
                value, dZ = loss_fn(Z, yb, wb)
                backward(dZ)  # fills grads; the parameters change only at opt.step below
                if comm is not None:
                    # One Allreduce, so every rank checks the same loss; it also carries each
                    # rank's requests to stop (from earlier steps), so all ranks stop together.
                    value, votes = comm.allreduce_mean(
                        grads, value, m_global, votes=(asked_to_stop, interrupt.requested)
                    )
                    m = m_global
                if not math.isfinite(value):
                    diverged = f"the loss of batch {state.batch + 1} of {n_batches} is {value}"
                    diverged_step = state.step + 1
                    break
                if clip_norm is not None:
                    norm = math.sqrt(float(np.dot(grads, grads)))
                    if norm > clip_norm:
                        grads *= clip_norm / norm
                opt.step(params, grads)
                state.loss_sum += value * m
                state.batch += 1
                state.step += 1
                unsaved = True
                if every_steps and state.step % every_steps == 0:
                    save_checkpoint()
                    unsaved = False
                if cbs:
                    logs = {"loss": value, "batch_size": m, "epoch": epoch}
                    if any(cb.on_batch_end(state.step, logs) for cb in cbs):
                        asked_to_stop = True
                if comm is None:
                    if asked_to_stop:
                        stop = True
                        break
                    if interrupt.requested:
                        interrupted = True
                        break
                elif any(votes):  # a rank asked at an earlier step: every rank stops after this one
                    stop, interrupted = votes
                    break
            if comm is None:
                interrupted = interrupt.requested
            if diverged or interrupted:
                break

            record: dict[str, Any] = {"epoch": epoch, "loss": state.loss_sum / n}
            if X_val is not None:
                Z_val = model.logits(X_val)
                record["val_loss"] = loss_fn(Z_val, Y_val)[0]
                record[f"val_{loss_fn.metric_name}"] = loss_fn.metric(Z_val, Y_val)
            record["learning_rate"] = opt.learning_rate
            record["seconds"] = time.perf_counter() - started
            if not np.all(np.isfinite(params)):
                diverged = "the parameters are no longer all finite"
            elif not math.isfinite(record[monitor]):
                diverged = f"the epoch's {monitor} is {record[monitor]}"
            if diverged:
                diverged_step = state.step
                break
            np.copyto(last_good, params)
            last_good_at = f"the end of epoch {epoch}"

            state.records.append(record)
            sched.observe(record[monitor])
            progress.update(record)
            if record[monitor] < state.best_value - min_delta:
                state.best_value, state.bad_epochs = record[monitor], 0
                state.best_epoch = epoch
                if early_stopping:
                    if state.best_params is None:
                        state.best_params = params.copy()
                    else:
                        np.copyto(state.best_params, params)
            else:
                state.bad_epochs += 1
            if any(cb.on_epoch_end(epoch, record) for cb in cbs):
                asked_to_stop = True
            if comm is None:
                interrupted = interrupt.requested
            else:  # one small Allreduce per epoch: the ranks' requests since the last step's
                asked_to_stop, interrupted = comm.any_of(asked_to_stop, interrupt.requested)
            stop = stop or asked_to_stop
            asked_to_stop = False
            if early_stopping and state.bad_epochs > patience:
                state.stopped_early = True
                stop = True
            state.stopped = stop
            state.end_epoch()
            unsaved = True
            if checkpoint is not None and every_steps is None:
                save_checkpoint()
                unsaved = False
            if comm is None:
                interrupted = interrupt.requested
            if interrupted:
                break
        if checkpoint is not None and unsaved and not diverged:
            save_checkpoint()  # the final state, or where Ctrl-C stopped

    history = History(state.records)
    history.best_epoch = state.best_epoch
    history.stopped_early = state.stopped_early
    history.interrupted = interrupted and not diverged
    history.resumed_from = resumed_from
    restored = None
    if early_stopping and state.best_params is not None:
        params[...] = state.best_params
        restored = f"the best weights (epoch {state.best_epoch})"
    if diverged:
        if restored is None:
            params[...] = last_good
            restored = f"the weights at {last_good_at}"
        message = (
            f"training diverged at epoch {state.epoch}, step {diverged_step}: {diverged}. "
            f"Restored {restored}. Likely fix: a smaller learning rate (it was "
            f"{opt.learning_rate:.3g}; try {opt.learning_rate / 10:.3g}), clip_norm=1.0, or "
            "standardized features."
        )
        if on_divergence == "raise":
            error = TrainingDivergedError(message)
            error.epoch, error.step, error.history = state.epoch, diverged_step, history
            raise error
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        history.diverged = True
    if history.interrupted and (comm is None or comm.is_root):
        kept = restored or "the current weights"
        saved = f"; checkpoint written to {checkpoint}" if checkpoint is not None else ""
        print(
            f"matnet: interrupted at epoch {state.epoch}, step {state.step}; kept {kept}{saved}",
            file=sys.stderr,
            flush=True,
        )
    for cb in cbs:
        cb.on_train_end({"epochs_run": len(history), "best_epoch": history.best_epoch})
    return history
