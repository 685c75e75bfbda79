"""Evaluation metrics in NumPy: the one place ``matnet evaluate`` (and anyone in Python) takes them from.

Each function gives scikit-learn's number for the same input (``tests/test_metrics.py`` holds them to
``sklearn.metrics`` within 1e-12), without needing scikit-learn. Where a metric is undefined on the
rows given, it says so instead of crashing:

- **precision, recall, F1** of a class that is never predicted (precision) or has no rows (recall,
  F1 with neither) are 0/0; they take ``zero_division`` (0.0 by default, as scikit-learn's
  ``zero_division="warn"`` does, without the warning), and :func:`classification_report` lists each
  such case in ``"undefined"``. With ``zero_division=nan`` they are left out of the averages, as in
  scikit-learn.
- **ROC-AUC** needs rows of both kinds: with a single class present it is ``None`` and the reason is
  given (scikit-learn warns and returns nan). For several classes it is the macro average of each
  class against the rest over the classes that have rows (scikit-learn's average is nan when one is
  absent; matnet averages the others and names the ones left out).
- **log-loss** clips probabilities to ``[eps, 1 - eps]`` with ``eps`` the machine epsilon of float64
  (2.22e-16), as scikit-learn does for float64 input, so a probability of exactly 0 for the true class
  costs ``-log(eps) ≈ 36.04`` rather than infinity.
- **R²** of a constant target is 0/0: as in scikit-learn it is 1.0 for a perfect prediction and 0.0
  otherwise, and :func:`regression_scores` says so.

Class labels are any hashable values; ``labels`` fixes the classes and their order (that of a
model's ``classes`` and of its ``predict_proba`` columns).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matnet.validation import (
    check_class_targets,
    check_probabilities,
    check_regression_targets,
)

__all__ = [
    "LOG_LOSS_EPS",
    "accuracy",
    "calibration",
    "classification_report",
    "classification_scores",
    "confusion_matrix",
    "log_loss",
    "mean_absolute_error",
    "mean_squared_error",
    "precision_recall_f1",
    "r2_score",
    "regression_scores",
    "roc_auc",
    "root_mean_squared_error",
]

#: The clipping of :func:`log_loss`: probabilities are kept in ``[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]``.
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


def _check_zero_division(zero_division: float) -> float:
    value = float(zero_division)
    if not (value in (0.0, 1.0) or np.isnan(value)):
        raise ValueError(f"zero_division={zero_division!r} must be 0.0, 1.0 or nan")
    return value


# --- from decisions ------------------------------------------------------------------------------


def accuracy(y_true: Any, y_pred: Any) -> float:
    """The fraction of rows whose predicted label is the true one.

    Parameters
    ----------
    y_true, y_pred : array of shape (n,), class labels
    """
    t, p, _ = check_class_targets(y_true, y_pred, None)
    assert p is not None
    return float(np.mean(t == p))


def confusion_matrix(y_true: Any, y_pred: Any, labels: Any = None) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Parameters
    ----------
    y_true, y_pred : array of shape (n,), class labels
    labels : sequence of k labels, optional
        The classes and their order; default: the sorted labels found in ``y_true`` and ``y_pred``.

    Returns
    -------
    ndarray of shape (k, k), int64
        Row ``i``: the rows of class ``labels[i]``; column ``j``: predicted as ``labels[j]``.
    """
    t, p, labels = check_class_targets(y_true, y_pred, labels)
    assert p is not None
    return _confusion(t, p, len(labels))


def _confusion(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    out = np.full(num.shape, zero_division, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def precision_recall_f1(
    y_true: Any, y_pred: Any, labels: Any = None, *, zero_division: float = 0.0
) -> dict[str, np.ndarray]:
    """Per-class precision ``tp/(tp+fp)``, recall ``tp/(tp+fn)``, F1 ``2tp/(2tp+fp+fn)`` and support.

    Parameters
    ----------
    y_true, y_pred : array of shape (n,), class labels
    labels : sequence of k labels, optional
    zero_division : 0.0, 1.0 or nan
        The value of a ratio whose denominator is 0 (a class never predicted, or without rows).

    Returns
    -------
    dict
        ``"precision"``, ``"recall"``, ``"f1"``: float64 arrays of shape (k,); ``"support"``: int64
        array of shape (k,), the rows of each class.
    """
    zero_division = _check_zero_division(zero_division)
    t, p, labels = check_class_targets(y_true, y_pred, labels)
    assert p is not None
    return _prf(_confusion(t, p, len(labels)), zero_division)


def _prf(matrix: np.ndarray, zero_division: float) -> dict[str, np.ndarray]:
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    return {
        "precision": _divide(tp, predicted.astype(np.float64), zero_division),
        "recall": _divide(tp, support.astype(np.float64), zero_division),
        "f1": _divide(2 * tp, (support + predicted).astype(np.float64), zero_division),
        "support": support,
    }


def _nan_average(values: np.ndarray, weights: np.ndarray | None) -> float:
    """scikit-learn's average that leaves out undefined (nan) entries."""
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    if weights is None or weights[keep].sum() == 0:
        return float(np.mean(values[keep]))
    return float(np.average(values[keep], weights=weights[keep]))


def classification_report(
    y_true: Any, y_pred: Any, labels: Any = None, *, zero_division: float = 0.0
) -> dict[str, Any]:
    """Precision, recall, F1 and support per class, their macro and support-weighted averages, and
    accuracy: the numbers of scikit-learn's ``classification_report(..., output_dict=True)``.

    Parameters
    ----------
    y_true, y_pred : array of shape (n,), class labels
    labels : sequence of k labels, optional
        Every class to report, present or not (a class without rows has support 0).
    zero_division : 0.0, 1.0 or nan

    Returns
    -------
    dict
        ``"classes"``: a list of k dicts ``{"label", "precision", "recall", "f1", "support"}``;
        ``"accuracy"``; ``"macro_avg"`` and ``"weighted_avg"`` (``{"precision", "recall", "f1",
        "support"}``); ``"undefined"``: one sentence per 0/0 ratio, naming the class and the value it
        took.
    """
    zero_division = _check_zero_division(zero_division)
    t, p, labels = check_class_targets(y_true, y_pred, labels)
    assert p is not None
    matrix = _confusion(t, p, len(labels))
    return _report(matrix, labels, zero_division)


def _report(matrix: np.ndarray, labels: list[Any], zero_division: float) -> dict[str, Any]:
    scores = _prf(matrix, zero_division)
    support = scores["support"]
    predicted = matrix.sum(axis=0)
    names = ("precision", "recall", "f1")
    classes = [
        {"label": label, **{m: float(scores[m][i]) for m in names}, "support": int(support[i])}
        for i, label in enumerate(labels)
    ]
    total = int(support.sum())
    weights = support.astype(np.float64)
    undefined = []
    for i, label in enumerate(labels):
        if support[i] == 0 and predicted[i] == 0:
            undefined.append(
                f"class {label!r} has no rows and is never predicted: precision, recall and F1 are 0/0, set to {zero_division}"
            )
        elif support[i] == 0:
            undefined.append(
                f"class {label!r} has no rows: its recall is 0/0, set to {zero_division}"
            )
        elif predicted[i] == 0:
            undefined.append(
                f"class {label!r} is never predicted: its precision is 0/0, set to {zero_division}"
            )
    return {
        "classes": classes,
        "accuracy": float(np.trace(matrix) / total),
        "macro_avg": {m: _nan_average(scores[m], None) for m in names} | {"support": total},
        "weighted_avg": {m: _nan_average(scores[m], weights) for m in names} | {"support": total},
        "undefined": undefined,
    }


# --- from probabilities --------------------------------------------------------------------------


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)
    return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """The area under the ROC curve as the Mann-Whitney statistic: the probability that a random
    positive row scores above a random negative one (ties count one half), which is exactly the
    trapezoidal area under the curve scikit-learn integrates."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    rank_sum = float(_midranks(score)[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def roc_auc(y_true: Any, proba: Any, labels: Any = None) -> dict[str, Any]:
    """Area under the ROC curve: binary, or one-vs-rest macro over the classes with rows.

    Parameters
    ----------
    y_true : array of shape (n,), class labels
    proba : array of shape (n, k) (or (n,): the probability of the second of two classes)
        Column ``j`` is the probability of ``labels[j]``.
    labels : sequence of k labels, optional
        Default: the sorted labels of ``y_true``.

    Returns
    -------
    dict
        ``"value"``: the AUC, or None when it is undefined; ``"average"``: ``"binary"`` or
        ``"ovr-macro"``; ``"classes"``: the labels averaged over; ``"reason"``: why the value is None
        or which classes were left out (else None).
    """
    t, _, labels = check_class_targets(y_true, None, labels)
    return _roc_auc(t, check_probabilities(proba, t.size, len(labels)), labels)


def _roc_auc(t: np.ndarray, P: np.ndarray, labels: list[Any]) -> dict[str, Any]:
    k = len(labels)
    present = np.bincount(t, minlength=k) > 0
    average = "binary" if k == 2 else "ovr-macro"
    if present.sum() < 2:
        only = labels[int(np.flatnonzero(present)[0])]
        reason = (
            f"ROC-AUC is undefined: every row is of class {only!r}, and the curve needs rows "
            "of two classes"
        )
        return {"value": None, "average": average, "classes": [], "reason": reason}
    if k == 2:  # the second class is the positive one, as in scikit-learn
        return {"value": _binary_auc(t == 1, P[:, 1]), "average": average,
                "classes": [labels[1]], "reason": None}  # fmt: skip
    used = np.flatnonzero(present)
    aucs = [_binary_auc(t == j, P[:, j]) for j in used]
    left_out: str | None = None
    if used.size < k:
        absent = [labels[j] for j in np.flatnonzero(~present)]
        left_out = (
            f"classes without rows ({', '.join(map(repr, absent))}) have no one-vs-rest curve; "
            f"the macro average is over the other {used.size}"
        )
    return {"value": float(np.mean(aucs)), "average": average,
            "classes": [labels[j] for j in used], "reason": left_out}  # fmt: skip


def log_loss(y_true: Any, proba: Any, labels: Any = None) -> float:
    """Mean negative log-probability of the true class, ``−(1/n) Σᵢ log P[i, yᵢ]``.

    Probabilities are clipped to ``[eps, 1 − eps]`` with ``eps = LOG_LOSS_EPS`` (float64's machine
    epsilon, 2.22e-16) before the log, as scikit-learn does, so an exact 0 for the true class costs
    ``−log(eps) ≈ 36.04`` instead of infinity.

    Parameters
    ----------
    y_true : array of shape (n,), class labels
    proba : array of shape (n, k) (or (n,) for two classes)
    labels : sequence of k labels, optional
        Default: the sorted labels of ``y_true``.
    """
    t, _, labels = check_class_targets(y_true, None, labels)
    return _log_loss(t, check_probabilities(proba, t.size, len(labels)))


def _log_loss(t: np.ndarray, P: np.ndarray) -> float:
    chosen = np.clip(P[np.arange(t.size), t], LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return float(np.mean(-np.log(chosen)))


def calibration(y_true: Any, proba: Any, labels: Any = None, n_bins: int = 10) -> dict[str, Any]:
    """How well the top probability of each row says how often it is right (a reliability diagram).

    The rows are binned by their top probability ``c_i = max_j P[i, j]`` into ``n_bins`` equal
    intervals of [0, 1]; in each bin, the mean confidence ``conf_b`` and the accuracy ``acc_b``
    (the share of rows whose most probable class is the true one). The expected calibration error
    is ``ECE = Σ_b (n_b / n) · |acc_b − conf_b|``: 0 for probabilities that mean what they say.

    Parameters
    ----------
    y_true : array of shape (n,), class labels
    proba : array of shape (n, k) (or (n,) for two classes)
    labels : sequence of k labels, optional
    n_bins : int

    Returns
    -------
    dict
        ``"ece"``, ``"n_bins"`` and ``"bins"``: per non-empty bin ``{"low", "high", "count",
        "confidence", "accuracy"}``.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r} must be a positive integer")
    t, _, labels = check_class_targets(y_true, None, labels)
    return _calibration(t, check_probabilities(proba, t.size, len(labels)), int(n_bins))


def _calibration(t: np.ndarray, P: np.ndarray, n_bins: int) -> dict[str, Any]:
    confidence = P.max(axis=1)
    correct = (np.argmax(P, axis=1) == t).astype(np.float64)
    # Bin b holds (b/n_bins, (b+1)/n_bins]; a confidence of exactly 0 falls in the first.
    which = np.clip(np.ceil(confidence * n_bins).astype(np.intp) - 1, 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        rows = which == b
        count = int(rows.sum())
        if not count:
            continue
        conf, acc = float(confidence[rows].mean()), float(correct[rows].mean())
        ece += count / t.size * abs(acc - conf)
        bins.append({"low": b / n_bins, "high": (b + 1) / n_bins, "count": count,
                     "confidence": conf, "accuracy": acc})  # fmt: skip
    return {"ece": ece, "n_bins": n_bins, "bins": bins}


def classification_scores(
    y_true: Any,
    proba: Any,
    labels: Any = None,
    *,
    y_pred: Any = None,
    zero_division: float = 0.0,
) -> dict[str, Any]:
    """Every classification metric from the true labels, the predicted probabilities and the
    decisions.

    Parameters
    ----------
    y_true : array of shape (n,), class labels
    proba : array of shape (n, k)
    labels : sequence of k labels, optional
    y_pred : array of shape (n,), optional
        The decisions (a model's ``predict``); default: the most probable class of each row.
    zero_division : 0.0, 1.0 or nan

    Returns
    -------
    dict
        The keys of :func:`classification_report` plus ``"log_loss"``, ``"log_loss_eps"``,
        ``"roc_auc"`` (the dict of :func:`roc_auc`), ``"calibration"`` (:func:`calibration`, 10
        bins), ``"labels"`` and ``"confusion_matrix"`` (a list of
        k lists of counts). Every value is JSON-serializable except that undefined averages are nan.
    """
    zero_division = _check_zero_division(zero_division)
    t, p, labels = check_class_targets(y_true, y_pred, labels)
    P = check_probabilities(proba, t.size, len(labels))
    matrix = _confusion(t, np.argmax(P, axis=1) if p is None else p, len(labels))
    report = _report(matrix, labels, zero_division)
    return {
        "accuracy": report.pop("accuracy"),
        "log_loss": _log_loss(t, P),
        "log_loss_eps": LOG_LOSS_EPS,
        "roc_auc": _roc_auc(t, P, labels),
        "calibration": _calibration(t, P, 10),
        **report,
        "labels": labels,
        "confusion_matrix": matrix.tolist(),
    }


# --- regression ----------------------------------------------------------------------------------


def mean_absolute_error(y_true: Any, y_pred: Any) -> float:
    """``(1/n) Σ |y − ŷ|``, averaged over outputs for (n, k) targets.

    Parameters
    ----------
    y_true, y_pred : array of shape (n,) or (n, k)
    """
    y, yhat = check_regression_targets(y_true, y_pred)
    return float(np.mean(np.mean(np.abs(yhat - y), axis=0)))


def mean_squared_error(y_true: Any, y_pred: Any) -> float:
    """``(1/n) Σ (y − ŷ)²``, averaged over outputs for (n, k) targets.

    Parameters
    ----------
    y_true, y_pred : array of shape (n,) or (n, k)
    """
    y, yhat = check_regression_targets(y_true, y_pred)
    return float(np.mean(np.mean((y - yhat) ** 2, axis=0)))


def root_mean_squared_error(y_true: Any, y_pred: Any) -> float:
    """``√((1/n) Σ (y − ŷ)²)`` per output, averaged over outputs for (n, k) targets (as
    scikit-learn's ``root_mean_squared_error``).

    Parameters
    ----------
    y_true, y_pred : array of shape (n,) or (n, k)
    """
    y, yhat = check_regression_targets(y_true, y_pred)
    return float(np.mean(np.sqrt(np.mean((y - yhat) ** 2, axis=0))))


def _r2_per_output(y: np.ndarray, yhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R² per output and whether the target was constant there (where R² is 0/0)."""
    y2, yhat2 = y.reshape(y.shape[0], -1), yhat.reshape(y.shape[0], -1)
    ss_res = ((y2 - yhat2) ** 2).sum(axis=0)
    ss_tot = ((y2 - np.mean(y2, axis=0)) ** 2).sum(axis=0)
    constant = ss_tot == 0
    r2 = np.where(constant, np.where(ss_res == 0, 1.0, 0.0), 0.0)
    np.subtract(1.0, ss_res / np.where(constant, 1.0, ss_tot), out=r2, where=~constant)
    return r2, constant


def r2_score(y_true: Any, y_pred: Any) -> float:
    """The coefficient of determination ``1 − Σ(y − ŷ)² / Σ(y − ȳ)²``, averaged over outputs.

    For a constant target (the denominator 0) it is, as in scikit-learn, 1.0 when the prediction
    is perfect and 0.0 otherwise.

    Parameters
    ----------
    y_true, y_pred : array of shape (n,) or (n, k)
    """
    y, yhat = check_regression_targets(y_true, y_pred)
    return float(np.mean(_r2_per_output(y, yhat)[0]))


def regression_scores(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """MAE, MSE, RMSE and R² with the notes on anything undefined.

    Parameters
    ----------
    y_true, y_pred : array of shape (n,) or (n, k)

    Returns
    -------
    dict
        ``"mae"``, ``"mse"``, ``"rmse"``, ``"r2"`` (floats) and ``"undefined"`` (a list of sentences).
    """
    y, yhat = check_regression_targets(y_true, y_pred)
    _, constant = _r2_per_output(y, yhat)
    undefined = []
    if constant.any():
        undefined.append(
            "R² is 0/0 for a constant target; set to 1.0 for a perfect prediction and 0.0 "
            "otherwise, as scikit-learn does"
        )
    return {
        "mae": mean_absolute_error(y, yhat),
        "mse": mean_squared_error(y, yhat),
        "rmse": root_mean_squared_error(y, yhat),
        "r2": r2_score(y, yhat),
        "undefined": undefined,
    }
