"""Mini-batch training: :func:`fit`, its :class:`History`, and :class:`Callback`.

One step is the article end to end: gather a batch into a reused buffer, ``forward`` through the layers,
``(value, dZ) = loss(Z, Y)``, ``backward(dZ)`` into the flat gradient vector, one optimizer step on the
flat parameter vector. Every input is validated before the first step, so bad data never changes a
parameter.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from matnet.losses import Loss, SoftmaxCrossEntropy, get_loss
from matnet.model import Sequential, as_generator
from matnet.optim import Optimizer, check_number, get_optimizer
from matnet.schedules import Schedule, get_schedule

__all__ = ["fit", "History", "Callback", "check_features", "check_targets"]

Array = Any


# --- validation at the boundary --------------------------------------------------------------


def check_features(X: Any, n_features: int | None, dtype: Any) -> np.ndarray:
    """Validate a feature matrix and return it as a C-contiguous array of ``dtype``.

    Integer and boolean features are converted; read-only, non-contiguous and memory-mapped arrays are
    accepted (copied only when the dtype or layout requires it).

    Raises
    ------
    TypeError
        For non-numeric (object, string) or complex data.
    ValueError
        For anything but a non-empty 2-D array, NaN or infinity, or a width other than ``n_features``.
    """
    if hasattr(X, "__array_namespace__") and not isinstance(X, np.ndarray):
        X = np.asarray(X)
    try:
        X = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"X could not be read as a 2-D numeric array: {exc}") from exc
    if X.dtype.kind in "OUSV":
        raise TypeError(
            f"X has dtype {X.dtype}; matnet needs numeric features (encode strings or categories "
            "as numbers first)"
        )
    if X.dtype.kind == "c":
        raise TypeError(f"X has complex dtype {X.dtype}; matnet needs real-valued features")
    if X.ndim != 2:
        hint = " (use X.reshape(-1, 1) for a single feature)" if X.ndim == 1 else ""
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}{hint}")
    if X.shape[0] == 0:
        raise ValueError(f"X has 0 rows (shape {X.shape}); at least one sample is required")
    if X.shape[1] == 0:
        raise ValueError(f"X has 0 features (shape {X.shape})")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but the model expects {n_features} "
            f"(the width of its first Dense layer)"
        )
    X = np.ascontiguousarray(X, dtype=dtype)
    if not _all_finite(X):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(
            f"X contains NaN or infinity (first at row {bad[0]}, column {bad[1]}); remove or impute "
            "those values"
        )
    return X


def _all_finite(X: np.ndarray) -> bool:
    """True when every entry of the contiguous float array ``X`` is finite, without a temporary of
    X's size: a sum of squares is finite exactly when every entry is, unless it overflows, which the
    exact check (in blocks of rows) then settles. One BLAS pass, twice as fast as ``np.isfinite``."""
    flat = X.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.dot(flat, flat)):
            return True
    rows = max(1, 2**20 // max(1, X.shape[1]))
    return all(np.isfinite(X[i : i + rows]).all() for i in range(0, X.shape[0], rows))


def check_targets(loss: Loss, y: Any, n_samples: int, n_outputs: int, dtype: Any) -> np.ndarray:
    """Validate targets against the loss, the sample count and the model's output width."""
    try:
        y = np.asarray(y)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"y could not be read as an array: {exc}") from exc
    if y.ndim == 0 or y.shape[0] != n_samples:
        raise ValueError(
            f"y has {y.shape[0] if y.ndim else 0} labels for {n_samples} samples in X; "
            "give one target per row"
        )
    if y.dtype.kind in "OUSVc":
        raise ValueError(
            f"y has dtype {y.dtype}; targets must be numbers (encode class labels as integers "
            "0..k-1, or use matnet.sklearn for string labels)"
        )
    return loss.encode_targets(y, n_outputs, dtype)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return int(value)


def _check_sample_weight(sample_weight: Any, n: int, dtype: Any) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(
            f"sample_weight has shape {w.shape}; expected ({n},), one weight per sample"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    return w.astype(dtype)


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


def _as_callbacks(callbacks: Any) -> list[Callback]:
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
            if k not in ("epoch", "learning_rate") and isinstance(v, float)
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


def _split_validation(
    n: int, fraction: float, Y: np.ndarray, rng: np.random.Generator, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, validation)``; stratified by class for class-index targets."""
    if stratify:
        val_parts = []
        for cls in np.unique(Y):
            members = np.flatnonzero(Y == cls)
            rng.shuffle(members)
            val_parts.append(members[: int(round(fraction * members.size))])
        val_idx = np.sort(np.concatenate(val_parts))
    else:
        val_idx = np.sort(rng.permutation(n)[: int(round(fraction * n))])
    if val_idx.size == 0 or val_idx.size == n:
        raise ValueError(
            f"validation_fraction={fraction} of {n} samples leaves an empty training or validation "
            "set; use more data or another fraction"
        )
    train_mask = np.ones(n, dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


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
        Passes over the training data.
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

    Returns
    -------
    History
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
    epochs = _check_positive_int("epochs", epochs)
    batch_size = _check_positive_int("batch_size", batch_size)
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
        raise ValueError(f"patience={patience!r} must be a non-negative integer")
    if not (isinstance(validation_fraction, (int, float)) and 0 <= validation_fraction < 1):
        raise ValueError(f"validation_fraction={validation_fraction!r} must be in [0, 1)")
    if clip_norm is not None and not (isinstance(clip_norm, (int, float)) and clip_norm > 0):
        raise ValueError(f"clip_norm={clip_norm!r} must be a positive number or None")
    if verbose not in (0, 1, 2, False, True):
        raise ValueError(f"verbose={verbose!r} must be 0, 1 or 2")
    sched = get_schedule(schedule)
    cbs = _as_callbacks(callbacks)
    rng = as_generator(seed)

    X = check_features(X, model.n_features, model.dtype)
    n = X.shape[0]
    Y = check_targets(loss_fn, y, n, model.n_outputs, model.dtype)
    W_sample = _check_sample_weight(sample_weight, n, model.dtype)
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        X_val = check_features(validation_data[0], model.n_features, model.dtype)
        Y_val = check_targets(
            loss_fn, validation_data[1], X_val.shape[0], model.n_outputs, model.dtype
        )
    elif validation_fraction > 0:
        stratify = isinstance(loss_fn, SoftmaxCrossEntropy) and Y.ndim == 1
        train_idx, val_idx = _split_validation(n, validation_fraction, Y, rng, stratify)
        X_val, Y_val = X[val_idx], Y[val_idx]
        X, Y = X[train_idx], Y[train_idx]
        W_sample = None if W_sample is None else W_sample[train_idx]
        n = X.shape[0]
    else:
        X_val = Y_val = None

    model.loss = loss_fn
    params, grads = model.flat_params, model.flat_grads
    opt.prepare(params, model.n_decay)  # keeps the state of an optimizer reused on this model
    base_lr = opt.learning_rate
    history = History()
    monitor = "val_loss" if X_val is not None else "loss"
    best_value, best_params, bad_epochs = math.inf, None, 0

    # Reused batch buffers: np.take(..., out=, mode="clip") gathers rows without allocating.
    m_max = min(batch_size, n)
    X_buf = np.empty((m_max, X.shape[1]), dtype=X.dtype)
    Y_buf = np.empty((m_max, *Y.shape[1:]), dtype=Y.dtype)
    W_buf = None if W_sample is None else np.empty(m_max, dtype=W_sample.dtype)
    order = np.arange(n)

    for cb in cbs:
        cb.on_train_begin({"epochs": epochs, "batch_size": batch_size, "n_samples": n})
    progress = _Progress(int(verbose), epochs, 0)
    step = 0
    stop = False
    try:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            opt.learning_rate = sched.learning_rate(epoch - 1, base_lr)
            for cb in cbs:
                cb.on_epoch_begin(epoch, {"learning_rate": opt.learning_rate})
            perm = rng.permutation(n) if shuffle else order
            total = 0.0
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                m = idx.shape[0]
                xb = np.take(X, idx, axis=0, out=X_buf[:m], mode="clip")
                yb = np.take(Y, idx, axis=0, out=Y_buf[:m], mode="clip")
                wb = None if W_buf is None else np.take(W_sample, idx, out=W_buf[:m], mode="clip")
                Z, backward = model.forward(xb, training=True, rng=rng)
                value, dZ = loss_fn(Z, yb, wb)
                backward(dZ)
                if clip_norm is not None:
                    norm = math.sqrt(float(np.dot(grads, grads)))
                    if norm > clip_norm:
                        grads *= clip_norm / norm
                opt.step(params, grads)
                total += value * m
                step += 1
                if cbs:
                    logs = {"loss": value, "batch_size": m, "epoch": epoch}
                    if any(cb.on_batch_end(step, logs) for cb in cbs):
                        stop = True
                        break
            record: dict[str, Any] = {"epoch": epoch, "loss": total / n}
            if X_val is not None:
                Z_val = model.logits(X_val)
                record["val_loss"] = loss_fn(Z_val, Y_val)[0]
                record[f"val_{loss_fn.metric_name}"] = loss_fn.metric(Z_val, Y_val)
            record["learning_rate"] = opt.learning_rate
            record["seconds"] = time.perf_counter() - started
            history.append(record)
            sched.observe(record[monitor])
            progress.update(record)
            if record[monitor] < best_value - min_delta:
                best_value, bad_epochs = record[monitor], 0
                history.best_epoch = epoch
                if early_stopping:
                    best_params = params.copy()
            else:
                bad_epochs += 1
            if any(cb.on_epoch_end(epoch, record) for cb in cbs):
                stop = True
            if early_stopping and bad_epochs > patience:
                history.stopped_early = True
                stop = True
            if stop:
                break
    finally:
        progress.close()
    if early_stopping and best_params is not None:
        params[...] = best_params
    for cb in cbs:
        cb.on_train_end({"epochs_run": len(history), "best_epoch": history.best_epoch})
    return history
