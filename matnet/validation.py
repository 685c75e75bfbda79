"""Every check at matnet's boundary (features, targets, sample weights, numbers, seeds, splits).

A low module: it imports nothing of matnet's but the backend and the errors, so the model, training,
gradcheck, explain and the front ends can all share one wording of each check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matnet.backend import all_finite

__all__ = [
    "as_generator",
    "check_features",
    "check_finite_rows",
    "check_number",
    "check_positive_int",
    "check_sample_weight",
    "check_targets",
    "split_validation",
]


def check_features(
    X: Any, n_features: int | None, dtype: Any, *, finite: bool = True
) -> np.ndarray:
    """Validate a feature matrix and return it as a C-contiguous array of ``dtype``.

    Integer and boolean features are converted; read-only, non-contiguous and memory-mapped arrays are
    accepted (copied only when the dtype or layout requires it). ``finite=False`` leaves the check
    for NaN and infinity to the caller (:func:`check_finite_rows`, e.g. block by block).

    Raises
    ------
    TypeError
        For non-numeric (object, string) or complex data.
    ValueError
        For anything but a non-empty 2-D array, NaN or infinity, or a width other than ``n_features``.
    """
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
    if finite:
        check_finite_rows(X)
    return X


def check_finite_rows(X: np.ndarray, first_row: int = 0) -> None:
    """Raise ValueError, naming the first bad entry, unless every entry of ``X`` is finite.

    ``X`` is a contiguous float array, rows ``first_row, first_row + 1, ...`` of the caller's data.
    """
    if not all_finite(X):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(
            f"X contains NaN or infinity (first at row {first_row + bad[0]}, column {bad[1]}); "
            "remove or impute those values"
        )


def check_targets(loss: Any, y: Any, n_samples: int, n_outputs: int, dtype: Any) -> np.ndarray:
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


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return int(value)


def check_rows(rows: Any, n: int) -> np.ndarray | None:
    """``fit(rows=...)``: None (every row), or row numbers of X, each in [0, n) and at most once,
    as an int64 array of shape (n_rows,)."""
    if rows is None:
        return None
    index = np.asarray(rows)
    if index.ndim != 1 or index.size == 0 or index.dtype.kind not in "iu":
        raise ValueError(
            f"rows must be a non-empty 1-D array of integer row numbers, got shape {index.shape} "
            f"and dtype {index.dtype}"
        )
    index = index.astype(np.int64, copy=False)
    if index.min() < 0 or index.max() >= n:
        raise ValueError(
            f"rows holds row numbers from {index.min()} to {index.max()}; X has {n} rows "
            f"(valid: 0 to {n - 1})"
        )
    seen = np.zeros(n, dtype=bool)  # n bytes, where np.unique would sort a copy of the index
    seen[index] = True
    if np.count_nonzero(seen) != index.size:
        raise ValueError("rows holds a row number more than once; give each row at most once")
    return index


def check_sample_weight(sample_weight: Any, n: int, dtype: Any) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(
            f"sample_weight has shape {w.shape}; expected ({n},), one weight per sample"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    if not np.any(w > 0):
        raise ValueError("sample_weight is zero everywhere, which leaves nothing to learn from")
    return w.astype(dtype)


def split_validation(
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


def check_number(name: str, value: Any, low: float, high: float, *, low_open: bool) -> float:
    """Return ``value`` as a float if it is a finite number in the range, else raise ValueError."""
    ok_type = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(
        value, bool
    )
    in_range = ok_type and (value > low if low_open else value >= low) and value < high
    if not (ok_type and np.isfinite(value) and in_range):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}={value!r} must be a number in {bracket}{low}, {high})")
    return float(value)


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, an existing generator, or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ValueError(f"seed={seed!r} must be a non-negative integer")
        return np.random.default_rng(seed)
    raise TypeError(
        f"seed must be an int, a numpy.random.Generator or None, got {type(seed).__name__}"
    )
