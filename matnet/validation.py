"""Every check at matnet's boundary (features, targets, sample weights, numbers, seeds, splits).

A low module: it imports nothing of matnet's but the backend and the errors, so the model, training,
gradcheck, explain and the front ends can all share one wording of each check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matnet.backend import all_finite
from matnet.errors import DataError

__all__ = [
    "as_generator",
    "check_class_targets",
    "check_features",
    "check_feature_rows",
    "check_finite_rows",
    "check_int_range",
    "check_number",
    "check_positive_int",
    "check_probabilities",
    "check_regression_targets",
    "check_sample_weight",
    "check_targets",
    "holdout_rows",
    "split_validation",
    "standardization_overflows",
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


def check_feature_rows(
    rows: Any,
    n_features: int,
    feature_names: list[str] | None,
    *,
    ignored: tuple[str, ...] = (),
    source: str = "request body",
) -> np.ndarray:
    """Rows of decoded JSON as a float64 matrix in the model's column order, checked cell by cell.

    Each row is an object keyed by feature name (when the model knows its names) or a list of
    ``n_features`` values in the model's column order. Values are numbers or booleans (1/0, as a CSV
    file's True/False); the messages follow :func:`matnet.datasets.read_csv`'s, naming the row and
    the feature.

    Parameters
    ----------
    rows : list of dict or list
    n_features : int
    feature_names : list of str or None
    ignored : tuple of str
        Keys an object row may carry besides the features (the target column, as a CSV may).
    source : str
        What the rows are called in messages.

    Returns
    -------
    ndarray of shape (len(rows), n_features), float64

    Raises
    ------
    DataError
        For anything but a non-empty list of such rows: the first bad row and cell named.
    """
    if not isinstance(rows, list):
        raise DataError(
            f"{source}: the rows must be a JSON list (objects keyed by feature name, or lists "
            f"in the model's column order), not {_json_kind(rows)}"
        )
    if not rows:
        raise DataError(f"{source}: the list of rows is empty; give at least one row")
    names = feature_names or [f"column {j + 1}" for j in range(n_features)]
    X = np.empty((len(rows), n_features), dtype=np.float64)
    for i, row in enumerate(rows):
        where = f"{source}, row {i + 1}"
        if isinstance(row, dict):
            row = _ordered_cells(row, where, feature_names, ignored)
        elif not isinstance(row, list):
            raise DataError(
                f"{where}: a row is an object or a list of {n_features} values, not "
                f"{_json_kind(row)}"
            )
        elif len(row) != n_features:
            raise DataError(
                f"{where}: {len(row)} values, but the model expects {n_features} features "
                f"({', '.join(names[:6])}{', ...' if n_features > 6 else ''})"
            )
        for j, value in enumerate(row):
            X[i, j] = _cell(value, f"{where}, column {names[j]!r}")
    return X


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number" if isinstance(value, (int, float)) else "a value")


def _ordered_cells(
    row: dict[str, Any], where: str, feature_names: list[str] | None, ignored: tuple[str, ...]
) -> list[Any]:
    if feature_names is None:
        raise DataError(
            f"{where}: an object, but the model stores no feature names; send each row as a "
            "list of values in the model's column order"
        )
    problem = key_mismatch(list(row), feature_names, ignored)
    if problem:
        raise DataError(f"{where}: {problem}")
    return [row[name] for name in feature_names]


def key_mismatch(keys: list[str], names: list[str], ignored: tuple[str, ...] = ()) -> str | None:
    """What is wrong with a row's keys against the model's feature names, every key named (a
    mis-cased or misspelt key gets a "did you mean"), or None when they match.

    >>> key_mismatch(["Age", "city"], ["age", "city", "income"])
    "lacks 2 of the model's 3 features: 'age', 'income'; unknown key 'Age' (did you mean 'age'?)"
    """
    import difflib

    missing = [name for name in names if name not in keys]
    unknown = [key for key in keys if key not in names and key not in ignored]
    if not missing and not unknown:
        return None
    parts = []
    if missing:
        parts.append(
            f"lacks {len(missing)} of the model's {len(names)} features: "
            + ", ".join(map(repr, missing))
        )
    if unknown:
        lowered = {name.lower(): name for name in missing}
        hints = []
        for key in unknown:
            close = lowered.get(str(key).lower()) or next(
                iter(difflib.get_close_matches(str(key), missing, n=1)), None
            )
            hints.append(f"{key!r}" + (f" (did you mean {close!r}?)" if close else ""))
        parts.append(f"unknown key{'s' if len(unknown) > 1 else ''} " + ", ".join(hints))
    return "; ".join(parts)


def _cell(value: Any, where: str) -> float:
    """One feature value: a finite number, or a boolean as 1/0."""
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)):
        shown = "null" if value is None else repr(value)
        raise DataError(
            f"{where}: {shown} is not a number (features must be numeric; only the target may "
            "hold labels)"
        )
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float64's range
        number = float("inf")
    if not np.isfinite(number):
        raise DataError(
            f"{where}: the value is {value!r}; matnet needs finite numbers (remove or impute "
            "missing values)"
        )
    return number


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


def check_int_range(name: str, value: Any, low: int, high: int, why: str = "") -> int:
    """Return ``value`` as an int if it is an integer in ``[low, high]``, else raise ValueError
    (``why`` says where the range comes from)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not low <= value <= high
    ):
        raise ValueError(f"{name}={value!r} must be an integer from {low} to {high}{why}")
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


def holdout_rows(
    n: int, fraction: float, y: np.ndarray, rng: np.random.Generator, stratify: bool
) -> np.ndarray:
    """Sorted indices of ``fraction`` of the ``n`` rows, drawn from ``rng``: that fraction of each
    class of ``y`` when ``stratify``, else of all rows."""
    if not stratify:
        return np.sort(rng.permutation(n)[: int(round(fraction * n))])
    parts = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        rng.shuffle(members)
        parts.append(members[: int(round(fraction * members.size))])
    return np.sort(np.concatenate(parts))


def split_validation(
    n: int, fraction: float, Y: np.ndarray, rng: np.random.Generator, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, validation)``; stratified by class for class-index targets."""
    val_idx = holdout_rows(n, fraction, Y, rng, stratify)
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


def standardization_overflows(mean: Any, scale: Any, dtype: Any = None) -> str | None:
    """Why ``(x − mean) / scale`` cannot be computed in ``dtype`` (default: the mean's), or None.

    The statistics must be finite and representable, the scale non-zero, and ``max(|mean|, 1) /
    |scale|`` within the dtype's largest number: beyond it, rows near the mean (or near 1) already
    standardize to infinity, which is an overflow in the file, not a fault of the data. Computed in
    float64 with floating-point warnings silenced, so a hostile file prints no RuntimeWarning.
    """
    dtype = np.dtype(dtype if dtype is not None else np.asarray(mean).dtype)
    largest = float(np.finfo(dtype).max)
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    with np.errstate(all="ignore"):
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale))):
            return "holds NaN or infinity"
        beyond = np.flatnonzero((np.abs(mean) > largest) | (np.abs(scale) > largest))
        if beyond.size:
            j = int(beyond[0])
            return (
                f"holds a mean of {mean[j]:.3g} and a scale of {scale[j]:.3g} (feature {j}), "
                f"beyond {dtype}'s largest number {largest:.3g}"
            )
        if np.any(scale == 0):
            return f"has a zero scale (feature {int(np.flatnonzero(scale == 0)[0])})"
        ratio = np.maximum(np.abs(mean), 1.0) / np.abs(scale)
        over = np.flatnonzero(~(ratio <= largest))
    if over.size:
        j = int(over[0])
        return (
            f"overflows {dtype}: feature {j} has mean {mean[j]:.3g} and scale {scale[j]:.3g}, "
            "so (x - mean) / scale is infinite"
        )
    return None


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


#: The largest batch a page records: the page is for reading a step, not for profiling one.
MAX_PAGE_BATCH = 256


def check_page_options(
    steps: Any, batch: Any, n_rows: int, learning_rate: Any, max_side: Any, max_bytes: Any
) -> tuple[int, int, float, int, int]:
    """The options of :func:`matnet.explain.to_html`, checked: ``(steps, batch, learning_rate,
    max_side, max_bytes)``."""
    steps = check_positive_int("steps", steps)
    batch = check_positive_int("batch", batch)
    if steps > 1000:
        raise ValueError(f"steps={steps} is more than a page can show; record at most 1000 steps")
    if batch > min(n_rows, MAX_PAGE_BATCH):
        raise ValueError(
            f"batch={batch} must be at most {min(n_rows, MAX_PAGE_BATCH)} (the rows given: "
            f"{n_rows}; a page records at most {MAX_PAGE_BATCH} rows per step)"
        )
    rate = check_number("learning_rate", learning_rate, 0.0, np.inf, low_open=True)
    max_side = check_positive_int("max_side", max_side)
    if max_side < 2:
        raise ValueError(f"max_side={max_side} must be at least 2 (rows and columns shown)")
    max_bytes = check_positive_int("max_bytes", max_bytes)
    return steps, batch, rate, max_side, max_bytes


# --- metrics (matnet.metrics) --------------------------------------------------------------------


def _one_dimensional(name: str, y: Any) -> np.ndarray:
    try:
        y = np.asarray(y)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be read as an array: {exc}") from exc
    if y.ndim != 1:
        raise ValueError(
            f"{name} has shape {y.shape}; give one label per row as a 1-D array "
            "(class labels, not one-hot rows)"
        )
    if y.size == 0:
        raise ValueError(f"{name} has 0 rows; at least one is required")
    return y


def check_class_targets(
    y_true: Any, y_pred: Any | None, labels: Any | None
) -> tuple[np.ndarray, np.ndarray | None, list[Any]]:
    """Class labels for a metric: ``(true indices, predicted indices or None, labels)``.

    ``labels`` fixes the classes and their order (a model's ``classes``); without it they are the
    sorted distinct values of ``y_true`` and ``y_pred``, as scikit-learn infers them. A value
    outside ``labels`` is an error naming it.
    """
    y_true = _one_dimensional("y_true", y_true)
    arrays = [y_true]
    if y_pred is not None:
        y_pred = _one_dimensional("y_pred", y_pred)
        if y_pred.shape[0] != y_true.shape[0]:
            raise ValueError(
                f"y_pred has {y_pred.shape[0]} rows but y_true has {y_true.shape[0]}; "
                "give one prediction per row"
            )
        arrays.append(y_pred)
    for name, y in zip(("y_true", "y_pred"), arrays, strict=False):
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError(f"{name} contains NaN or infinity; class labels must be finite")
    if labels is None:
        labels = np.unique(np.concatenate(arrays)).tolist()
    else:
        labels = (
            list(np.asarray(labels).tolist()) if isinstance(labels, np.ndarray) else list(labels)
        )
        if len(labels) == 0:
            raise ValueError("labels is empty; give the classes in the order of the columns")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels {labels!r} repeat a class; give each class once")
    lookup = {label: i for i, label in enumerate(labels)}
    encoded = []
    for name, y in zip(("y_true", "y_pred"), arrays, strict=False):
        try:
            values, inverse = np.unique(y, return_inverse=True)
        except TypeError:  # labels of several types (1 and "a") do not sort: one at a time
            values, inverse = y, np.arange(y.size)
        unknown = [v for v in values.tolist() if v not in lookup]
        if unknown:
            raise ValueError(
                f"{name} holds the label {unknown[0]!r}, which is not one of the classes "
                f"{labels[:12]!r}; pass labels= with every class"
            )
        codes = np.asarray([lookup[v] for v in values.tolist()], dtype=np.intp)
        encoded.append(codes[inverse.reshape(-1)])
    return encoded[0], (encoded[1] if y_pred is not None else None), labels


def check_probabilities(proba: Any, n_rows: int, n_classes: int) -> np.ndarray:
    """Class probabilities as float64 of shape ``(n_rows, n_classes)``.

    A 1-D array (or one column) is the probability of the second of two classes, as
    scikit-learn reads it; values must be finite and in [0, 1].
    """
    try:
        P = np.asarray(proba, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"proba could not be read as a numeric array: {exc}") from exc
    if P.ndim == 1:
        P = P[:, None]
    if P.ndim != 2 or P.shape[0] != n_rows:
        raise ValueError(
            f"proba has shape {P.shape}; expected ({n_rows}, {n_classes}), a row per sample "
            "and a column per class"
        )
    if P.shape[1] == 1 and n_classes == 2:
        P = np.column_stack([1 - P[:, 0], P[:, 0]])
    if P.shape[1] != n_classes:
        raise ValueError(
            f"proba has {P.shape[1]} columns for {n_classes} classes; give a column per class "
            "in the order of labels"
        )
    if not np.all(np.isfinite(P)):
        raise ValueError("proba contains NaN or infinity; probabilities must be finite")
    if P.min() < 0 or P.max() > 1:
        raise ValueError(
            f"proba holds values outside [0, 1] (from {P.min():g} to {P.max():g}); give "
            "probabilities (predict_proba), not logits"
        )
    return P


def check_regression_targets(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Targets and predictions as float64 arrays of the same shape, ``(n,)`` or ``(n, k)``."""
    out = []
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        try:
            y = np.asarray(y, dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name} could not be read as numbers: {exc}") from exc
        if y.ndim not in (1, 2) or y.shape[0] == 0:
            raise ValueError(f"{name} has shape {y.shape}; give (n,) or (n, k) values, n >= 1")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{name} contains NaN or infinity")
        out.append(y)
    if out[0].shape != out[1].shape:
        raise ValueError(
            f"y_true has shape {out[0].shape} but y_pred has {out[1].shape}; give one "
            "prediction per target"
        )
    return out[0], out[1]
