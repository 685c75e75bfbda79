"""Training curves, confusion matrices and predicted-against-actual plots as PNG files, with matplotlib (the ``plot`` extra).

matplotlib is imported inside each function, with the non-interactive Agg backend, so ``import matnet``
never needs it. Images are rendered in memory and written with :func:`matnet.io.atomic_write`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from matnet.io import atomic_write

__all__ = [
    "require_matplotlib",
    "plot_history",
    "plot_confusion_matrix",
    "history_png",
    "confusion_matrix_png",
    "plot_regression",
    "regression_png",
]

INSTALL_HINT = "pip install 'matnet[plot]'"


def require_matplotlib() -> Any:
    """Import matplotlib with the Agg backend and return ``matplotlib.pyplot``.

    Raises
    ------
    ImportError
        When matplotlib is not installed; the message names the extra to install.
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"plotting needs matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any, tight: bool = False) -> bytes:
    plt = require_matplotlib()
    buffer = io.BytesIO()
    try:
        # tight: the box grows to what the figure drew (nothing cut off), so the size varies
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight" if tight else None)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def plot_history(history: Any, path: str | os.PathLike, *, title: str = "") -> None:
    """Write training curves to a PNG: the loss (train and validation) and the validation metric
    against the epoch.

    Parameters
    ----------
    history : matnet.History
    path : str or path-like
    title : str
    """
    atomic_write(path, history_png(history, title=title))


def plot_confusion_matrix(
    matrix: np.ndarray, labels: Sequence[str], path: str | os.PathLike, *, title: str = ""
) -> None:
    """Write a confusion matrix (rows: true class, columns: predicted class) to a PNG.

    Parameters
    ----------
    matrix : ndarray of shape (k, k), integer counts
    labels : sequence of str, length k
    path : str or path-like
    title : str
    """
    atomic_write(path, confusion_matrix_png(matrix, labels, title=title))


def history_png(history: Any, *, title: str = "") -> bytes:
    """The PNG bytes of :func:`plot_history`."""
    plt = require_matplotlib()
    records = history.records
    if not records:
        raise ValueError("the history is empty: nothing to plot")
    epochs = [r["epoch"] for r in records]
    metric = next((k for k in records[-1] if k.startswith("val_") and k != "val_loss"), None)
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(10 if metric else 6, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(epochs, [r["loss"] for r in records], label="train")
    if "val_loss" in records[-1]:
        ax.plot(epochs, [r["val_loss"] for r in records], label="validation")
    best = getattr(history, "best_epoch", None)
    if best is not None:
        ax.axvline(best, color="grey", linestyle=":", label=f"best epoch {best}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.legend()
    if metric:
        ax = axes[0, 1]
        ax.plot(epochs, [r[metric] for r in records], label="validation", color="C1")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric[4:])
        ax.set_title(metric[4:])
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def tick_labels(labels: Sequence[Any]) -> list[str]:
    """Class labels for a plot's ticks: in full, wrapped at 26 characters (never cut)."""
    import textwrap

    return [textwrap.fill(str(label), 26, break_long_words=True) for label in labels]


def confusion_matrix_png(
    matrix: np.ndarray,
    labels: Sequence[str],
    *,
    title: str = "",
    calibration: dict[str, Any] | None = None,
) -> bytes:
    """The PNG bytes of :func:`plot_confusion_matrix`; with ``calibration`` (the dict of
    :func:`matnet.metrics.calibration`) a reliability diagram beside it."""
    if calibration is not None:
        return _with_reliability(matrix, labels, title, calibration)
    import textwrap

    plt = require_matplotlib()
    matrix = np.asarray(matrix)
    size = _confusion_size(matrix, labels)
    fig, ax = plt.subplots(figsize=(size, size))
    image = _draw_confusion(ax, matrix, labels)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(textwrap.fill(title or "confusion matrix", 60))
    fig.tight_layout()
    return _png(fig)


def _confusion_size(matrix: np.ndarray, labels: Sequence[str]) -> float:
    """The side of a confusion matrix's figure: grows with the classes and the longest label."""
    longest = max((len(line) for w in tick_labels(labels) for line in w.splitlines()), default=1)
    return min(4 + 0.5 * matrix.shape[0] + 0.08 * longest, 16)


def _draw_confusion(ax: Any, matrix: np.ndarray, labels: Sequence[str]) -> Any:
    """The counts as a heatmap on ``ax``, every label in full (wrapped), each cell numbered."""
    k = matrix.shape[0]
    wrapped = tick_labels(labels)
    longest = max((len(line) for w in wrapped for line in w.splitlines()), default=1)
    image = ax.imshow(matrix, cmap="Blues")
    rotate = k > 3 or longest > 8
    ax.set_xticks(range(k), labels=wrapped, rotation=45 if rotate else 0,
                  ha="right" if rotate else "center", rotation_mode="anchor")  # fmt: skip
    ax.set_yticks(range(k), labels=wrapped)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(k):
            for j in range(k):
                color = "white" if matrix[i, j] > threshold else "black"
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=color)
    return image


def _with_reliability(
    matrix: np.ndarray, labels: Sequence[str], title: str, calibration: dict[str, Any]
) -> bytes:
    """The confusion matrix and, beside it, the reliability diagram: each bin's accuracy against
    its mean top probability (the diagonal is perfect calibration), bars sized by its rows."""
    import textwrap

    plt = require_matplotlib()
    matrix = np.asarray(matrix)
    size = min(_confusion_size(matrix, labels), 12)
    fig, (ax, rel) = plt.subplots(1, 2, figsize=(size + 5.5, size))
    _draw_confusion(ax, matrix, labels)
    ax.set_title("confusion matrix")
    bins = calibration["bins"]
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    width = 1.0 / calibration["n_bins"]
    rel.bar(centres, [b["accuracy"] for b in bins], width=width * 0.9, color="#4c72b0",
            alpha=0.8, label="accuracy in the bin")  # fmt: skip
    rel.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="black",
             label="(mean confidence, accuracy)")  # fmt: skip
    rel.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    for b, x in zip(bins, centres, strict=True):
        rel.text(x, 0.02, str(b["count"]), ha="center", va="bottom", fontsize=7, rotation=90)
    rel.set_xlim(0, 1)
    rel.set_ylim(0, 1.02)
    rel.set_xlabel("top probability (confidence)")
    rel.set_ylabel("accuracy")
    rel.set_title(f"reliability: ECE {calibration['ece']:.3f}")
    rel.legend(loc="upper left", fontsize=8)
    fig.suptitle(textwrap.fill(title or "evaluation", 90))
    fig.tight_layout()
    return _png(fig, tight=True)


def plot_regression(
    y_true: np.ndarray, y_pred: np.ndarray, path: str | os.PathLike, *, title: str = ""
) -> None:
    """Write a regressor's predictions against the actual values, and the residuals against the
    predictions, to a PNG.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n,)
    path : str or path-like
    title : str
    """
    atomic_write(path, regression_png(y_true, y_pred, title=title))


def regression_png(y_true: np.ndarray, y_pred: np.ndarray, *, title: str = "") -> bytes:
    """The PNG bytes of :func:`plot_regression`."""
    plt = require_matplotlib()
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(
            f"y_true has {y_true.size} values and y_pred {y_pred.size}; give one prediction per row"
        )
    # Many rows would hide each other as solid dots; fade them as the count grows.
    alpha = float(np.clip(30 / np.sqrt(y_true.size), 0.15, 0.8))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    ax = axes[0]
    ax.scatter(y_true, y_pred, s=12, alpha=alpha)
    low = float(min(y_true.min(), y_pred.min()))
    high = float(max(y_true.max(), y_pred.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="predicted = actual")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("predicted against actual")
    ax.legend()
    ax = axes[1]
    ax.scatter(y_pred, y_true - y_pred, s=12, alpha=alpha, color="C1")
    ax.axhline(0.0, color="grey", linestyle="--")
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (actual − predicted)")
    ax.set_title("residuals")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)
