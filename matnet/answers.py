"""A saved model's answers, for every front end that reads model files (``matnet predict``,
``evaluate``, ``info`` and ``matnet serve``): the file loaded as a model that can answer, rows read
by the model's column names (a table model's cells read now, so an error names the file's line), and
its decisions, probabilities and values in the forms the front ends print or send.

Nothing here transforms inputs or outputs: scaling, labels and target units belong to the model
(:mod:`matnet.task`); this module only reads files and arranges what the model returns.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from matnet import datasets
from matnet.errors import CellError, DataError, UsageError
from matnet.io import load, load_tensors
from matnet.layers import Standardize
from matnet.losses import Loss
from matnet.model import Sequential

__all__ = [
    "check_width",
    "class_indices",
    "class_labels",
    "class_proba",
    "decisions",
    "has_input_scaling",
    "is_classifier",
    "label_values",
    "load_model",
    "loss_of",
    "model_info",
    "note",
    "note_unscaled",
    "output_name",
    "predicted_indices",
    "predicted_values",
    "read_for_model",
    "target_name",
]


def note(text: str) -> None:
    """One line on stderr that is not an error (stdout may be a CSV file being piped)."""
    print(f"note: {text}", file=sys.stderr, flush=True)


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
        "columns": model.metadata.get("columns"),
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
