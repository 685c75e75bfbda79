"""The callback protocol of :func:`matnet.fit`, the :class:`Trainer` it hands to callbacks, and the
built-in callbacks.

:func:`~matnet.training.fit` is a loop over batches; everything else a run does (early stopping,
checkpoints, the divergence guard, Ctrl-C, progress, the history) is a callback on one protocol.

The protocol
------------
A callback subclasses :class:`Callback` and overrides any of its five hooks. Before
``on_train_begin``, ``fit`` sets ``callback.trainer`` to the run's :class:`Trainer`, through which a
callback reads and changes the run:

- ``on_train_begin(logs)``: once, before the first step (``logs``: ``epochs``, ``batch_size``,
  ``n_samples``). On a resumed run, ``trainer.state`` already holds the restored epoch, step and records.
- ``on_epoch_begin(epoch, logs)``: before each epoch (1-based; ``logs``: ``learning_rate``). Not
  called for the epoch a run resumes in the middle of.
- ``on_batch_end(step, logs)``: after each optimizer step (``logs``: ``loss`` of the batch,
  ``batch_size``, ``epoch``). Called only on callbacks whose class overrides it, and the loop skips
  the call entirely when no callback does, so an unused hook costs nothing per batch. Return True (or
  call ``trainer.request_stop(reason)``) to stop after this step.
- ``on_epoch_end(epoch, logs)``: after each epoch, with the epoch's record (``epoch``, ``loss``, with
  validation data ``val_loss`` and ``val_<metric>``, ``learning_rate``, ``seconds``), which is the
  dict kept in the history and the checkpoint: a callback may add keys to it. Return True (or call
  ``request_stop``) to stop after this epoch.
- ``on_train_end(logs)``: after the last epoch (``logs``: ``epochs_run``, ``best_epoch``), after
  the best weights were restored; not called when training diverged and ``on_divergence="raise"``.

Every callback is called (a True from one does not skip the others). Order within an epoch's end:
:class:`DivergenceGuard` sees the record first (a diverged epoch is not recorded and no other callback
sees it); then the trainer records it (``trainer.state.records``, the schedule's ``observe``, the best
monitored value: ``state.best_value``, ``best_epoch``, ``bad_epochs``); then :class:`History`,
:class:`Progress`, :class:`EarlyStopping` and the user's callbacks in the order given; then the ranks
agree on whether to stop and the epoch is closed (``state.epoch`` moves on); last, callbacks with
``closes_epoch = True`` (:class:`Checkpointing`) see the record, so a checkpoint holds the state at
the start of the next epoch.

What a callback may change, and when it is honoured:

- ``trainer.optimizer.learning_rate`` between epochs (in ``on_epoch_end`` or ``on_epoch_begin``): the
  default schedule (:class:`~matnet.schedules.Constant`) never overrides it, so the new rate holds
  from the next step on and is saved in checkpoints. A non-constant schedule sets the rate at every
  epoch start from ``trainer.state.base_lr``: change ``base_lr`` to rescale it.
- ``trainer.optimizer.l2`` (and any other hyperparameter) at any time. A loss wrapper (an instance
  of a :class:`~matnet.losses.Loss` subclass, ``loss(Z, Y, sample_weight) -> (value, dZ)``, passed as
  ``fit(loss=...)``) sees every batch and may set it per batch; the optimizer adds ``l2 * W`` after
  the ranks' reduction, so once. ``fit`` sets ``model.loss`` to the loss it trained with: put the
  plain loss back after training with a wrapper.
- A Dropout layer's ``rate``, the optimizer's ``weight_decay`` and ``l2`` per epoch: that is what
  :class:`DropoutSchedule` and :class:`WeightDecaySchedule` do (at each epoch's begin, from the
  values at train begin, put back when the run ends). Checkpoints are written inside
  :meth:`Trainer.base_hyperparameters`, so they hold the base values a resume compares.
- ``trainer.request_stop(reason)`` from any hook; with several ranks the request travels with the next
  step's reduction (or the epoch-end vote), so every rank stops after the same step.
- ``trainer.model.flat_params`` in ``on_train_end`` (to restore parameters a callback kept).

A plain callable in ``callbacks=`` is called as ``on_epoch_end(epoch, logs)``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sys
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np

from matnet.backend import blas_threads, import_optional
from matnet.checkpoint import (
    CheckpointLock,
    TrainState,
    remove_stale_temporaries,
    write_checkpoint,
)
from matnet.errors import TrainingDivergedError
from matnet.io import atomic_write
from matnet.layers import Dropout
from matnet.schedules import Schedule, epoch_schedule
from matnet.training.rows import Rows

__all__ = [
    "Callback",
    "Trainer",
    "History",
    "EarlyStopping",
    "Checkpointing",
    "DivergenceGuard",
    "Interrupt",
    "Progress",
    "DropoutSchedule",
    "WeightDecaySchedule",
    "as_callbacks",
]


class Callback:
    """Hooks called by :func:`matnet.fit`; see the module docstring for the protocol.

    Return True from ``on_epoch_end`` or ``on_batch_end`` to stop training after that point.
    """

    #: The run's :class:`Trainer`; set by ``fit`` before ``on_train_begin``.
    trainer: Trainer
    #: When True, ``on_epoch_end`` runs after the epoch is closed (after the ranks' vote on stopping,
    #: with ``trainer.state`` at the start of the next epoch), as a checkpoint writer needs.
    closes_epoch = False
    # Position in on_train_end: the built-ins that restore weights or report run before the user's.
    _end_order = 100

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


def uses_batches(callback: Callback) -> bool:
    """Whether ``callback``'s class overrides ``on_batch_end`` (only those are called per batch)."""
    return type(callback).on_batch_end is not Callback.on_batch_end


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


# --- the run's state --------------------------------------------------------------------------


class Trainer:
    """The state of one :func:`matnet.fit` run, shared with its callbacks.

    Attributes
    ----------
    model : Sequential
    optimizer : Optimizer
        Its ``learning_rate`` may be changed by a callback between epochs (see the module docstring).
    loss : Loss or callable
    schedule : Schedule
    comm : Communicator
        :class:`~matnet.training.comm.LocalComm` for one process.
    rng : numpy.random.Generator
        The generator that shuffles (and, in one process, drives dropout).
    state : TrainState
        ``epoch`` (1-based, in progress), ``batch`` (done in this epoch), ``step``, ``records``,
        ``best_value``, ``best_epoch``, ``bad_epochs``, ``best_params``, ``base_lr``; checkpointed.
    validation : tuple (X_val, Y_val) or None
        The validation rows and targets (already checked), when there are any. For a
        ``validation_fraction`` split, ``X_val`` is a :class:`~matnet.training.rows.Rows` (the rows
        by index, not a copy; ``np.asarray`` copies them out, ``X_val.logits(model)`` predicts).
    monitor : str
        ``"val_loss"`` with validation data, else ``"loss"``.
    history : History
        What ``fit`` returns.
    stop_requested : bool
        Set by :meth:`request_stop` (``stop_reason`` says who asked).
    interrupted : bool
        Ctrl-C (on any rank) stopped the run; ``interrupt.requested`` is this process's flag.
    diverged : str or None
        What went wrong when the loss or the parameters stopped being finite.
    restored : str or None
        Which parameters ``on_train_end`` put back, for the messages that follow.
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        loss: Any,
        schedule: Any,
        comm: Any,
        *,
        rng: np.random.Generator,
        state: TrainState,
        epochs: int,
        batch_size: int,
        n: int,
        validation: tuple[Any, Any] | None,
        min_delta: float,
        val_idx: np.ndarray | None,
        data: dict[str, Any] | None,
        checkpoint: Any,
        on_divergence: str,
        resumed_from: tuple[int, int] | None,
        callbacks: list[Callback],
        rows: np.ndarray | None = None,
        threads: int | None = None,
    ) -> None:
        self.model, self.optimizer, self.loss, self.schedule = model, optimizer, loss, schedule
        self.comm, self.rng, self.state = comm, rng, state
        self.epochs, self.batch_size, self.n_samples = epochs, batch_size, n
        self.validation = validation
        self.monitor = "val_loss" if validation is not None else "loss"
        self.min_delta = min_delta
        #: What Checkpointing writes besides the run's state: the held-out rows, the data's
        #: fingerprint, and the path (None on ranks other than 0).
        self.val_idx, self.data, self.checkpoint = val_idx, data, checkpoint
        self.resumed_from = resumed_from
        #: The row of X of each training position (None: every row, in order); see fit's ``rows``.
        self.rows = rows
        self.threads = threads
        self.stop_requested, self.interrupted = False, False
        self.stop_reason: str | None = None
        self.diverged: str | None = None
        self.diverged_step = 0
        #: What on_train_end put back into the parameters ("the best weights (epoch 3)"), if any.
        self.restored: str | None = None
        self.history, self.interrupt = History(), Interrupt()
        self.guard = DivergenceGuard(on_divergence)
        self.callbacks: list[Callback] = [self.history, *callbacks]
        self.closing = [cb for cb in self.callbacks if cb.closes_epoch]
        self.callbacks = [cb for cb in self.callbacks if not cb.closes_epoch]
        # Per step: the closing ones (a step checkpoint) first, so a callback that pauses or kills
        # the process at a step does so after that step's checkpoint is on disk.
        self.batch_callbacks = [cb for cb in self.closing + self.callbacks if uses_batches(cb)]
        self._every = [self.guard, self.interrupt, *self.callbacks, *self.closing]
        for cb in self._every:
            cb.trainer = self
        self._stack = ExitStack()

    def request_stop(self, reason: str) -> None:
        """Stop after the current step (from ``on_batch_end``) or epoch (from ``on_epoch_end``)."""
        if not self.stop_requested:
            self.stop_requested, self.stop_reason = True, reason

    def diverge(self, reason: str, step: int) -> None:
        """Record that training diverged at ``step`` (the loop then stops; see DivergenceGuard)."""
        self.diverged, self.diverged_step = reason, step

    def __enter__(self) -> Trainer:
        self._stack = ExitStack()
        try:
            if self.checkpoint is not None:  # first: a run refused here has touched nothing
                self._stack.enter_context(CheckpointLock(self.checkpoint))
            self._stack.enter_context(blas_threads(self.threads))
            # Overflow and NaN warnings are silenced: the divergence checks turn them into one error.
            self._stack.enter_context(np.errstate(over="ignore", invalid="ignore"))
            self._stack.enter_context(self.interrupt)
        except BaseException:
            self._stack.close()
            raise
        for cb in self.callbacks:
            if isinstance(cb, Progress):
                self._stack.callback(cb.close)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def on_exit(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` when the run's context closes, however the run ends (the last epoch, an
        error, Ctrl-C, divergence): after the final checkpoint, before ``on_train_end``."""
        self._stack.callback(fn)

    @contextmanager
    def base_hyperparameters(self) -> Iterator[None]:
        """Put the hyperparameters that :class:`DropoutSchedule` and :class:`WeightDecaySchedule`
        scale back at their base values for the duration, then the epoch's values again.

        A checkpoint is written inside it: it holds the run's settings (compared on resume with
        those of a fresh model and optimizer), not the epoch's scaled ones.
        """
        with ExitStack() as stack:
            for cb in self._every:
                if isinstance(cb, _ScheduledValues):
                    stack.enter_context(cb.at_base())
            yield

    def begin(self) -> None:
        logs = {"epochs": self.epochs, "batch_size": self.batch_size, "n_samples": self.n_samples}
        for cb in self._every:
            cb.on_train_begin(logs)

    def epoch_begin(self, epoch: int) -> None:
        logs = {"learning_rate": self.optimizer.learning_rate}
        for cb in self._every:
            cb.on_epoch_begin(epoch, logs)

    def batch_end(self, loss: float, batch_size: int, epoch: int) -> None:
        logs = {"loss": loss, "batch_size": batch_size, "epoch": epoch}
        step = self.state.step
        for cb in self.batch_callbacks:
            if cb.on_batch_end(step, logs):
                self.request_stop(f"{type(cb).__name__}.on_batch_end returned True")

    def record(self, epoch: int, seconds: float) -> dict[str, Any]:
        """The epoch's record: mean training loss, validation loss and metric, rate, time."""
        record: dict[str, Any] = {"epoch": epoch, "loss": self.state.loss_sum / self.n_samples}
        if self.validation is not None:
            X_val, Y_val = self.validation
            # X_val is the model's input matrix already (fit encoded it once): a table model's
            # codes must not be read as raw cells again.
            Z_val = (
                X_val.logits(self.model)
                if isinstance(X_val, Rows)
                else self.model.logits_from_matrix(X_val)
            )
            record["val_loss"] = self.loss(Z_val, Y_val)[0]
            record[f"val_{self.loss.metric_name}"] = self.loss.metric(Z_val, Y_val)
        record["learning_rate"] = self.optimizer.learning_rate
        record["seconds"] = seconds
        return record

    def end_epoch(self, epoch: int, record: dict[str, Any]) -> bool:
        """Run the epoch's end (see the module docstring); True when the loop must stop now."""
        self.guard.on_epoch_end(epoch, record)
        if self.diverged:
            return True
        state, value = self.state, record[self.monitor]
        state.records.append(record)
        self.schedule.observe(value)
        if value < state.best_value - self.min_delta:
            state.best_value, state.bad_epochs, state.best_epoch = value, 0, epoch
        else:
            state.bad_epochs += 1
        for cb in self.callbacks:
            if cb.on_epoch_end(epoch, record):
                self.request_stop(f"{type(cb).__name__}.on_epoch_end returned True")
        # One small collective per epoch: the ranks' requests since the last step's reduction.
        stop, self.interrupted = self.comm.any_of(self.stop_requested, self.interrupt.requested)
        state.stopped = bool(stop)
        state.end_epoch()
        for cb in self.closing:
            cb.on_epoch_end(epoch, record)
        return self.interrupted

    def close_run(self) -> None:
        """The closing callbacks' ``on_train_end`` (the final checkpoint), with Ctrl-C still caught."""
        for cb in self.closing:
            cb.on_train_end(self._end_logs())

    def finish(self) -> History:
        """Fill in the history and run the other ``on_train_end`` hooks, built-ins first."""
        history, state = self.history, self.state
        history.best_epoch, history.stopped_early = state.best_epoch, state.stopped_early
        history.interrupted = self.interrupted and not self.diverged
        if history.interrupted:
            history.signal = self.interrupt.signal
        history.resumed_from = self.resumed_from
        logs = self._end_logs()
        for cb in sorted((cb for cb in self._every if not cb.closes_epoch), key=_end_order):
            cb.on_train_end(logs)
        return history

    def _end_logs(self) -> dict[str, Any]:
        return {"epochs_run": len(self.state.records), "best_epoch": self.state.best_epoch}


def _end_order(callback: Callback) -> int:
    return callback._end_order


# --- the built-in callbacks -------------------------------------------------------------------


class History(Callback):
    """Per-epoch records of a :func:`fit` call (also a callback that keeps them).

    Each record is a dict with ``epoch`` (1-based), ``loss``, ``seconds``, ``learning_rate`` and, with
    validation data, ``val_loss`` and ``val_<metric>`` (``val_accuracy`` or ``val_r2``).
    ``history["loss"]`` gives one key across all epochs. As a callback it starts from the records a
    resumed run restored and appends each epoch's.
    """

    _end_order = 60

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self.records: list[dict[str, Any]] = [dict(r) for r in records]
        self.best_epoch: int | None = None
        self.stopped_early = False
        #: Ctrl-C or SIGTERM stopped training (after a whole step; the best weights were kept).
        self.interrupted = False
        #: The signal that did (``"SIGINT"``, ``"SIGTERM"``), or None (another rank's, a callback's).
        self.signal: str | None = None
        #: Training diverged and ``on_divergence="warn"`` stopped it quietly.
        self.diverged = False
        #: ``(epoch, batch)`` where a resumed run picked up, or None.
        self.resumed_from: tuple[int, int] | None = None

    def on_train_begin(self, logs):
        self.records = [dict(r) for r in self.trainer.state.records]

    def on_epoch_end(self, epoch, logs):
        self.records.append(logs)  # the same dict as the checkpoint's, with any keys added later

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

    def columns(self) -> list[str]:
        """Every key recorded in any epoch, in the order they first appear (``epoch`` first)."""
        seen: dict[str, None] = {}
        for record in self.records:
            seen.update(dict.fromkeys(record))
        return list(seen)

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """Every epoch's record as CSV: a header of :meth:`columns`, then a row per epoch.

        Numbers are written with ``repr`` so they read back to the same float; a key an epoch lacks
        is an empty cell, and a non-finite loss is ``nan`` or ``inf`` (which ``float`` and pandas read).

        Parameters
        ----------
        path : str or path-like, optional
            Write the text here, atomically (:func:`matnet.io.atomic_write`).

        Returns
        -------
        str
            The CSV text.
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        columns = self.columns()
        writer.writerow(columns)
        for record in self.records:
            writer.writerow([_cell(record.get(key)) for key in columns])
        text = buffer.getvalue()
        if path is not None:
            atomic_write(path, text.encode("utf-8"))
        return text

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """Every epoch's record and how the run ended, as one JSON object.

        ``{"epochs": [record, ...], "best_epoch", "stopped_early", "interrupted", "diverged",
        "resumed_from"}``; a non-finite number (a diverged loss) is ``null``, since JSON has none.

        Parameters
        ----------
        path : str or path-like, optional
            Write the text here, atomically (:func:`matnet.io.atomic_write`).

        Returns
        -------
        str
            The JSON text.
        """
        document = {
            "epochs": [{k: _json_value(v) for k, v in r.items()} for r in self.records],
            "best_epoch": self.best_epoch,
            "stopped_early": bool(self.stopped_early),
            "interrupted": bool(self.interrupted),
            "diverged": bool(self.diverged),
            "resumed_from": list(self.resumed_from) if self.resumed_from else None,
        }
        text = json.dumps(document, indent=1, allow_nan=False) + "\n"
        if path is not None:
            atomic_write(path, text.encode("utf-8"))
        return text

    def to_pandas(self) -> Any:
        """Every epoch's record as a ``pandas.DataFrame``: a row per epoch, a column per key of
        :meth:`columns` (missing values NaN), indexed by ``epoch``.

        Raises
        ------
        matnet.errors.OptionalDependencyError
            When pandas is not installed (``pip install 'matnet[pandas]'``).
        """
        pd = import_optional("pandas", "pandas", "History.to_pandas")
        columns = self.columns()
        frame = pd.DataFrame.from_records(
            [{key: r.get(key) for key in columns} for r in self.records], columns=columns
        )
        return frame.set_index("epoch") if "epoch" in columns else frame

    def __repr__(self) -> str:
        last = self.records[-1] if self.records else {}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float))
        return f"History({len(self)} epochs; last: {shown})"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class EarlyStopping(Callback):
    """Stop when the monitored loss (``trainer.monitor``) has not improved by the run's ``min_delta``
    for more than ``patience`` epochs; with ``restore_best``, keep the best epoch's parameters
    (``trainer.state.best_params``, checkpointed) and put them back at the end."""

    _end_order = 10

    def __init__(self, patience: int = 10, restore_best: bool = True) -> None:
        if (
            isinstance(patience, bool)
            or not isinstance(patience, (int, np.integer))
            or patience < 0
        ):
            raise ValueError(f"patience={patience!r} must be a non-negative integer")
        self.patience, self.restore_best = int(patience), bool(restore_best)

    def on_epoch_end(self, epoch, logs):
        state, params = self.trainer.state, self.trainer.model.flat_params
        if self.restore_best and state.best_epoch == epoch:
            if state.best_params is None:
                state.best_params = params.copy()
            else:
                np.copyto(state.best_params, params)
        if state.bad_epochs > self.patience:
            state.stopped_early = True
            return True
        return None

    def on_train_end(self, logs):
        trainer = self.trainer
        best = trainer.state.best_params
        if self.restore_best and best is not None and trainer.restored is None:
            trainer.model.flat_params[...] = best
            trainer.restored = f"the best weights (epoch {trainer.state.best_epoch})"


class DivergenceGuard(Callback):
    """Stop when the parameters or the monitored loss stop being finite (the loop checks each batch's
    loss itself), restore the last good weights, then raise or warn.

    The last good weights are the best epoch's when :class:`EarlyStopping` kept them, else those at
    the end of the last finite epoch. ``on_divergence="raise"`` raises
    :class:`~matnet.errors.TrainingDivergedError` (with ``epoch``, ``step`` and ``history``);
    ``"warn"`` warns and sets ``history.diverged``.
    """

    _end_order = 20

    def __init__(self, on_divergence: str = "raise") -> None:
        if on_divergence not in ("raise", "warn"):
            raise ValueError(f"on_divergence={on_divergence!r} must be 'raise' or 'warn'")
        self.on_divergence = on_divergence

    def on_train_begin(self, logs):
        state = self.trainer.state
        self.last_good = self.trainer.model.flat_params.copy()
        self.last_good_at = (
            f"the end of epoch {state.epoch - 1}" if state.epoch > 1 else "the start"
        )
        if state.batch:
            self.last_good_at = f"the checkpoint (epoch {state.epoch}, batch {state.batch})"

    def on_epoch_end(self, epoch, logs):
        trainer = self.trainer
        params, monitor = trainer.model.flat_params, trainer.monitor
        if not np.all(np.isfinite(params)):
            trainer.diverge("the parameters are no longer all finite", trainer.state.step)
        elif not math.isfinite(logs[monitor]):
            trainer.diverge(f"the epoch's {monitor} is {logs[monitor]}", trainer.state.step)
        else:
            np.copyto(self.last_good, params)
            self.last_good_at = f"the end of epoch {epoch}"

    def on_train_end(self, logs):
        trainer = self.trainer
        if not trainer.diverged:
            return
        if trainer.restored is None:
            trainer.model.flat_params[...] = self.last_good
            trainer.restored = f"the weights at {self.last_good_at}"
        lr = trainer.optimizer.learning_rate
        message = (
            f"training diverged at epoch {trainer.state.epoch}, step {trainer.diverged_step}: "
            f"{trainer.diverged}. Restored {trainer.restored}. Likely fix: a smaller learning rate "
            f"(it was {lr:.3g}; try {lr / 10:.3g}), clip_norm=1.0, or standardized features."
        )
        if self.on_divergence == "raise":
            error = TrainingDivergedError(message)
            error.epoch, error.step = trainer.state.epoch, trainer.diverged_step
            error.history = trainer.history
            raise error
        # The caller of fit: fit -> Trainer.finish -> here.
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        trainer.history.diverged = True


class Checkpointing(Callback):
    """Write the whole training state to ``path`` (atomically; see :mod:`matnet.checkpoint`) at every
    epoch end, or every ``every`` optimizer steps, and once more at the end (after Ctrl-C, say) when
    the state moved on since the last write. A diverged state is never written: the file keeps the
    last good one. ``fit(checkpoint=...)`` adds one on rank 0 only."""

    closes_epoch = True
    _end_order = 0

    def __init__(self, path: Any, every: int | str = "epoch") -> None:
        self.path = path
        self.every = None if every == "epoch" else int(every)
        if self.every is not None and self.every < 1:
            raise ValueError(f"every={every!r} must be a positive number of steps or 'epoch'")

    def _position(self) -> tuple[int, int, int]:
        state = self.trainer.state
        return state.epoch, state.batch, state.step

    def save(self) -> None:
        """Write the current state, unless the parameters are no longer finite."""
        trainer = self.trainer
        if not np.all(np.isfinite(trainer.model.flat_params)):
            return  # a step made them non-finite: the guard reports it; the file keeps the last good
        with trainer.base_hyperparameters():
            write_checkpoint(
                self.path,
                trainer.model,
                trainer.optimizer,
                trainer.schedule,
                trainer.rng,
                trainer.state,
                val_idx=trainer.val_idx,
                data=trainer.data,
            )
        self._saved = self._position()

    def on_train_begin(self, logs):
        remove_stale_temporaries(self.path)
        self._saved = self._position()  # a fresh start, or the state just read from this file

    def on_batch_end(self, step, logs):
        if self.every is not None and step % self.every == 0:
            self.save()

    def on_epoch_end(self, epoch, logs):
        if self.every is None:
            self.save()

    def on_train_end(self, logs):
        if not self.trainer.diverged and self._position() != self._saved:
            self.save()


class Interrupt(Callback):
    """Ctrl-C (SIGINT) or SIGTERM asks training to stop after the current step instead of ending the
    process; a second signal raises KeyboardInterrupt at once. SIGTERM is what ``kill``, a batch
    scheduler and ``mpiexec`` (on its own Ctrl-C) send, so it gets the same orderly stop: every rank
    agrees, the checkpoint (and, in ``matnet train``, the model) is written. The handlers are
    installed only in the main thread, for the run, and the previous ones are put back.
    ``requested`` is the flag the loop reads (a callback may set it to act as a Ctrl-C) and
    ``signal`` the name of the signal that set it. At the end rank 0 says where it stopped."""

    _end_order = 30
    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.requested = False
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal = signal.Signals(signum).name

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name, None)
                if number is None:
                    continue
                previous = signal.getsignal(number)
                if previous is not None:  # None: set outside Python, so it could not be put back
                    self._previous[number] = previous
                    signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}

    def on_train_end(self, logs):
        trainer = self.trainer
        if not (trainer.history.interrupted and trainer.comm.is_root):
            return
        kept = trainer.restored or "the current weights"
        path = trainer.checkpoint
        saved = f"; checkpoint written to {path}" if path is not None else ""
        by = f" by {self.signal}" if self.signal not in (None, "SIGINT") else ""
        if not self.requested:
            by = " on another rank"
        print(
            f"matnet: interrupted{by} at epoch {trainer.state.epoch}, step {trainer.state.step}; "
            f"kept {kept}{saved}",
            file=sys.stderr,
            flush=True,
        )


class Progress(Callback):
    """One progress display for the package: a tqdm bar over epochs (``verbose=1``, when tqdm is
    installed; otherwise lines), or one printed line per epoch (``verbose=2``), on standard error.

    :meth:`update` takes any record, so front ends with their own loop may use it directly.
    """

    _end_order = 40

    def __init__(self, verbose: int = 1) -> None:
        self.verbose, self.bar = int(verbose), None

    def on_train_begin(self, logs):
        state = self.trainer.state
        self.open(self.trainer.epochs, min(state.epoch - 1, self.trainer.epochs))

    def open(self, total: int, initial: int = 0) -> None:
        """Start the bar (``verbose=1`` with tqdm installed) over ``total`` epochs."""
        self.close()
        if self.verbose == 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(
                total=total, initial=initial, unit="epoch", file=sys.stderr, dynamic_ncols=True
            )

    def update(self, record: dict[str, Any]) -> None:
        """Show one epoch's record (its float values, but the epoch, rate and seconds)."""
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

    def on_epoch_end(self, epoch, logs):
        self.update(logs)

    def on_train_end(self, logs):
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --- hyperparameter schedules ------------------------------------------------------------------


class _ScheduledValues(Callback, ABC):
    """Scale some hyperparameters (attributes of the model's layers or of the optimizer) by a
    schedule of the epoch: at every epoch's begin ``value = schedule.learning_rate(epoch - 1,
    base)``, ``base`` being the value at train begin.

    The value depends on the epoch alone, so a resumed run sets what the uninterrupted one had
    (bit-identical results); checkpoints hold the base values (:meth:`Trainer.base_hyperparameters`)
    and the base values are put back when the run ends, however it ends.
    """

    #: What the values are, for messages.
    what = "value"
    #: The values must stay below this (a dropout rate below 1).
    upper = math.inf

    def __init__(self, schedule: str | Schedule) -> None:
        self.spec = schedule
        # Built now to refuse an unknown name or a loss-driven schedule before any work; built
        # again at train begin for the run's epochs.
        self.schedule: Schedule = epoch_schedule(schedule, 1)
        self.base: list[tuple[Any, str, float]] = []

    @abstractmethod
    def targets(self) -> list[tuple[Any, str]]:
        """The ``(object, attribute)`` pairs to scale; raise ValueError when there are none."""

    def on_train_begin(self, logs):
        trainer = self.trainer
        self.schedule = epoch_schedule(self.spec, trainer.epochs)
        self.base = [(obj, name, getattr(obj, name)) for obj, name in self.targets()]
        trainer.on_exit(self.restore)
        # A run resumed in the middle of an epoch gets no on_epoch_begin for it: set it here.
        self.apply(trainer.state.epoch)

    def on_epoch_begin(self, epoch, logs):
        self.apply(epoch)

    def apply(self, epoch: int) -> None:
        """Set every value for ``epoch`` (1-based)."""
        for obj, name, base in self.base:
            value = self.schedule.learning_rate(epoch - 1, base)
            if not 0 <= value < self.upper:
                raise ValueError(
                    f"{type(self).__name__}: {type(self.schedule).__name__} gives {name}={value!r} "
                    f"at epoch {epoch} (base {base!r}); a {self.what} schedule must keep it in "
                    f"[0, {self.upper:g}): use a factor in [0, 1] such as 'flatcos'"
                )
            setattr(obj, name, value)

    def restore(self) -> None:
        """Put the base values back."""
        for obj, name, base in self.base:
            setattr(obj, name, base)

    @contextmanager
    def at_base(self) -> Iterator[None]:
        """The base values for the duration, then the current ones again (exactly)."""
        current = [getattr(obj, name) for obj, name, _ in self.base]
        self.restore()
        try:
            yield
        finally:
            for (obj, name, _), value in zip(self.base, current, strict=True):
                setattr(obj, name, value)


class DropoutSchedule(_ScheduledValues):
    """Scale every :class:`~matnet.layers.Dropout` layer's rate by a schedule of the epoch:
    ``rate = base_rate · factor(epoch)``, ``base_rate`` the layer's rate when training begins.

    RealMLP-TD trains with ``p_drop=0.15`` under ``flat_cos``: ``DropoutSchedule("flatcos")``
    (or ``DropoutSchedule(FlatCos(epochs))``). The rates are set at each epoch's begin (also when
    a run resumes mid-epoch) and the base rates put back when the run ends, so the trained
    model's config, and a saved model, show the rates it was built with; checkpoints hold them
    too. Inside the run (a callback's ``matnet.save``, say) a layer shows the epoch's rate.

    Parameters
    ----------
    schedule : str or Schedule
        A schedule whose value depends on the epoch only, used as a factor:
        ``schedule.learning_rate(epoch - 1, base_rate)``. A name (``"flatcos"``, ``"cosine"``,
        ``"coslog"``, ...) is built for the run's epochs. ``"plateau"`` is refused.

    Raises
    ------
    ValueError
        At construction, for an unknown or loss-driven schedule; at train begin, when the model has
        no Dropout layer with a rate above 0; at an epoch's begin, when the schedule gives a rate
        outside [0, 1).
    """

    what, upper = "dropout", 1.0

    def targets(self):
        layers = [layer for layer in self.trainer.model.layers if isinstance(layer, Dropout)]
        found = [(layer, "rate") for layer in layers if layer.rate > 0]
        if not found:
            raise ValueError(
                "DropoutSchedule: the model has no Dropout layer with a rate above 0 to schedule; "
                "add one (matnet.MLP(..., dropout=0.15) or a Dropout(0.15) layer) or drop the "
                "callback"
            )
        return found


class WeightDecaySchedule(_ScheduledValues):
    """Scale the optimizer's weight decay by a schedule of the epoch: ``value = base ·
    factor(epoch)``, ``base`` its value when training begins.

    The decay scaled is AdamW's decoupled ``weight_decay`` and the L2 penalty ``l2`` (any
    optimizer; ``fit(l2=...)``), each when it is above 0. Both act on the weights only
    (``model.n_decay``), never on biases. RealMLP-TD trains with ``wd=2e-2`` under ``flat_cos``:
    ``fit(model, X, y, optimizer=AdamW(weight_decay=2e-2), callbacks=[WeightDecaySchedule(
    "flatcos")])``. Set at each epoch's begin, put back when the run ends; checkpoints hold the
    base values.

    Parameters
    ----------
    schedule : str or Schedule
        As for :class:`DropoutSchedule`.

    Raises
    ------
    ValueError
        At construction, for an unknown or loss-driven schedule; at train begin, when the optimizer
        has no weight decay above 0; at an epoch's begin, when the schedule gives a negative value.
    """

    what = "weight-decay"

    def targets(self):
        optimizer = self.trainer.optimizer
        names = [name for name in ("weight_decay", "l2") if getattr(optimizer, name, 0)]
        if not names:
            decay = ", weight_decay=0" if hasattr(optimizer, "weight_decay") else ""
            raise ValueError(
                f"WeightDecaySchedule: optimizer {optimizer.name!r} has no weight decay to "
                f"schedule (l2=0{decay}); use optimizer='adamw' (weight_decay=2e-2, say) or "
                "fit(l2=...)"
            )
        return [(optimizer, name) for name in names]
