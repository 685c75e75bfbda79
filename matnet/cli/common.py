"""What the commands share: output paths checked before any work, model files read as models, data
read by the model's column names, label cells read as the model's classes, and the metrics and
tables the commands print.

Nothing here transforms inputs or outputs: scaling, labels and target units belong to the model
(:meth:`~matnet.model.Sequential.predict`, :meth:`~matnet.model.Sequential.encode_targets`). The
command line only parses text into what the model takes and formats what it returns.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from matnet import datasets
from matnet.errors import UsageError
from matnet.io import load
from matnet.layers import Standardize
from matnet.losses import Loss
from matnet.model import Sequential

EXIT_USAGE = 2


def say(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    """One line on stderr that is not an error (stdout may be a CSV file being piped)."""
    print(f"note: {text}", file=sys.stderr, flush=True)


def size_text(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def check_writable(path: str | os.PathLike, what: str) -> None:
    """Fail now, before any work, if ``path`` could not be written later."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise UsageError(f"cannot write {what} {path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"cannot write {what} {path}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(probe)


def plot_requested(path: str | None) -> None:
    if path is None:
        return
    from matnet.plots import require_matplotlib

    require_matplotlib()  # a missing extra is reported before any work
    check_writable(path, "plot")


# --- the model and the data it reads -----------------------------------------------------------


def load_model(path: str) -> Sequential:
    """A model file that can answer: any damage or inconsistency is the loader's one-line error."""
    model = load(path)
    loss_of(model, path)
    return model


def loss_of(model: Sequential, path: str = "the model") -> Loss:
    """The model's loss, which says its task and how to read its outputs."""
    if model.loss is None:
        raise UsageError(f"{path}: the model has no loss, so its outputs cannot be interpreted")
    return model.loss


def is_classifier(model: Sequential) -> bool:
    return model.loss is not None and model.loss.task == "classification"


def has_input_scaling(model: Sequential) -> bool:
    return model.takes_table or any(isinstance(layer, Standardize) for layer in model.layers)


def note_unscaled(model: Sequential, path: str) -> None:
    """Say so when raw columns go into a network that may have been trained on scaled ones (the
    Python API on pre-standardized X): its scores would otherwise be silently poor."""
    if not has_input_scaling(model):
        note(
            f"{path} has no input scaling layer; the data's columns go into the network as they are"
        )


def class_labels(model: Sequential) -> list[Any]:
    """The classes a classifier's decisions stand for: its own labels, or the indices 0..k-1."""
    k = 2 if model.n_outputs == 1 else model.n_outputs
    if model.classes is not None and len(model.classes) == k:
        return list(model.classes)
    return list(range(k))


def read_for_model(
    model: Sequential,
    spec: str,
    target: str | None,
    need_target: bool,
    encoding: str = "utf-8-sig",
) -> datasets.Table:
    """The model's feature columns (by name when the model knows them) and, if present, the target;
    raw cells (text, gaps) for a table model."""
    features = model.feature_names
    target = target or _target_name(model)
    if not datasets.is_dataset_name(spec) and need_target and target is None:
        raise UsageError("give the target column with --target NAME")
    if datasets.is_dataset_name(spec):
        table = datasets.load_data(spec, features=features)
    else:
        table = datasets.read_csv(
            spec,
            target,
            require_target=need_target,
            features=features,
            raw=model.takes_table,
            encoding=encoding,
        )
    if table.X.shape[1] != model.n_features:
        hint = (
            ""
            if features
            else " (the model stores no feature names, so every column but the target is one)"
        )
        raise UsageError(
            f"{spec} has {table.X.shape[1]} feature columns but the model expects "
            f"{model.n_features}{hint}"
        )
    return table


def _target_name(model: Sequential) -> str | None:
    """The column ``matnet train`` learned (kept in the file's user metadata), if any."""
    name = model.metadata.get("target")
    return name if isinstance(name, str) and name else None


def output_name(model: Sequential) -> str:
    return _target_name(model) or "prediction"


def class_indices(model: Sequential, table: datasets.Table) -> np.ndarray:
    """Each row's target cell as the index of the model's class it names (``"1.0"`` names the class
    ``1``); a label the model does not know is an error naming its line."""
    labels = class_labels(model)
    lookup = {datasets.canonical_label(label): i for i, label in enumerate(labels)}
    keys = [datasets.canonical_label(v) for v in table.target()]
    unknown = sorted({key for key in keys if key not in lookup})
    if unknown:
        i = keys.index(unknown[0])
        shown = ", ".join(map(str, labels[:12])) + (", ..." if len(labels) > 12 else "")
        raise UsageError(
            f"{table.where(i)}, column {table.target_name!r}: label {unknown[0]!r} is not one of "
            f"the model's classes ({shown})"
        )
    return np.asarray([lookup[key] for key in keys], dtype=np.intp)


def label_values(model: Sequential, indices: np.ndarray) -> np.ndarray:
    """The model's class labels at ``indices``: what :meth:`~matnet.model.Sequential.encode_targets`
    and :meth:`~matnet.model.Sequential.evaluate` take as targets."""
    return np.asarray(class_labels(model))[indices]


def decisions(model: Sequential, X: np.ndarray) -> np.ndarray:
    """The model's answer for each row: one class label (:meth:`Sequential.predict`)."""
    predicted = np.asarray(model.predict(X))
    if predicted.ndim != 1:
        raise UsageError(
            f"the model makes {model.n_outputs} independent yes/no decisions per row "
            "(multi-label), which the command line cannot write as one class; use "
            "matnet.load(MODEL).predict(X) in Python"
        )
    return predicted


def class_proba(model: Sequential, X: np.ndarray) -> np.ndarray:
    """Probabilities of shape (n, k), a column per class in the order of :func:`class_labels`."""
    P = model.predict_proba(X).astype(np.float64)
    if P.shape[1] == 1:  # one sigmoid output: the probability of the second class
        return np.column_stack([1 - P[:, 0], P[:, 0]])
    return P


def predicted_indices(model: Sequential, X: np.ndarray) -> np.ndarray:
    lookup = {label: i for i, label in enumerate(class_labels(model))}
    return np.asarray([lookup[v] for v in decisions(model, X).tolist()], dtype=np.intp)


def predicted_values(model: Sequential, X: np.ndarray) -> np.ndarray:
    """A regressor's predictions in the target's own units, shape (n, n_outputs)."""
    return np.asarray(model.predict(X), dtype=np.float64).reshape(X.shape[0], -1)


# --- metrics and tables ------------------------------------------------------------------------


def classification_metrics(model: Sequential, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy, log-loss and the confusion matrix for class indices ``y``."""
    k = len(class_labels(model))
    predicted = predicted_indices(model, X)
    log_loss = model.evaluate(X, label_values(model, y))["loss"]
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (y, predicted), 1)
    return {
        "accuracy": float(np.mean(predicted == y)),
        "log_loss": float(log_loss),
        "confusion_matrix": matrix,
    }


def regression_metrics(model: Sequential, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """MSE, MAE and R² in the target's own units."""
    pred = predicted_values(model, X)
    if pred.shape[1] != 1:
        raise UsageError(
            f"the model predicts {pred.shape[1]} values per row; the command line scores one "
            "target column"
        )
    residual = pred[:, 0] - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "mse": float(np.mean(residual**2)),
        "mae": float(np.mean(np.abs(residual))),
        "r2": 1 - float(np.sum(residual**2)) / ss_tot if ss_tot > 0 else 0.0,
    }


def format_metrics(metrics: dict[str, Any]) -> str:
    names = {"accuracy": "accuracy", "log_loss": "log-loss", "mse": "MSE", "mae": "MAE", "r2": "R²"}
    return "  ".join(
        f"{names[k]} {v:.4f}" for k, v in metrics.items() if k in names and isinstance(v, float)
    )


def confusion_table(matrix: np.ndarray, labels: list[str]) -> str:
    shown = [label[:12] for label in labels]
    width = max(max(len(s) for s in shown), len(str(int(matrix.max(initial=0)))), 4)
    head = " " * (width + 2) + " ".join(s.rjust(width) for s in shown)
    rows = [
        shown[i].rjust(width) + "  " + " ".join(str(int(c)).rjust(width) for c in matrix[i])
        for i in range(len(labels))
    ]
    return "\n".join([head, *rows])


def csv_text(header: list[str], columns: list[list[str]]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*columns, strict=True))
    return buffer.getvalue()
