"""What the commands share: output paths checked before any work, model files read as models, data
read by the model's column names, label cells read as the model's classes, and the metrics and
tables the commands print.

Nothing here transforms inputs or outputs: scaling, labels and target units belong to the model
(:meth:`~matnet.model.Sequential.predict`, :meth:`~matnet.model.Sequential.encode_targets`). The
command line only parses text into what the model takes and formats what it returns.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from matnet import datasets, metrics
from matnet.errors import CellError, DataError, UsageError
from matnet.io import excerpt_text, load, load_tensors
from matnet.layers import Standardize
from matnet.losses import Loss
from matnet.model import Sequential

EXIT_USAGE = 2


def shown(value: Any, limit: int | None = 60) -> str:
    """A label, column name or other text from a model file as it may be printed: control
    characters and terminal escape sequences escaped (``\\x1b[31m``), cut to ``limit``."""
    return excerpt_text(str(value), limit)


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


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same inode where both exist (through links, ``..``
    and symbolic links), else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def refuse_overwriting_inputs(
    outputs: dict[str, str | None], inputs: dict[str, str | None]
) -> None:
    """Fail now if an output path (by option) names an existing input file (by role): writing it
    would replace the data or the model the command reads."""
    for option, out in outputs.items():
        for role, path in inputs.items():
            if out is not None and path is not None and os.path.exists(path):
                if same_file(out, path):
                    raise UsageError(
                        f"{option} {out} names the {role} {path}, which this command reads; "
                        "writing it would replace that input: give another path"
                    )


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


def model_info(path: str) -> dict[str, Any]:
    """What ``matnet info`` shows, as JSON values: the file, the task, the inputs, the layers, the
    loss, the parameter count and the training record (``GET /model`` of ``matnet serve``)."""
    tensors, raw = load_tensors(path)
    model = load_model(path)
    classifier = is_classifier(model)
    return {
        "file": {
            "path": path,
            "format_version": raw.get("format_version"),
            "matnet_version": raw.get("matnet_version"),
            "size_bytes": os.path.getsize(path),
            "sha256": raw.get("matnet.sha256"),
        },
        "task": "classification" if classifier else "regression",
        "target": target_name(model),
        "classes": class_labels(model) if classifier else None,
        "features": model.feature_names,
        "n_features": model.n_features,
        "n_outputs": model.n_outputs,
        "input_scaling": has_input_scaling(model),
        "architecture": model.config()["layers"],
        "summary": model.summary(print_fn=None).splitlines(),
        "loss": loss_of(model).name,
        "dtype": np.dtype(model.dtype).name,
        "n_params": model.n_params,
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()},
        "training": model.metadata.get("training"),
        "metrics": model.metadata.get("metrics"),
    }


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
    target = target or target_name(model)
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
    check_width(model, table, spec)
    if model.takes_table:
        try:  # every cell read now, so that an error names the file's line
            model.input_matrix(table.X, finite=False)
        except CellError as exc:
            raise DataError(
                f"{table.where(exc.row)}, column {exc.column!r}: {exc.reason}"
            ) from None
    return table


def check_width(model: Sequential, table: datasets.Table, spec: str) -> None:
    """A table read for ``model`` has exactly its number of feature columns."""
    if table.X.shape[1] != model.n_features:
        hint = (
            ""
            if model.feature_names
            else " (the model stores no feature names, so every column but the target is one)"
        )
        raise UsageError(
            f"{spec} has {table.X.shape[1]} feature columns but the model expects "
            f"{model.n_features}{hint}"
        )


def target_name(model: Sequential) -> str | None:
    """The column ``matnet train`` learned (kept in the file's user metadata), if any."""
    name = model.metadata.get("target")
    return name if isinstance(name, str) and name else None


def output_name(model: Sequential) -> str:
    return target_name(model) or "prediction"


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
    values = np.asarray(model.predict(X), dtype=np.float64)
    return values.reshape(values.shape[0], -1)


# --- metrics and tables ------------------------------------------------------------------------


def _label_array(model: Sequential, indices: np.ndarray) -> np.ndarray:
    """The model's own labels at ``indices``, as objects (so labels of any JSON type keep theirs)."""
    labels = np.empty(len(class_labels(model)), dtype=object)
    labels[:] = class_labels(model)
    return labels[indices]


def classification_report(model: Sequential, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Every classification metric of :func:`matnet.metrics.classification_scores` for class
    indices ``y``, from the model's probabilities and its own decisions."""
    return metrics.classification_scores(
        _label_array(model, y),
        class_proba(model, X),
        class_labels(model),
        y_pred=_label_array(model, predicted_indices(model, X)),
    )


def classification_metrics(model: Sequential, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy, log-loss and the confusion matrix for class indices ``y``."""
    report = classification_report(model, X, y)
    return {
        "accuracy": report["accuracy"],
        "log_loss": report["log_loss"],
        "confusion_matrix": np.asarray(report["confusion_matrix"], dtype=np.int64),
    }


def regression_report(model: Sequential, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """MAE, MSE, RMSE and R² in the target's own units, with notes on anything undefined, and
    the predictions they were computed from (``"predicted"``, shape (n,))."""
    pred = predicted_values(model, X)
    if pred.shape[1] != 1:
        raise UsageError(
            f"the model predicts {pred.shape[1]} values per row; the command line scores one "
            "target column"
        )
    return {**metrics.regression_scores(y, pred[:, 0]), "predicted": pred[:, 0]}


def regression_metrics(model: Sequential, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² in the target's own units."""
    report = regression_report(model, X, y)
    return {key: report[key] for key in ("mse", "rmse", "mae", "r2")}


def format_metrics(values: dict[str, Any]) -> str:
    names = {
        "accuracy": "accuracy",
        "log_loss": "log-loss",
        "mse": "MSE",
        "rmse": "RMSE",
        "mae": "MAE",
        "r2": "R²",
    }
    return "  ".join(
        f"{names[k]} {v:.4f}" for k, v in values.items() if k in names and isinstance(v, float)
    )


def per_class_table(report: dict[str, Any]) -> str:
    """Precision, recall, F1 and support per class and their averages, as aligned text."""
    rows = [(shown(c["label"], 20), c) for c in report["classes"]]
    rows += [("macro avg", report["macro_avg"]), ("weighted avg", report["weighted_avg"])]
    width = max(12, *(len(name) for name, _ in rows))
    lines = [f"{'class':>{width}}  precision  recall      F1  support"]
    for i, (name, row) in enumerate(rows):
        if i == len(report["classes"]):
            lines.append("")
        lines.append(
            f"{name:>{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}"
            f"  {row['support']:7d}"
        )
    return "\n".join(lines)


def roc_auc_text(auc: dict[str, Any]) -> str:
    if auc["value"] is None:
        return "ROC-AUC undefined"
    return f"ROC-AUC {auc['value']:.4f}"


def roc_auc_how(auc: dict[str, Any], n_classes: int) -> str:
    """How the ROC-AUC was averaged, in words."""
    if auc["value"] is None:
        return ""
    if auc["average"] == "binary":
        return f"ROC-AUC of class {auc['classes'][0]!r} against the other"
    return f"ROC-AUC: one-vs-rest, macro average over {len(auc['classes'])} of {n_classes} classes"


def confusion_table(matrix: np.ndarray, labels: list[str]) -> str:
    shown = [label[:12] for label in labels]
    width = max(max(len(s) for s in shown), len(str(int(matrix.max(initial=0)))), 4)
    head = " " * (width + 2) + " ".join(s.rjust(width) for s in shown)
    rows = [
        shown[i].rjust(width) + "  " + " ".join(str(int(c)).rjust(width) for c in matrix[i])
        for i in range(len(labels))
    ]
    return "\n".join([head, *rows])


# A cell a spreadsheet would run as a formula starts with one of these (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(text: str) -> str:
    """A predictions-file cell that neither drives a terminal nor runs in a spreadsheet: control
    characters are escaped, and text starting with ``= + - @``, tab or carriage return gets a
    leading ``'`` (OWASP's advice), unless it is a plain number such as ``-1.5`` or ``-1``."""
    text = shown(text, limit=None)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_text(header: list[str], columns: list[list[str]]) -> str:
    """The predictions as CSV text, every cell through :func:`csv_cell`."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_cell(cell) for cell in header])
    writer.writerows([csv_cell(cell) for cell in row] for row in zip(*columns, strict=True))
    return buffer.getvalue()
