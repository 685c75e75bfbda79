"""The ``matnet`` command: train, predict, evaluate, info, gradcheck, explain, datasets.

Every user error (a missing file, a bad cell, a wrong option, a model file of another kind, an output
path that cannot be written) prints one line to stderr and exits with status 2, before any output file is
touched: inputs and output paths are checked first, results are computed in memory, and files are
written last with :func:`matnet.io.atomic_write`. Set ``MATNET_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matnet import datasets, distributed
from matnet.errors import MatnetError, ModelFileError, UsageError
from matnet.io import atomic_write, load, model_bytes
from matnet.losses import BinaryCrossEntropy, MeanSquaredError, SoftmaxCrossEntropy
from matnet.model import MLP, Sequential
from matnet.optim import OPTIMIZER_NAMES

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2
MAX_CLASSES_FROM_NUMBERS = (
    20  # a whole-number target with at most this many values is a class label
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --- argument types --------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value >= 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a non-negative number")
    return value


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in [0, 1)")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a non-negative integer")
    return value


def _sizes(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()] if text.strip() else []
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of widths such as 256,128"
        ) from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: every width must be at least 1")
    return sizes


def _hidden(text: str) -> list[int]:
    if text.strip() in ("", "none", "0"):
        return []
    return _sizes(text)


# --- helpers ---------------------------------------------------------------------------------


def _say(text: str = "") -> None:
    print(text, flush=True)


def _size(n: int) -> str:
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


def _load_model(path: str) -> Sequential:
    model = load(path)
    if model.loss is None:
        raise UsageError(f"{path}: the model has no loss, so its outputs cannot be interpreted")
    _check_metadata(model, path)
    return model


def _is_numbers(value: Any, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
    )


def _check_metadata(model: Sequential, path: str) -> None:
    """The command line's own metadata (written by ``matnet train``) must fit the network."""
    meta, d = model.metadata, model.n_features

    def bad(key: str, problem: str) -> ModelFileError:
        return ModelFileError(f"{path}: metadata {key!r} {problem}")

    if "task" in meta and meta["task"] not in ("classification", "regression"):
        raise bad("task", f"is {meta['task']!r}, not classification or regression")
    features = meta.get("features")
    if features is not None and not (
        isinstance(features, list)
        and len(features) == d
        and all(isinstance(f, str) for f in features)
    ):
        raise bad("features", f"must be {d} column names, one per input")
    labels = meta.get("labels")
    if labels is not None:
        k = 2 if isinstance(model.loss, BinaryCrossEntropy) else model.n_outputs
        if not (isinstance(labels, list) and len(labels) == k):
            raise bad("labels", f"must list {k} class names, one per output")
    scaler = meta.get("scaler")
    if scaler is not None:
        if not (
            isinstance(scaler, dict)
            and _is_numbers(scaler.get("mean"), d)
            and _is_numbers(scaler.get("scale"), d)
            and all(v != 0 for v in scaler["scale"])
        ):
            raise bad(
                "scaler", f"must hold finite 'mean' and non-zero 'scale' lists of {d} numbers"
            )
    target_scaler = meta.get("target_scaler")
    if target_scaler is not None:
        if not (
            isinstance(target_scaler, dict)
            and _is_numbers([target_scaler.get("mean"), target_scaler.get("scale")], 2)
            and target_scaler["scale"] != 0
        ):
            raise bad("target_scaler", "must hold a finite 'mean' and a non-zero 'scale'")


def _task_of(model: Sequential) -> str:
    task = model.metadata.get("task")
    if task in ("classification", "regression"):
        return task
    return "regression" if isinstance(model.loss, MeanSquaredError) else "classification"


def _labels_of(model: Sequential) -> list[str]:
    labels = model.metadata.get("labels")
    if isinstance(labels, list) and labels:
        return [str(label) for label in labels]
    k = 2 if isinstance(model.loss, BinaryCrossEntropy) else model.n_outputs
    return [str(i) for i in range(k)]


def _standardize(model: Sequential, X: np.ndarray) -> np.ndarray:
    scaler = model.metadata.get("scaler")
    if not scaler:
        return X
    return (X - np.asarray(scaler["mean"])) / np.asarray(scaler["scale"])  # checked at load


def _class_proba(model: Sequential, X: np.ndarray) -> np.ndarray:
    """Probabilities of shape (n, k) in the order of the model's labels."""
    P = model.predict_proba(X).astype(np.float64)
    if isinstance(model.loss, BinaryCrossEntropy) and P.shape[1] == 1:
        return np.column_stack([1 - P[:, 0], P[:, 0]])
    return P


def _regress(model: Sequential, X: np.ndarray) -> np.ndarray:
    Z = model.predict(X).astype(np.float64)
    scaler = model.metadata.get("target_scaler")
    if scaler:
        Z = Z * float(scaler["scale"]) + float(scaler["mean"])
    return Z


def _read_for_model(
    model: Sequential, spec: str, target: str | None, need_target: bool
) -> datasets.Table:
    """The model's feature columns (by name when the model knows them) and, if present, the target."""
    features = model.metadata.get("features")
    target = target or model.metadata.get("target")
    if not datasets.is_dataset_name(spec) and need_target and target is None:
        raise UsageError("give the target column with --target NAME")
    if datasets.is_dataset_name(spec):
        table = datasets.load_data(spec, features=features)
    else:
        table = datasets.read_csv(spec, target, require_target=need_target, features=features)
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


def _class_indices(model: Sequential, table: datasets.Table) -> np.ndarray:
    labels = _labels_of(model)
    numeric = all(datasets.is_number(label) for label in labels)
    y = datasets.canonical_labels(table.y, numeric)
    lookup = {label: i for i, label in enumerate(labels)}
    unknown = sorted({v for v in y.tolist() if v not in lookup})
    if unknown:
        i = int(np.flatnonzero(y == unknown[0])[0])
        shown = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
        raise UsageError(
            f"{table.where(i)}, column {table.target_name!r}: label {unknown[0]!r} is not one of "
            f"the model's classes ({shown})"
        )
    return np.asarray([lookup[v] for v in y.tolist()], dtype=np.intp)


def _classification_metrics(model: Sequential, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    P = _class_proba(model, X)
    k = P.shape[1]
    predicted = np.argmax(P, axis=1)
    Z = model.logits(X)
    target = y if not isinstance(model.loss, BinaryCrossEntropy) else y.reshape(-1, 1)
    log_loss, _ = model.loss(Z, model.loss.encode_targets(target, model.n_outputs, model.dtype))
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (y, predicted), 1)
    return {
        "accuracy": float(np.mean(predicted == y)),
        "log_loss": float(log_loss),
        "confusion_matrix": matrix,
    }


def _regression_metrics(model: Sequential, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = _regress(model, X).reshape(y.shape[0], -1)
    Y = y.reshape(pred.shape)
    residual = pred - Y
    ss_tot = float(np.sum((Y - Y.mean(axis=0)) ** 2))
    return {
        "mse": float(np.mean(residual**2)),
        "mae": float(np.mean(np.abs(residual))),
        "r2": 1 - float(np.sum(residual**2)) / ss_tot if ss_tot > 0 else 0.0,
    }


def _format_metrics(metrics: dict[str, Any]) -> str:
    names = {"accuracy": "accuracy", "log_loss": "log-loss", "mse": "MSE", "mae": "MAE", "r2": "R²"}
    return "  ".join(
        f"{names[k]} {v:.4f}" for k, v in metrics.items() if k in names and isinstance(v, float)
    )


def _confusion_table(matrix: np.ndarray, labels: list[str]) -> str:
    shown = [label[:12] for label in labels]
    width = max(max(len(s) for s in shown), len(str(int(matrix.max(initial=0)))), 4)
    head = " " * (width + 2) + " ".join(s.rjust(width) for s in shown)
    rows = [
        shown[i].rjust(width) + "  " + " ".join(str(int(c)).rjust(width) for c in matrix[i])
        for i in range(len(labels))
    ]
    return "\n".join([head, *rows])


def _plot_requested(path: str | None) -> None:
    if path is None:
        return
    from matnet.plots import require_matplotlib

    require_matplotlib()  # a missing extra is reported before any work
    check_writable(path, "plot")


# --- train -----------------------------------------------------------------------------------


def _choose_task(args: argparse.Namespace, table: datasets.Table) -> str:
    if args.task is not None:
        return args.task
    if table.task is not None:
        return table.task
    if args.loss in ("binary_cross_entropy", "cross_entropy"):
        return "classification"
    if args.loss == "mse":
        return "regression"
    y = table.y
    if not datasets.is_integer_valued(y):
        try:
            np.asarray(y).astype(np.float64)
        except ValueError:
            return "classification"  # text labels
        return "regression"
    n_unique = np.unique(np.asarray(y).astype(np.float64)).size
    return "classification" if n_unique <= MAX_CLASSES_FROM_NUMBERS else "regression"


def cmd_train(args: argparse.Namespace) -> int:
    # 1. Everything that can be checked without training: options, data, output paths, extras.
    table = datasets.load_data(args.data, args.target)
    task = _choose_task(args, table)
    loss = args.loss or ("cross_entropy" if task == "classification" else "mse")
    if (task == "classification") != (loss != "mse"):
        raise UsageError(
            f"--loss {loss} does not fit {table.source}, a {task} task "
            f"({'cross_entropy or binary_cross_entropy' if task == 'classification' else 'mse'} does)"
        )
    check_writable(args.out, "model file")
    if args.checkpoint is not None:
        check_writable(args.checkpoint, "checkpoint")
        if Path(args.checkpoint).resolve() == Path(args.out).resolve():
            raise UsageError("--checkpoint and --out name the same file")
    elif args.resume or args.checkpoint_every is not None:
        raise UsageError("--resume and --checkpoint-every need --checkpoint PATH")
    _plot_requested(args.plot)
    # None, or the MPI ranks of `mpiexec -n K matnet train ... --distributed` (stdout muted on
    # ranks above 0); a missing mpi4py is one line naming matnet[mpi].
    comm = distributed.cli_setup(args.distributed)
    if args.plot is not None and Path(args.plot).resolve() == Path(args.out).resolve():
        raise UsageError("--plot and --out name the same file")

    X = table.X
    n = X.shape[0]
    metadata: dict[str, Any] = {
        "task": task,
        "features": table.feature_names,
        "target": table.target_name,
    }
    if task == "classification":
        y, labels = datasets.encode_labels(table.y)
        if len(labels) < 2:
            raise UsageError(
                f"{table.source}: the target {table.target_name!r} has a single class "
                f"({labels[0]!r}); classification needs at least two"
            )
        if loss == "binary_cross_entropy" and len(labels) != 2:
            raise UsageError(
                f"--loss binary_cross_entropy needs two classes; {table.target_name!r} has "
                f"{len(labels)} (use cross_entropy)"
            )
        metadata["labels"] = labels
        n_out = 1 if loss == "binary_cross_entropy" else len(labels)
    else:
        y = datasets.target_values(table)
        n_out = 1

    if args.validation_fraction > 0:
        train_idx, val_idx = datasets.train_test_indices(
            y, args.validation_fraction, seed=args.seed, stratify=task == "classification"
        )
        if train_idx.size == 0 or val_idx.size == 0:
            raise UsageError(
                f"--validation-fraction {args.validation_fraction} of {n} rows leaves an empty "
                "training or validation set; use more rows or --validation-fraction 0"
            )
    else:
        train_idx, val_idx = np.arange(n), np.arange(0)

    # 2. Standardize with the training rows' statistics only; remember them in the model file.
    mean = X[train_idx].mean(axis=0)
    scale = X[train_idx].std(axis=0)
    scale[scale == 0] = 1.0
    metadata["scaler"] = {"mean": mean.tolist(), "scale": scale.tolist()}
    Xs = (X - mean) / scale
    target = y
    if task == "regression":
        t_mean, t_scale = float(y[train_idx].mean()), float(y[train_idx].std()) or 1.0
        metadata["target_scaler"] = {"mean": t_mean, "scale": t_scale}
        target = (y - t_mean) / t_scale

    sizes = [X.shape[1], *args.hidden, n_out]
    model = MLP(
        sizes, args.activation, dropout=args.dropout, loss=loss, dtype=args.dtype, seed=args.seed
    )
    kind = f"{len(metadata.get('labels', []))} classes" if task == "classification" else "values"
    _say(
        f"{table.source}: {n} rows, {X.shape[1]} features, target {table.target_name!r} "
        f"({task}, {kind})"
    )
    shape = f"({args.activation})" if args.hidden else "(linear: no hidden layer)"
    _say(
        f"model {' → '.join(map(str, sizes))} {shape}, {model.n_params:,} parameters, "
        f"{args.dtype}, loss {model.loss.name}; training on {train_idx.size} rows"
        + (f", validating on {val_idx.size}" if val_idx.size else "")
    )

    if args.early_stopping and val_idx.size == 0:
        _say("note: --early-stopping without validation data watches the training loss")

    # 3. Train.
    validation = (Xs[val_idx], target[val_idx]) if val_idx.size else None
    fit_target = target.reshape(-1, 1) if loss == "binary_cross_entropy" else target
    history = model.fit(
        Xs[train_idx],
        fit_target[train_idx],
        optimizer=args.optimizer,
        learning_rate=args.lr,
        l2=args.l2,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        validation_data=None if validation is None else (validation[0], fit_target[val_idx]),
        early_stopping=args.early_stopping,
        patience=args.patience,
        verbose=0 if args.quiet or (comm is not None and not comm.is_root) else 1,
        comm=comm,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every or "epoch",
        resume=args.resume,
    )
    # Ctrl-C: fit() stopped after the current step, kept the best weights, wrote the checkpoint and
    # said so on stderr; the model below is written as well, and the exit status says it was cut short.
    if comm is not None and not comm.is_root:
        return 0  # every rank holds the same weights; only rank 0 reports and writes files
    interrupted = bool(getattr(history, "interrupted", False))
    if getattr(history, "resumed_from", None):
        epoch, batch = history.resumed_from
        _say(f"resumed from {args.checkpoint} at epoch {epoch}, batch {batch}")

    # 4. Metrics, in the target's own units (the stored scalers are applied as in predict).
    model.metadata = metadata

    def metrics(rows: np.ndarray) -> dict[str, Any]:
        if task == "classification":
            m = _classification_metrics(model, Xs[rows], y[rows])
            m.pop("confusion_matrix")
            return m
        return _regression_metrics(model, Xs[rows], y[rows])

    results = {"train": metrics(train_idx)}
    if val_idx.size:
        results["validation"] = metrics(val_idx)
    metadata["metrics"] = results
    metadata["training"] = {
        "data": args.data,
        "hidden": args.hidden,
        "activation": args.activation,
        "dropout": args.dropout,
        "loss": loss,
        "optimizer": args.optimizer,
        "learning_rate": history.records[0]["learning_rate"] if len(history) else args.lr,
        "l2": args.l2,
        "epochs": args.epochs,
        "epochs_run": len(history),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "batch_size": args.batch_size,
        "validation_fraction": args.validation_fraction,
        "early_stopping": args.early_stopping,
        "patience": args.patience,
        "seed": args.seed,
        "dtype": args.dtype,
    }
    model.metadata = metadata
    blob = model_bytes(model)
    png = None
    if args.plot is not None and len(history):
        from matnet.plots import history_png

        png = history_png(history, title=f"matnet on {table.source}")

    # 5. Report and write.
    if interrupted:
        _say(f"interrupted after {len(history)} complete epochs")
    elif history.stopped_early:
        _say(
            f"stopped early after {len(history)} epochs; restored the weights of epoch "
            f"{history.best_epoch}"
        )
    else:
        _say(f"trained {len(history)} epochs")
    for split, m in results.items():
        _say(f"{split:<11} {_format_metrics(m)}")
    atomic_write(args.out, blob)
    _say(f"wrote {args.out} ({_size(len(blob))})")
    if png is not None:
        atomic_write(args.plot, png)
        _say(f"wrote {args.plot}")
    return 130 if interrupted else 0


# --- predict, evaluate, info -----------------------------------------------------------------


def _csv_text(header: list[str], columns: list[list[str]]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*columns, strict=True))
    return buffer.getvalue()


def cmd_predict(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    if args.out is not None:
        check_writable(args.out, "predictions file")
    task = _task_of(model)
    if args.proba and task != "classification":
        raise UsageError("--proba gives class probabilities; this model is a regressor")
    table = _read_for_model(model, args.data, None, need_target=False)
    X = _standardize(model, table.X)
    name = model.metadata.get("target") or "prediction"
    if task == "classification":
        labels = _labels_of(model)
        P = _class_proba(model, X)
        predicted = [labels[i] for i in np.argmax(P, axis=1)]
        header, columns = [name], [predicted]
        if args.proba:
            header += [f"proba_{label}" for label in labels]
            columns += [[f"{p:.6g}" for p in P[:, j]] for j in range(P.shape[1])]
    else:
        values = _regress(model, X).reshape(X.shape[0], -1)
        if values.shape[1] == 1:
            header = [name]
        else:
            header = [f"{name}_{j}" for j in range(values.shape[1])]
        columns = [[f"{v:.8g}" for v in values[:, j]] for j in range(values.shape[1])]
    text = _csv_text(header, columns)
    if args.out is None:
        sys.stdout.write(text)
    else:
        atomic_write(args.out, text.encode("utf-8"))
        print(f"wrote {len(table)} predictions to {args.out}", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    task = _task_of(model)
    if args.plot is not None and task != "classification":
        raise UsageError("--plot draws a confusion matrix, which needs a classifier")
    _plot_requested(args.plot)
    table = _read_for_model(model, args.data, args.target, need_target=True)
    X = _standardize(model, table.X)
    lines = [f"{args.model} on {table.source}: {len(table)} rows"]
    png = None
    if task == "classification":
        y = _class_indices(model, table)
        m = _classification_metrics(model, X, y)
        labels = _labels_of(model)
        lines.append(_format_metrics(m))
        lines.append("confusion matrix (rows: true class, columns: predicted class)")
        lines.append(_confusion_table(m["confusion_matrix"], labels))
        if args.plot is not None:
            from matnet.plots import confusion_matrix_png

            png = confusion_matrix_png(
                m["confusion_matrix"],
                labels,
                title=f"{Path(args.model).name} on {table.source}: accuracy {m['accuracy']:.3f}",
            )
    else:
        y = datasets.target_values(table)
        lines.append(_format_metrics(_regression_metrics(model, X, y)))
    _say("\n".join(lines))
    if png is not None:
        atomic_write(args.plot, png)
        _say(f"wrote {args.plot}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from matnet.io import load_tensors

    tensors, raw = load_tensors(args.model)
    model = load(args.model)
    _check_metadata(model, args.model)
    meta = model.metadata
    size = os.path.getsize(args.model)
    lines = [
        f"{args.model}: matnet model file, format {raw.get('format_version')}, written by matnet "
        f"{raw.get('matnet_version')}, {_size(size)}, sha256 of the data {raw['matnet.sha256'][:16]}..."
        if "matnet.sha256" in raw
        else f"{args.model}: matnet model file, format {raw.get('format_version')}",
    ]
    task = _task_of(model)
    if task == "classification":
        labels = _labels_of(model)
        shown = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
        lines.append(
            f"task: classification of {meta.get('target', 'the target')!r} into "
            f"{len(labels)} classes: {shown}"
        )
    else:
        lines.append(f"task: regression of {meta.get('target', 'the target')!r}")
    features = meta.get("features")
    if features:
        shown = ", ".join(features[:6]) + (", ..." if len(features) > 6 else "")
        scaled = (
            "standardized with the stored training mean and scale" if meta.get("scaler") else ""
        )
        lines.append(f"inputs: {len(features)} features ({shown}); {scaled}".rstrip("; "))
    lines.append("")
    lines.append(model.summary(print_fn=None))
    lines.append(
        "tensors: " + ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in tensors.items())
    )
    training = meta.get("training")
    if training:
        lines.append("")
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in training.items())
        lines.extend(textwrap.wrap(f"training: {shown}", width=100, subsequent_indent="  "))
    for split, m in (meta.get("metrics") or {}).items():
        lines.append(f"{split} metrics at save: {_format_metrics(m)}")
    _say("\n".join(lines))
    return 0


# --- gradcheck and explain -------------------------------------------------------------------


def _sized_model(args: argparse.Namespace, default_sizes: list[int], dtype: str) -> Sequential:
    if args.model is not None and args.sizes is not None:
        raise UsageError("give either a MODEL file or --sizes, not both")
    if args.model is not None:
        return _load_model(args.model)
    sizes = args.sizes if args.sizes is not None else default_sizes
    if len(sizes) < 2:
        raise UsageError(f"--sizes needs an input and an output width, got {sizes}")
    if args.loss == "cross_entropy" and sizes[-1] < 2:
        raise UsageError("--loss cross_entropy needs at least two outputs")
    return MLP(sizes, args.activation, loss=args.loss, dtype=dtype, seed=args.seed)


def _random_targets(model: Sequential, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(model.loss, SoftmaxCrossEntropy):
        # Every class at least once when possible, so no column of dZ is trivially zero.
        return rng.permutation(np.arange(n) % model.n_outputs)
    if isinstance(model.loss, BinaryCrossEntropy):
        return rng.integers(0, 2, size=(n, model.n_outputs))
    return rng.standard_normal((n, model.n_outputs))


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from matnet.gradcheck import gradcheck

    model = _sized_model(args, [5, 4, 3], "float64")
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.batch, model.n_features))
    y = _random_targets(model, args.batch, rng)
    error = gradcheck(model, X, y)
    ok = error <= args.tolerance
    widths = [model.n_features] + [layer.n_out for layer in model.dense_layers]
    _say(
        f"gradcheck {' → '.join(map(str, widths))}, loss {model.loss.name}, batch {args.batch}, "
        f"float64 central differences over {model.n_params:,} parameters"
    )
    _say(
        f"largest relative error {error:.3e}: "
        + ("OK" if ok else "FAILED")
        + f" (tolerance {args.tolerance:g})"
    )
    return 0 if ok else 1


def cmd_explain(args: argparse.Namespace) -> int:
    from matnet.explain import explain

    model = _sized_model(args, [64, 32, 10], args.dtype)
    X: Any = args.batch
    y = None
    if args.data is not None:
        if args.model is None:
            raise UsageError("--data needs a MODEL file (its scaler and labels read the data)")
        table = _read_for_model(model, args.data, None, need_target=False)
        rows = slice(0, min(args.batch, len(table)))
        X = _standardize(model, table.X[rows])
        if table.y is not None:  # without a target column, explain() draws random targets
            if _task_of(model) == "classification":
                y = _class_indices(model, table)[rows]
                if isinstance(model.loss, BinaryCrossEntropy):
                    y = y.reshape(-1, 1)
            else:
                y = datasets.target_values(table)[rows]
                scaler = model.metadata.get("target_scaler")
                if scaler:
                    y = (y - float(scaler["mean"])) / float(scaler["scale"])
    explain(model, X, y, values=args.values, seed=args.seed)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    for name in datasets.DATASETS:
        table = datasets.load_dataset(name)
        if table.task == "classification":
            kind = f"{np.unique(table.y).size} classes"
        else:
            kind = "regression"
        _say(f"{name:<14} {len(table):>5} rows  {table.X.shape[1]:>3} features  {kind}")
    _say("add :train or :test for the fixed 75/25 split (seed 0), e.g. digits:train")
    return 0


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``matnet`` command."""
    from matnet import __version__

    parser = _Parser(
        prog="matnet",
        description="Dense neural networks in matrix form: train, predict, evaluate, explain.",
    )
    parser.add_argument("--version", action="version", version=f"matnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data_help = (
        "a CSV file with a header row, or a bundled dataset: "
        + ", ".join(datasets.DATASETS)
        + " (add :train or :test for a fixed 75/25 split)"
    )

    p = sub.add_parser("train", help="train a network on a CSV file or bundled dataset")
    p.add_argument("data", metavar="DATA", help=data_help)
    p.add_argument(
        "--target", metavar="COLUMN", help="the target column (not for a bundled dataset)"
    )
    p.add_argument(
        "--task",
        choices=("classification", "regression"),
        help="default: text labels or at most 20 whole numbers mean classification",
    )
    p.add_argument(
        "--hidden",
        type=_hidden,
        default=[128, 64],
        metavar="W1,W2,...",
        help="hidden layer widths (default 128,64; 'none' for a linear model)",
    )
    p.add_argument(
        "--activation", default="relu", choices=("relu", "leaky_relu", "tanh", "sigmoid", "gelu")
    )
    p.add_argument(
        "--dropout", type=_fraction, default=0.0, help="dropout rate after each hidden layer"
    )
    p.add_argument(
        "--loss",
        choices=("cross_entropy", "binary_cross_entropy", "mse"),
        help="default: cross_entropy for classification, mse for regression",
    )
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZER_NAMES, help="default: adam")
    p.add_argument(
        "--lr", type=_positive_float, default=None, help="learning rate (default: the optimizer's)"
    )
    p.add_argument("--l2", type=_non_negative_float, default=0.0, help="L2 penalty on the weights")
    p.add_argument("--epochs", type=_positive_int, default=50, help="default: 50")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="default: 32")
    p.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.1,
        help="rows held out to validate each epoch (stratified; default: 0.1)",
    )
    p.add_argument(
        "--early-stopping",
        action="store_true",
        help="stop when the validation loss stops improving; keep the best weights",
    )
    p.add_argument(
        "--patience",
        type=_positive_int,
        default=10,
        help="epochs without improvement (default: 10)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="weights, shuffling, split (default: 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument(
        "--out", default="model.safetensors", metavar="PATH", help="default: model.safetensors"
    )
    p.add_argument("--plot", metavar="PNG", help="write training curves (needs matnet[plot])")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="write a resumable checkpoint here (atomically) at every epoch end",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        metavar="STEPS",
        help="checkpoint every STEPS optimizer steps instead of every epoch",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from --checkpoint if it exists (same data and options)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel across the ranks of mpiexec (needs matnet[mpi])",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict with a trained model")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA", help=data_help)
    p.add_argument("--out", metavar="CSV", help="write predictions here (default: stdout)")
    p.add_argument("--proba", action="store_true", help="add class probabilities")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="score a trained model on labeled data")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA", help=data_help)
    p.add_argument(
        "--target", metavar="COLUMN", help="default: the column the model was trained on"
    )
    p.add_argument(
        "--plot", metavar="PNG", help="write a confusion-matrix image (needs matnet[plot])"
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("info", help="architecture, shapes, parameters and training of a model file")
    p.add_argument("model", metavar="MODEL")
    p.set_defaults(func=cmd_info)

    for name, helptext in (
        ("gradcheck", "compare backpropagation with float64 central differences"),
        ("explain", "print the forward and backward equations with their shapes"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("model", metavar="MODEL", nargs="?", help="a model file (or use --sizes)")
        p.add_argument(
            "--sizes",
            type=_sizes,
            metavar="N_IN,...,N_OUT",
            help="default 5,4,3" if name == "gradcheck" else "default 64,32,10",
        )
        p.add_argument(
            "--activation",
            default="tanh" if name == "gradcheck" else "relu",
            choices=("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "identity"),
        )
        p.add_argument(
            "--loss",
            default="cross_entropy",
            choices=("cross_entropy", "binary_cross_entropy", "mse"),
        )
        p.add_argument("--batch", type=_positive_int, default=7 if name == "gradcheck" else 8)
        p.add_argument("--seed", type=_seed, default=0)
        if name == "gradcheck":
            p.add_argument("--tolerance", type=_positive_float, default=1e-6)
            p.set_defaults(func=cmd_gradcheck)
        else:
            p.add_argument(
                "--values",
                action="store_true",
                help="run one real step and print every matrix (for small sizes)",
            )
            p.add_argument(
                "--data", metavar="DATA", help="take the batch from this data (with a MODEL file)"
            )
            p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
            p.set_defaults(func=cmd_explain)

    p = sub.add_parser("datasets", help="list the bundled datasets")
    p.set_defaults(func=cmd_datasets)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``matnet`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"matnet: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader of our output went away (`matnet predict ... | head`): not an error worth a line.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (MatnetError, ValueError, ImportError, OSError) as exc:
        if os.environ.get("MATNET_DEBUG"):
            raise
        print(f"matnet {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"matnet {args.command}: interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
