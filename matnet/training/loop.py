"""Mini-batch training: :func:`fit`.

One step is the article end to end: gather a batch into a reused buffer, ``forward`` through the layers,
``(value, dZ) = loss(Z, Y)``, ``backward(dZ)`` into the flat gradient vector, one reduction over the
ranks (nothing at all in one process, through :class:`~matnet.training.comm.LocalComm`), one optimizer
step on the flat parameter vector. Everything else is a callback (:mod:`matnet.training.callbacks`).
Every input is validated before the first step, so bad data never changes a parameter.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import warnings
import zlib
from pathlib import Path
from typing import Any, cast

import numpy as np

from matnet import _accel
from matnet.backend import import_optional
from matnet.checkpoint import (
    Checkpoint,
    TrainState,
    data_fingerprint,
    read_checkpoint,
    restore_generator,
)
from matnet.errors import ModelFileError
from matnet.layers.base import BatchShare
from matnet.losses import Loss, SoftmaxCrossEntropy, get_loss
from matnet.model import Sequential
from matnet.optim import Optimizer, get_optimizer
from matnet.schedules import Schedule, get_schedule
from matnet.task import OVERRIDABLE, FitConfig, with_fit_signature
from matnet.training.callbacks import (
    Callback,
    Checkpointing,
    EarlyStopping,
    History,
    Progress,
    Trainer,
    as_callbacks,
)
from matnet.training.comm import LocalComm
from matnet.training.rows import Rows
from matnet.validation import (
    check_number,
    check_positive_int,
    check_rows,
    check_sample_weight,
    split_validation,
)

__all__ = ["fit"]


@with_fit_signature
def fit(
    model: Sequential, X: Any, y: Any, config: FitConfig | None = None, **options: Any
) -> History:
    # Every option, checked before the first parameter changes (FitConfig, then _prepare).
    c = FitConfig.of(config, options)
    shuffle, clip_norm = c.shuffle, c.clip_norm
    t, X, Y, W, drop_rng = _prepare(model, X, y, c)
    params, grads = t.model.flat_params, t.model.flat_grads
    opt, loss_fn, sched, state, rng = t.optimizer, t.loss, t.schedule, t.state, t.rng
    n, batch_size, epochs = t.n_samples, t.batch_size, t.epochs

    # Reused batch buffers: np.take(..., out=, mode="clip") gathers rows without allocating.
    m_max = min(batch_size, n)
    X_buf = np.empty((m_max, X.shape[1]), dtype=X.dtype)
    Y_buf = np.empty((m_max, *Y.shape[1:]), dtype=Y.dtype)
    W_buf = None if W is None else np.empty(m_max, dtype=W.dtype)
    # Without shuffling, rows in order (an index array of n rows is allocated only then).
    order, n_batches = None if shuffle else np.arange(n), -(-n // batch_size)
    # Training on some rows of X (a validation split, or rows=): the batch's positions map to rows
    # of X here, so X itself is never copied.
    row_of = t.rows
    forward, step, take_rows = t.model.forward, opt.step, _accel.take_rows
    shard, reduce, stops = t.comm.shard, t.comm.allreduce_mean, t.comm.stops
    batch_callbacks, interrupt, lock = t.batch_callbacks, t.interrupt, t.model._lock
    share = drop_rng if isinstance(drop_rng, BatchShare) else None
    with t:
        t.begin()
        while state.epoch <= epochs and not state.stopped:
            epoch, started = state.epoch, time.perf_counter()
            sched.apply(opt, epoch - 1, state.base_lr)
            if state.batch == 0:
                t.epoch_begin(epoch)
                state.perm = rng.permutation(n) if shuffle else order
            perm = cast(np.ndarray, state.perm)  # drawn above, or restored from the checkpoint
            for start in range(state.batch * batch_size, n, batch_size):
                idx = perm[start : start + batch_size]
                m_global, idx = idx.shape[0], shard(idx)  # this rank's share of the global batch
                if share is not None:  # random layers draw the global batch's numbers
                    share.for_batch(m_global)
                m = idx.shape[0]
                xb = take_rows(X, idx if row_of is None else row_of[idx], X_buf)
                yb = np.take(Y, idx, axis=0, out=Y_buf[:m], mode="clip")
                wb = None if W_buf is None else np.take(W, idx, out=W_buf[:m], mode="clip")
                # The model's lock, per step: a predict() from another thread waits for the step
                # to end instead of computing in the layer buffers this step is using.
                with lock:
                    Z, backward = forward(xb, training=True, rng=drop_rng)
                    value, dZ = loss_fn(Z, yb, wb)
                    backward(dZ)  # fills grads; the parameters change only at step() below
                    # One Allreduce: every rank checks the same loss; it also carries each rank's
                    # requests to stop (from earlier steps), so all ranks stop after the same step.
                    votes = (t.stop_requested, interrupt.requested)
                    value, votes = reduce(grads, value, m_global, votes)
                    if not math.isfinite(value):
                        t.diverge(
                            f"the loss of batch {state.batch + 1} of {n_batches} is {value}",
                            state.step + 1,
                        )
                        break
                    if clip_norm is not None:
                        norm = math.sqrt(float(np.dot(grads, grads)))
                        if norm > clip_norm:
                            grads *= clip_norm / norm
                    step(params, grads)
                state.loss_sum += value * m_global
                state.batch += 1
                state.step += 1
                if batch_callbacks:
                    t.batch_end(value, m_global, epoch)
                if stops(votes, t):
                    break
            if t.diverged or t.interrupted:
                break
            if t.end_epoch(epoch, t.record(epoch, time.perf_counter() - started)):
                break
        t.close_run()
    return t.finish()


# The parameters' documentation is long; it sits apart so that fit's code reads on one screen.
_FIT_DOC = """Train ``model`` on ``(X, y)`` with mini-batches reshuffled every epoch.

Every option below is a field of :class:`~matnet.task.FitConfig`: give them as keywords, or a
``config`` (a FitConfig, reused across runs) whose fields the keywords replace. Each is checked
before any work starts.

Parameters
----------
model : Sequential
X : array-like or DataFrame of shape (n_samples, n_features)
    A DataFrame's column names become ``model.feature_names`` (when the model has none), and a
    model that has names takes a DataFrame's columns by name.
y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    Class labels, class indices or one-hot rows (cross-entropy), 0/1 labels (binary cross-entropy),
    or values. Non-numeric labels become ``model.classes`` (when the model has none; ``predict``
    then returns them); values are scaled by ``model.target_scaling`` when the model has one.
config : FitConfig, optional
    The options as one frozen object; keywords replace its fields.
loss : str or Loss, optional
    ``"cross_entropy"``, ``"binary_cross_entropy"`` or ``"mse"``; defaults to the model's loss.
    The model keeps it for ``predict``/``predict_proba``.
optimizer : str, dict or Optimizer
    ``"sgd"``, ``"adam"``, ``"adamw"``, or a configured instance (for momentum, betas, ...). An
    instance is used as given (its state is kept between calls), but for ``learning_rate`` and a
    non-zero ``l2``, which are set on it.
learning_rate : float, optional
    Initial learning rate (default: the optimizer's own).
l2 : float
    L2 penalty on the weights (``l2 * W`` added to their gradient). For an optimizer instance, a
    non-zero value replaces the instance's ``l2``; 0 (the default) leaves the instance's.
epochs : int
    Passes over the training data (in total, counting those done before a resume).
batch_size : int
    Rows per step; the last batch of an epoch may be smaller. Larger than the data means one batch.
shuffle : bool
    Reshuffle the rows every epoch (from ``seed``); False takes them in order.
seed : int or numpy.random.Generator
    Drives shuffling, dropout and the validation split (one generator for all three). The same
    seed, data and BLAS thread count give bit-identical weights.
validation_data : (X_val, y_val), optional
validation_fraction : float in [0, 1)
    Hold out this fraction of ``(X, y)`` (stratified for class indices) when no validation_data.
early_stopping : bool
    Stop when the monitored loss (validation loss if any, else training loss) has not improved by
    ``min_delta`` for ``patience`` epochs, and restore the weights of the best epoch.
patience : int
min_delta : float
    The improvement that counts for ``history.best_epoch`` and early stopping.
schedule : str or Schedule, optional
    Learning-rate schedule, applied at the start of each epoch. The default (constant) leaves the
    rate alone, so a callback may change ``trainer.optimizer.learning_rate`` between epochs.
clip_norm : float, optional
    Rescale the whole gradient vector when its L2 norm exceeds this value.
sample_weight : array-like of shape (n_samples,), optional
callbacks : Callback, callable or list of them
    See :mod:`matnet.training.callbacks` for the protocol.
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
    ``checkpoint_every``, at the end, and on Ctrl-C; never a diverged state.
checkpoint_every : int or "epoch"
    A number of optimizer steps, or ``"epoch"`` for every epoch end.
resume : bool or path
    ``True``: continue from ``checkpoint`` if that file exists (else start fresh); a path:
    continue from that checkpoint. The result is bit-identical to the run never having stopped.
comm : matnet.distributed.Communicator, optional
    Train data-parallel across the ranks of ``comm`` (see :mod:`matnet.distributed`): each rank
    computes its share of every global batch of ``batch_size`` rows and one Allreduce per step
    sums the gradients and the loss. Only rank 0 writes the checkpoint. Default: one process.
    Every rank must start from the same point: ranks resuming from different checkpoints raise a
    ValueError on every rank before the first step.
rows : int array of shape (n_rows,), optional
    Train on these rows of ``X`` (and of ``y`` and ``sample_weight``) only, each at most once;
    ``validation_fraction`` splits them. The rows are gathered batch by batch: ``X`` (a memmap of
    several GiB, say) is never copied, nor is a ``validation_fraction`` split's.
resume_overrides : list of str
    Settings a resumed run may change from the checkpoint's: any of ``"shuffle"``,
    ``"clip_norm"``, ``"schedule"``, ``"early_stopping"``, ``"patience"``, ``"min_delta"``,
    ``"sample_weight"``, ``"loss"``. A change is announced with a UserWarning. Every other change
    of a setting that alters the result (these without being named, the validation split, the
    data, the model, the optimizer and its settings, a mid-epoch batch size) is refused.
threads : int, optional
    The BLAS (and OpenMP) threads to use while training, through threadpoolctl
    (``pip install 'matnet[threads]'``). Default: as they are, but 1 inside a joblib worker
    (``GridSearchCV(n_jobs=2)``, say), where every worker's BLAS using every core makes training
    many times slower (this default needs threadpoolctl, which scikit-learn installs).

Returns
-------
History
    ``history.interrupted`` is True when Ctrl-C or SIGTERM stopped training (after the current step; the
    best weights are kept and the checkpoint written), ``history.diverged`` when training diverged
    with ``on_divergence="warn"``.

Raises
------
TrainingDivergedError
    When the loss or the parameters stop being finite (unless ``on_divergence="warn"``).
ModelFileError
    When the checkpoint to resume from is corrupted or not a checkpoint.
CheckpointInUseError
    When another live process trains into ``checkpoint`` (it holds ``<checkpoint>.lock``).
OSError
    When a checkpoint cannot be written (a full disk, say); the message names the file.

Notes
-----
Before the first step ``fit`` fits the model's non-trainable state (``model.adapt``) on the
training rows (after the validation split); a resumed run takes that state from the checkpoint.
"""
fit.__doc__ = _FIT_DOC


# --- setting up a run -----------------------------------------------------------------------


def _prepare(
    model: Any, X: Any, y: Any, c: FitConfig
) -> tuple[Trainer, Any, Any, Any, np.random.Generator]:
    """Check fit's arguments, read the checkpoint to resume from, split the data, fit the model's
    state, restore or start the run, and agree with the other ranks.

    Returns ``(trainer, X, Y, W, dropout_generator)``: the training rows, targets and sample weights
    (or None) that the loop gathers batches from.
    """
    loss_fn, opt = _check_options(model, c.loss, c.optimizer, c.learning_rate, c.l2)
    epochs, batch_size, early_stopping, patience = (
        c.epochs,
        c.batch_size,
        c.early_stopping,
        c.patience,
    )
    validation_data, validation_fraction, min_delta = (
        c.validation_data,
        c.validation_fraction,
        c.min_delta,
    )
    sample_weight, verbose, on_divergence = c.sample_weight, c.verbose, c.on_divergence
    checkpoint, checkpoint_every, rows = c.checkpoint, c.checkpoint_every, c.rows
    threads = _check_threads(c.threads)
    resume_from = _check_checkpoint_options(checkpoint, c.resume)
    overrides = c.resume_overrides
    comm = LocalComm() if c.comm is None else c.comm
    if not comm.is_root:
        checkpoint = None  # only rank 0 writes files (every rank reads the one it resumes from)
    # Named by string, a cosine schedule anneals over this run's epochs.
    sched = (
        get_schedule("cosine", total_epochs=epochs)
        if c.schedule == "cosine"
        else get_schedule(c.schedule)
    )
    extra = as_callbacks(c.callbacks)
    rng = comm.shared_generator(c.seed)
    ckpt = read_checkpoint(resume_from) if resume_from is not None else None
    # What changes the result besides the model, optimizer and data: saved in the checkpoint and
    # compared on resume (with the sample weights', validation data's and rows' CRC-32, added below).
    settings: dict[str, Any] = {
        "loss": loss_fn.config(),
        "shuffle": bool(c.shuffle),
        "clip_norm": None if c.clip_norm is None else float(c.clip_norm),
        "schedule": _schedule_settings(sched),
        "early_stopping": bool(early_stopping),
        "patience": int(patience) if early_stopping else None,
        "min_delta": float(min_delta),
        "validation_fraction": float(validation_fraction) if validation_data is None else 0.0,
    }
    X, Y, W, validation, val_idx, data, row_of = _training_data(
        model, loss_fn, opt, X, y, sample_weight, validation_data, validation_fraction,
        batch_size, rng, ckpt, resume_from, checkpoint is not None or ckpt is not None,
        rows, settings, overrides,
    )  # fmt: skip
    n = Y.shape[0]
    model.loss = loss_fn
    params = model.flat_params
    opt.prepare(params, model.n_decay)  # keeps the state of an optimizer reused on this model
    if ckpt is None:
        # Non-trainable state from the training rows (a resumed run has the file's); they are
        # gathered only for a layer that needs them.
        if any(layer.needs_adapt() for layer in model.layers):
            model.adapt(X if row_of is None else X[row_of])
        state = TrainState(base_lr=opt.learning_rate)
    else:
        _check_permutation(ckpt, resume_from, n, batch_size)
        rng, state = _restore(ckpt, resume_from, model, opt, sched, rng), ckpt.state
    # Rank 0's parameters, state and optimizer state everywhere; the stream random layers draw.
    drop_rng = comm.start(
        params, opt, rng, n, state=model.flat_state, position=_position(state, ckpt, resume_from)
    )
    builtin: list[Callback] = [Progress(verbose)] if verbose else []
    builtin += [EarlyStopping(patience)] if early_stopping else []
    extra += [Checkpointing(checkpoint, checkpoint_every)] if checkpoint is not None else []
    t = Trainer(
        model, opt, loss_fn, sched, comm, rng=rng, state=state, epochs=epochs,
        batch_size=batch_size, n=n, validation=validation, min_delta=min_delta, val_idx=val_idx,
        data=data, checkpoint=checkpoint, on_divergence=on_divergence,
        resumed_from=(state.epoch, state.batch) if ckpt is not None else None,
        callbacks=builtin + extra, rows=row_of, threads=threads,
    )  # fmt: skip

    return t, X, Y, W, drop_rng


# --- options --------------------------------------------------------------------------------


def _check_options(
    model: Any, loss: Any, optimizer: Any, learning_rate: Any, l2: Any
) -> tuple[Loss, Optimizer]:
    """Check the options that need the model (FitConfig checked the others); return the loss and
    the optimizer."""
    if not isinstance(model, Sequential):
        raise TypeError(f"fit() needs a matnet Sequential model, got {type(model).__name__}")
    loss_fn = get_loss(loss) if loss is not None else model.loss
    if loss_fn is None:
        raise ValueError(
            "no loss given: pass loss='cross_entropy', 'binary_cross_entropy' or 'mse'"
        )
    if isinstance(optimizer, Optimizer):
        # Checked before either is set, so a bad value leaves the instance as it was.
        rate = None if learning_rate is None else _positive_rate(learning_rate)
        penalty = check_number("l2", l2, 0, math.inf, low_open=False)
        if rate is not None:
            optimizer.learning_rate = rate
        if penalty:  # like learning_rate: a value given to fit applies to the instance
            optimizer.l2 = penalty
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
    return loss_fn, opt


def _positive_rate(learning_rate: Any) -> float:
    return check_number("learning_rate", learning_rate, 0, math.inf, low_open=True)


def _check_threads(threads: Any) -> int | None:
    """``threads=``: None or a positive int; a number needs threadpoolctl, checked now."""
    if threads is None:
        return None
    threads = check_positive_int("threads", threads)
    import_optional("threadpoolctl", "threads", "threads=")
    return threads


def _schedule_settings(sched: Schedule) -> dict[str, Any]:
    """A schedule's name and settings (its public numbers, but the state it checkpoints)."""
    state = sched.state_dict()
    return {
        "name": sched.name,
        **{
            key: value
            for key, value in sorted(vars(sched).items())
            if not key.startswith("_")
            and key not in state
            and isinstance(value, (bool, int, float, str, type(None)))
        },
    }


def _check_checkpoint_options(checkpoint: Any, resume: Any) -> Any:
    """Validate the checkpoint options; return the path to resume from (or None)."""
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
        _check_writable_folder(checkpoint, folder)
    if resume is True:
        if checkpoint is None:
            raise ValueError("resume=True needs checkpoint=PATH (or give resume=PATH)")
        return checkpoint if Path(checkpoint).exists() else None  # first run: start fresh
    if resume is False or resume is None:
        return None
    if not isinstance(resume, (str, os.PathLike)):
        raise TypeError(f"resume must be True, False or a checkpoint path, got {resume!r}")
    return resume


def _check_writable_folder(checkpoint: Any, folder: Path) -> None:
    """Create and delete a file in the checkpoint's folder now, so a read-only folder (or file
    system) is refused before the first epoch rather than at the first write. A real file, because
    ``os.access`` answers yes to root on a read-only mount's folders and for folders root may not
    write (``/proc``)."""
    name = Path(checkpoint).name
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise ValueError(
            f"checkpoint={str(checkpoint)!r}: cannot write in folder {str(folder)!r} "
            f"({exc.strerror or exc}); give a checkpoint path in a writable folder"
        ) from None
    os.close(fd)
    os.unlink(probe)


# --- data -----------------------------------------------------------------------------------


def _training_data(
    model: Sequential,
    loss_fn: Loss,
    opt: Optimizer,
    X: Any,
    y: Any,
    sample_weight: Any,
    validation_data: Any,
    validation_fraction: float,
    batch_size: int,
    rng: np.random.Generator,
    ckpt: Checkpoint | None,
    source: Any,
    fingerprint: bool,
    rows: Any,
    settings: dict[str, Any],
    overrides: frozenset[str],
) -> tuple[Any, ...]:
    """Check the data (and a checkpoint against it) and split off the validation rows by index.

    Returns ``(X, Y, W, validation, val_idx, data, row_of)``: X as given (never copied), the training
    rows' targets and sample weights, ``(X_val, Y_val)`` or None (``X_val`` a :class:`Rows` for a
    ``validation_fraction`` split), the positions a split held out (saved in checkpoints) or None,
    the data's fingerprint and settings for checkpoints (or None), and the row of X of each training
    position (None: all rows, in order).
    """
    # The model's own view of raw input: columns by name, labels through its classes (learned
    # here from a DataFrame's columns and from non-numeric labels when it has none yet).
    if model.feature_names is None and hasattr(X, "columns"):
        model.feature_names = [str(c) for c in X.columns]
    X = model.input_matrix(X)
    n = X.shape[0]
    Y = model.encode_targets(y, n, loss_fn)
    W = check_sample_weight(sample_weight, n, model.dtype)
    row_of = check_rows(rows, n)
    validation: tuple[Any, Any] | None = None
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        X_val = model.input_matrix(validation_data[0])
        validation = (X_val, model.encode_targets(validation_data[1], X_val.shape[0], loss_fn))
    data = None
    if fingerprint:
        data = {**data_fingerprint(X, Y), "batch_size": batch_size}
        settings["sample_weight"] = None if W is None else _crc(W)
        settings["validation_data"] = None if validation is None else _crc(*validation)
        settings["rows"] = None if row_of is None else _crc(row_of)
        data["settings"] = json.loads(json.dumps(settings))  # as the checkpoint will hold them
    if ckpt is not None and data is not None:  # a checkpoint to resume always has a fingerprint
        val_split = validation_data is None and validation_fraction > 0
        _check_resumable(ckpt, source, model, opt, data, batch_size, val_split)
        _check_settings(ckpt, source, data["settings"], overrides)
    if validation is not None or not validation_fraction > 0:
        if row_of is not None:
            Y, W = Y[row_of], None if W is None else W[row_of]
        return X, Y, W, validation, None, data, row_of
    n_rows = n if row_of is None else row_of.shape[0]
    Y_rows = Y if row_of is None else Y[row_of]
    if ckpt is not None and ckpt.val_idx is not None:
        val_idx = _validation_rows(ckpt.val_idx, source, n_rows)
        train_idx = np.setdiff1d(np.arange(n_rows), val_idx, assume_unique=True)
    else:
        stratify = loss_fn.task == "classification" and Y.ndim == 1
        train_idx, val_idx = split_validation(n_rows, validation_fraction, Y_rows, rng, stratify)
    # Positions within the rows trained on, then rows of X: the split is a pair of index arrays.
    train_rows = train_idx if row_of is None else row_of[train_idx]
    val_rows = val_idx if row_of is None else row_of[val_idx]
    validation = (Rows(X, val_rows), Y[val_rows])
    W = None if W is None else W[train_rows]
    return X, Y[train_rows], W, validation, val_idx, data, train_rows


def _crc(*arrays: np.ndarray) -> str:
    crc = 0
    for array in arrays:
        crc = zlib.crc32(np.ascontiguousarray(array).data.cast("B"), crc)
    return f"{crc:08x}"


# --- checkpoints and resuming -----------------------------------------------------------------


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
    if ckpt.state.batch and ckpt.data.get("batch_size") != batch_size:
        raise ValueError(
            f"checkpoint {source} stopped in the middle of an epoch with "
            f"batch_size={ckpt.data.get('batch_size')}; resume with that batch size"
        )
    if ckpt.flat_state.shape != tuple(model.flat_state.shape):
        raise ModelFileError(
            f"{source}: the checkpoint holds {ckpt.flat_state.size} values of non-trainable state; "
            f"this model has {model.flat_state.shape[0]}"
        )


def _position(state: TrainState, ckpt: Checkpoint | None, source: Any) -> tuple[Any, ...]:
    """Where this rank starts, for the ranks to compare: the epoch, batch and step, and the
    checkpoint's identity (a CRC-32 of its parameters; None for a fresh start)."""
    identity = None
    if ckpt is not None:
        identity = f"crc32 {zlib.crc32(np.ascontiguousarray(ckpt.params).data.cast('B')):08x}"
    return state.epoch, state.batch, state.step, identity


def _check_settings(
    ckpt: Checkpoint, source: Any, current: dict[str, Any], overrides: frozenset[str]
) -> None:
    """Refuse a resume whose settings differ from the checkpoint's, but those named in
    ``resume_overrides``, which are announced (a warning) and take effect from here on."""
    saved = ckpt.data.get("settings")
    if not isinstance(saved, dict):
        return  # written by matnet 0.2.0, which did not record them: nothing to compare
    changed = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
    refused = {k: c for k, c in changed.items() if k not in overrides}
    if refused:
        listed = "; ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in refused.items())
        may = [k for k in refused if k in OVERRIDABLE]
        hint = (
            f", or pass resume_overrides={may!r} to continue with the new value"
            + ("s" if len(may) > 1 else "")
            if may
            else ""
        )
        raise ValueError(
            f"checkpoint {source} was written with other settings ({listed}); resume with the "
            f"same settings{hint}"
        )
    if changed:
        listed = "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        warnings.warn(
            f"resuming {source} with changed settings ({listed}), as resume_overrides asks",
            UserWarning,
            stacklevel=5,  # the caller of fit: fit -> _prepare -> _training_data -> here
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


def _validation_rows(val_idx: np.ndarray, source: Any, n: int) -> np.ndarray:
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
    """Load the checkpoint's generator, schedule, optimizer, parameters and non-trainable state
    (the model last, so a defect found on the way leaves it untouched)."""
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
    model.flat_state[...] = ckpt.flat_state
    return rng
