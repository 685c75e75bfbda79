"""What the commands share: output paths checked before any work, and the metrics and tables the
commands print. Model files and the rows read for them are :mod:`matnet.answers`' (which
``matnet serve`` reads through too: no front end imports another).

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

from matnet import metrics
from matnet.answers import class_labels, class_proba, predicted_indices, predicted_values
from matnet.errors import UsageError
from matnet.io import excerpt_text
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
    """The confusion matrix as text. Labels of up to 12 characters head the columns; longer ones
    (``penguin_species_Adelie``) would be cut into the same text, so then each class gets a key
    (``[1]``) that heads its column and stands before its full label on its row."""
    count = len(str(int(matrix.max(initial=0))))
    if max((len(label) for label in labels), default=0) <= 12:
        width = max(max((len(s) for s in labels), default=0), count, 4)
        head = " " * (width + 2) + " ".join(s.rjust(width) for s in labels)
        rows = [
            labels[i].rjust(width) + "  " + " ".join(str(int(c)).rjust(width) for c in matrix[i])
            for i in range(len(labels))
        ]
        return "\n".join([head, *rows])
    keys = [f"[{i + 1}]" for i in range(len(labels))]
    names = [f"{key} {label}" for key, label in zip(keys, labels, strict=True)]
    left = max(len(name) for name in names)
    width = max(max(len(k) for k in keys), count, 4)
    head = " " * (left + 2) + " ".join(k.rjust(width) for k in keys)
    rows = [
        names[i].ljust(left) + "  " + " ".join(str(int(c)).rjust(width) for c in matrix[i])
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
