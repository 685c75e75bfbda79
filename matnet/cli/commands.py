"""The commands: ``train`` builds a model with its preprocessing (a :class:`~matnet.Standardize`
layer, class labels, column names, target scaling) and writes it; ``predict``, ``evaluate``,
``info`` and ``explain`` read a model file and go through the model for every answer.

The task of a model is its loss's (:attr:`matnet.losses.Loss.task`), so a loss registered with
:func:`matnet.register_loss` trains and predicts here like a built-in one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matnet import datasets, distributed, metrics
from matnet.answers import (
    class_indices,
    class_labels,
    class_proba,
    decisions,
    has_input_scaling,
    is_classifier,
    label_values,
    load_model,
    loss_of,
    note_unscaled,
    output_name,
    predicted_values,
    read_for_model,
)
from matnet.cli.common import (
    check_writable,
    classification_metrics,
    classification_report,
    confusion_table,
    csv_text,
    format_metrics,
    per_class_table,
    plot_requested,
    refuse_overwriting_inputs,
    regression_metrics,
    regression_report,
    roc_auc_how,
    roc_auc_text,
    same_file,
    say,
    shown,
    size_text,
)
from matnet.errors import DataError, UsageError
from matnet.io import atomic_write, model_bytes
from matnet.layers import Standardize
from matnet.layers.tabular import is_missing
from matnet.losses import BinaryCrossEntropy, SoftmaxCrossEntropy, get_loss, loss_names
from matnet.mlp import MLP
from matnet.model import Sequential
from matnet.tabular import ColumnReport, TabularFit, TabularRecipe, infer_columns, output_width
from matnet.tabular.build import prepare_tabular, split_rows
from matnet.tabular.inference import read_numbers

__all__ = [
    "cmd_train",
    "cmd_predict",
    "cmd_evaluate",
    "cmd_info",
    "cmd_export",
    "cmd_gradcheck",
    "cmd_explain",
    "cmd_datasets",
    "cmd_serve",
]

# A whole-number target with at most this many values is a class label.
MAX_CLASSES_FROM_NUMBERS = 20


# --- train -----------------------------------------------------------------------------------


@dataclass
class _Target:
    """The target column as the model will learn it."""

    task: str
    loss: str
    #: Class indices (classification) or float64 values (regression), one per row.
    y: np.ndarray
    #: The class labels (classification) or None.
    labels: list[str] | None
    n_outputs: int


def _numbers_in_target(table: datasets.Table, decimal: str | None = None) -> str | None:
    """A target of numbers written with decimal commas, thousands separators or percent signs
    read as the numbers they are (in place); returns how they were read, or None."""
    y = table.y
    if y is None or y.dtype.kind in "iuf" or all(datasets.is_number(v) for v in y):
        return None
    read = read_numbers(y, decimal)
    if read is None:
        return None  # labels
    values, reason = read
    table.y = np.asarray([repr(float(v)) for v in values])
    return reason


def _choose_task(args: argparse.Namespace, table: datasets.Table) -> str:
    if args.task is not None:
        return args.task
    if table.task is not None:
        return table.task
    if args.loss is not None:
        return get_loss(args.loss).task
    y = table.target()
    if not datasets.is_integer_valued(y):
        try:
            np.asarray(y).astype(np.float64)
        except ValueError:
            return "classification"  # text labels
        return "regression"
    n_unique = np.unique(np.asarray(y).astype(np.float64)).size
    return "classification" if n_unique <= MAX_CLASSES_FROM_NUMBERS else "regression"


def _task_and_loss(args: argparse.Namespace, table: datasets.Table) -> tuple[str, str]:
    task = _choose_task(args, table)
    loss = args.loss or ("cross_entropy" if task == "classification" else "mse")
    if get_loss(loss).task != task:
        fitting = sorted({get_loss(n).name for n in loss_names() if get_loss(n).task == task})
        raise UsageError(
            f"--loss {loss} does not fit {table.source}, a {task} task "
            f"({' or '.join(fitting)} {'does' if len(fitting) == 1 else 'do'})"
        )
    return task, loss


def _check_outputs(args: argparse.Namespace) -> Any:
    """Output paths and extras, checked before any work; returns the MPI communicator or None."""
    check_writable(args.out, "model file")
    # No output may replace the data it trains on (`--out data.csv`).
    refuse_overwriting_inputs(
        {"--out": args.out, "--checkpoint": args.checkpoint, "--plot": args.plot},
        {"data file": args.data},
    )
    if args.checkpoint is not None:
        check_writable(args.checkpoint, "checkpoint")
        if same_file(args.checkpoint, args.out):
            raise UsageError("--checkpoint and --out name the same file")
    elif args.resume or args.checkpoint_every is not None:
        raise UsageError("--resume and --checkpoint-every need --checkpoint PATH")
    plot_requested(args.plot)
    _history_requested(args)
    # None, or the MPI ranks of `mpiexec -n K matnet train ... --distributed` (stdout muted on
    # ranks above 0); a missing mpi4py is one line naming matnet[mpi].
    comm = distributed.cli_setup(args.distributed)
    if args.plot is not None and same_file(args.plot, args.out):
        raise UsageError("--plot and --out name the same file")
    return comm


def _history_requested(args: argparse.Namespace) -> None:
    """--history PATH: a .csv or .json name that can be written and is no other output's."""
    if args.history is None:
        return
    suffix = Path(args.history).suffix.lower()
    if suffix not in (".csv", ".json"):
        raise UsageError(
            f"--history {args.history}: the name must end in .csv or .json (the format to write)"
        )
    check_writable(args.history, "history file")
    here = Path(args.history).resolve()
    for option, other in (
        ("--out", args.out),
        ("--plot", args.plot),
        ("--checkpoint", args.checkpoint),
    ):
        if other is not None and Path(other).resolve() == here:
            raise UsageError(f"--history and {option} name the same file")


def _history_bytes(args: argparse.Namespace, history: Any) -> bytes | None:
    """Every epoch's record in the format --history's name asks for (None without --history)."""
    if args.history is None:
        return None
    if Path(args.history).suffix.lower() == ".json":
        return history.to_json().encode("utf-8")
    return history.to_csv().encode("utf-8")


def _read_target(table: datasets.Table, task: str, loss: str) -> _Target:
    if task == "regression":
        return _Target(task, loss, datasets.target_values(table), None, 1)
    y, labels = datasets.encode_labels(table.target())
    if len(labels) < 2:
        raise UsageError(
            f"{table.source}: the target {table.target_name!r} has a single class "
            f"({labels[0]!r}); classification needs at least two"
        )
    binary = isinstance(get_loss(loss), BinaryCrossEntropy)
    if binary and len(labels) != 2:
        raise UsageError(
            f"--loss {loss} needs two classes; {table.target_name!r} has "
            f"{len(labels)} (use cross_entropy)"
        )
    return _Target(task, loss, y, labels, 1 if binary else len(labels))


@dataclass(frozen=True)
class _Settings:
    """What ``matnet train`` trains with, every default filled in from the recipe, once."""

    recipe: TabularRecipe | str  # a TabularRecipe, or "mlp"
    hidden: tuple[int, ...]
    dropout: float
    epochs: int
    validation_fraction: float
    #: Keyword arguments of fit beyond the recipe's (which the builder supplies).
    fit_options: dict[str, Any]

    @property
    def tabular(self) -> bool:
        return isinstance(self.recipe, TabularRecipe)


def _settings(args: argparse.Namespace) -> _Settings:
    """The options left to the recipe (``--hidden``, ``--dropout``, ``--epochs``, ``--batch-size``,
    ``--lr``, ``--optimizer``, ``--patience``) filled in; nothing is written back into ``args``."""
    common: dict[str, Any] = {"l2": args.l2}
    if args.threads is not None:  # else the recipe's (one thread for its small products)
        common["threads"] = args.threads
    if args.recipe == "mlp":
        hidden = (128, 64) if args.hidden is None else tuple(args.hidden)
        epochs = 50 if args.epochs is None else args.epochs
        fraction = 0.1 if args.validation_fraction is None else args.validation_fraction
        mlp_options = {
            "optimizer": args.optimizer or "adam",
            "learning_rate": args.lr,
            "epochs": epochs,
            "batch_size": args.batch_size or 32,
            "early_stopping": args.early_stopping,
            "patience": 10 if args.patience is None else args.patience,
        }
        dropout = 0.0 if args.dropout is None else args.dropout
        return _Settings("mlp", hidden, dropout, epochs, fraction, {**mlp_options, **common})
    base = TabularRecipe()
    recipe = TabularRecipe(
        hidden=base.hidden if args.hidden is None else tuple(args.hidden),
        dropout=base.dropout if args.dropout is None else args.dropout,
        epochs=base.epochs if args.epochs is None else args.epochs,
        batch_size=base.batch_size if args.batch_size is None else args.batch_size,
        learning_rate=base.learning_rate if args.lr is None else args.lr,
        validation_fraction=(
            base.validation_fraction
            if args.validation_fraction is None
            else args.validation_fraction
        ),
    )
    options: dict[str, Any] = dict(common)
    if args.optimizer is not None:  # the recipe's AdamW(beta_2=0.95) unless one is named
        options["optimizer"] = args.optimizer
    if args.patience is not None:  # the recipe runs every epoch and keeps the best one
        options["patience"] = args.patience
    return _Settings(
        recipe, recipe.hidden, recipe.dropout, recipe.epochs, recipe.validation_fraction, options
    )


def _weight_column(args: argparse.Namespace, table: datasets.Table) -> np.ndarray | None:
    """--sample-weight COLUMN: the column's numbers as each row's weight, taken out of the
    features; a cell that is no non-negative number names its line."""
    name = args.sample_weight
    if name is None:
        return None
    if name not in table.feature_names:
        raise UsageError(
            f"--sample-weight {name}: {table.source} has no column of that name besides the "
            f"target; its columns are {', '.join(table.feature_names)}"
        )
    j = table.feature_names.index(name)
    cells = table.X[:, j]
    values = np.empty(len(cells))
    for i, cell in enumerate(cells):
        number = datasets.number_or_none(str(cell))
        if number is None or number < 0:
            raise DataError(
                f"{table.where(i)}, column {name!r}: {str(cell)!r} is not a non-negative number "
                "(--sample-weight)"
            )
        values[i] = number
    keep = [k for k in range(len(table.feature_names)) if k != j]
    table.X = table.X[:, keep]
    table.feature_names = [table.feature_names[k] for k in keep]
    return values


def _select_columns(args: argparse.Namespace, table: datasets.Table) -> None:
    """Apply --features and --drop to the table's feature columns (in place)."""
    names = list(table.feature_names)
    for option, chosen in (("--features", args.features), ("--drop", args.drop)):
        unknown = [c for c in chosen or [] if c not in names]
        if unknown:
            raise UsageError(
                f"{option} {unknown[0]}: {table.source} has no feature column of that name; its "
                f"feature columns are {', '.join(names)}"
            )
    keep = list(args.features) if args.features else names
    keep = [c for c in keep if c not in set(args.drop or [])]
    if not keep:
        raise UsageError(f"{table.source}: --features/--drop leave no feature column")
    if keep != names:
        table.X = table.X[:, [names.index(c) for c in keep]]
        table.feature_names = keep


def _check_split(settings: _Settings, target: _Target, n: int, seed: int) -> None:
    """The held-out share leaves rows on both sides (the builder draws the same split)."""
    fraction = settings.validation_fraction
    try:
        split_rows(n, fraction, target.y, seed, stratify=target.task == "classification")
    except ValueError:
        raise UsageError(
            f"--validation-fraction {fraction} of {n} rows leaves an empty training or "
            "validation set; use more rows or --validation-fraction 0"
        ) from None


def _column_report(args: argparse.Namespace, table: datasets.Table) -> ColumnReport | None:
    """The inferred column types of a CSV file (always read as a table, so that a model answers
    rows with gaps and keeps one interface whatever its training file held), or of a bundled
    dataset given --tabular, --categorical, --numeric, --keep or --decimal; else None (numbers
    only: a Standardize layer)."""
    overrides = args.categorical or args.numeric or args.keep or args.decimal
    if not (table.lines is not None or table.X.dtype == object or overrides or args.tabular):
        return None
    columns = _columns_of(table)
    for name in args.numeric or []:  # a cell that is no number names its line
        for i, cell in enumerate(columns.get(name, [])):
            if not (is_missing(cell) or datasets.is_number(cell)):
                raise DataError(
                    f"{table.where(i)}, column {name!r}: {cell!r} is not a number (--numeric "
                    f"{name}); fix the cell or leave it empty to mark it missing"
                )
    try:
        return infer_columns(
            columns,
            categorical=args.categorical,
            numeric=args.numeric,
            keep=args.keep,
            decimal=args.decimal,
        )
    except (ValueError, TypeError) as exc:
        raise DataError(f"{table.source}: {exc}") from None


def _columns_of(table: datasets.Table) -> dict[str, np.ndarray]:
    return {name: table.X[:, j] for j, name in enumerate(table.feature_names)}


def _prepare(
    args: argparse.Namespace,
    settings: _Settings,
    table: datasets.Table,
    target: _Target,
    report: ColumnReport | None,
    weights: np.ndarray | None,
) -> TabularFit:
    """The model with everything that turns raw rows into answers, from the one tabular builder
    that the estimators call too (same table, seed and settings: the same weights)."""
    try:
        return prepare_tabular(
            table.X if report is None else _columns_of(table),
            target.y,
            task=target.task,
            classes=target.labels,
            recipe=settings.recipe,
            loss=target.loss,
            report=report,
            validation_fraction=settings.validation_fraction,
            dtype=args.dtype,
            seed=args.seed,
            feature_names=list(table.feature_names),
            sample_weight=weights,
            class_weight=args.class_weight,
            **(
                {}
                if settings.tabular
                else {
                    "hidden": settings.hidden,
                    "activation": args.activation,
                    "dropout": settings.dropout,
                }
            ),
        )
    except (ValueError, TypeError) as exc:
        raise DataError(f"{table.source}: {exc}") from None


def _announce(
    args: argparse.Namespace,
    settings: _Settings,
    table: datasets.Table,
    target: _Target,
    run: TabularFit,
) -> None:
    model = run.model
    n, d = len(table), model.n_features
    kind = f"{len(target.labels)} classes" if target.labels is not None else "values"
    say(
        f"{table.source}: {n} rows, {d} features, target {table.target_name!r} "
        f"({target.task}, {kind})"
    )
    width = output_width(model.layers[: _front_length(model)])
    if model.takes_table:
        say(f"preprocessing: {model.n_features} raw columns → {width} network inputs")
    sizes = [width, *settings.hidden, target.n_outputs]
    shape = f"({args.activation})" if settings.hidden else "(linear: no hidden layer)"
    if isinstance(settings.recipe, TabularRecipe):
        shape = f"(tabular recipe: {settings.recipe.k} members, {settings.recipe.activation})"
    train_idx, val_idx = run.train_rows, run.validation_rows
    say(
        f"model {' → '.join(map(str, sizes))} {shape}, {model.n_params:,} parameters, "
        f"{args.dtype}, loss {loss_of(model).name}; training on {train_idx.size} rows"
        + (f", validating on {val_idx.size}" if val_idx.size else "")
    )
    if args.early_stopping and val_idx.size == 0:
        say("note: --early-stopping without validation data watches the training loss")


def _front_length(model: Sequential) -> int:
    """How many leading layers are preprocessing (no parameters, fitted state or none)."""
    from matnet.layers.tabular import Embedding, OneHot, RobustScale, TableInput

    front = (TableInput, RobustScale, OneHot, Embedding, Standardize)
    count = 0
    for layer in model.layers:
        if not isinstance(layer, front):
            break
        count += 1
    return count


def _fit(args: argparse.Namespace, settings: _Settings, run: TabularFit, comm: Any) -> Any:
    return run.fit(
        **settings.fit_options,
        verbose=0 if args.quiet or (comm is not None and not comm.is_root) else 1,
        comm=comm,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every or "epoch",
        resume=args.resume,
    )


def _split_metrics(run: TabularFit, target: _Target) -> dict[str, dict[str, Any]]:
    """Metrics of the training (and validation) rows, from raw rows through the model."""
    results = {}
    for split, idx in (("train", run.train_rows), ("validation", run.validation_rows)):
        if split == "validation" and idx.size == 0:
            continue
        if target.labels is not None:
            m = classification_metrics(run.model, run.rows(idx), target.y[idx])
            m.pop("confusion_matrix")
        else:
            m = regression_metrics(run.model, run.rows(idx), target.y[idx])
        results[split] = m
    return results


def _training_record(
    args: argparse.Namespace, settings: _Settings, run: TabularFit, loss: str, history: Any
) -> dict[str, Any]:
    used = {**run.options, **settings.fit_options}  # what fit ran with
    return {
        "data": args.data,
        "recipe": "tabular" if settings.tabular else "mlp",
        "hidden": list(settings.hidden),
        "activation": args.activation,
        "dropout": settings.dropout,
        "loss": loss,
        "optimizer": used.get("optimizer", "adam"),
        # The peak rate under a schedule (the tabular recipe sets it), else the first epoch's.
        "learning_rate": used.get("learning_rate")
        if used.get("learning_rate") is not None or not len(history)
        else history.records[0]["learning_rate"],
        "l2": args.l2,
        "epochs": settings.epochs,
        "epochs_run": len(history),
        "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early,
        "batch_size": used.get("batch_size"),
        "validation_fraction": settings.validation_fraction,
        "early_stopping": bool(used.get("early_stopping", False)),
        "patience": used.get("patience"),
        "seed": args.seed,
        "dtype": args.dtype,
        # A run stopped by Ctrl-C or SIGTERM says so in its file: under mpiexec, whose SIGTERM
        # (on its own Ctrl-C) ends the ranks' output at once, this is where the message survives.
        "interrupted": (history.signal or "SIGINT")
        if getattr(history, "interrupted", False)
        else None,
    }


def _write(path: str, blob: bytes, what: str) -> None:
    try:
        atomic_write(path, blob)
    except OSError as exc:
        # "[Errno 28] No space left on device" alone does not say which file.
        raise type(exc)(
            exc.errno, f"could not write the {what} {path}: {exc.strerror or exc}"
        ) from exc


def _report_and_write(
    args: argparse.Namespace,
    history: Any,
    results: dict,
    blob: bytes,
    png: bytes | None,
    kept_best: bool,
) -> None:
    # The files first: a write that fails (a full disk) is the one line printed, never the results
    # of a run whose model was not saved.
    _write(args.out, blob, "model file")
    if png is not None:
        _write(args.plot, png, "plot")
    history_bytes = _history_bytes(args, history)
    if history_bytes is not None:
        _write(args.history, history_bytes, "history file")
    if getattr(history, "interrupted", False):
        say(f"interrupted after {len(history)} complete epochs")
    elif history.stopped_early:
        say(
            f"stopped early after {len(history)} epochs; restored the weights of epoch "
            f"{history.best_epoch}"
        )
    elif history.best_epoch is not None and kept_best and history.best_epoch != len(history):
        say(
            f"trained {len(history)} epochs; kept the weights of epoch {history.best_epoch}, the "
            "best on the validation rows"
        )
    else:
        say(f"trained {len(history)} epochs; kept the weights of the last one")
    for split, m in results.items():
        say(f"{split:<11} {format_metrics(m)}")
    say(f"wrote {args.out} ({size_text(len(blob))})")
    if png is not None:
        say(f"wrote {args.plot}")
    if history_bytes is not None:
        say(f"wrote {args.history} ({len(history)} epochs)")


def cmd_train(args: argparse.Namespace) -> int:
    # 1. Everything that can be checked without training: options, data, output paths, extras.
    table = datasets.load_data(args.data, args.target, raw=True, encoding=args.encoding)
    weights = _weight_column(args, table)
    _select_columns(args, table)
    report = _column_report(args, table)
    # The target's numbers in the file's format (decimal commas: as its feature columns).
    decimal = args.decimal or (report.decimal if report is not None else None)
    target_format = _numbers_in_target(table, decimal)
    task, loss = _task_and_loss(args, table)
    comm = _check_outputs(args)
    target = _read_target(table, task, loss)
    settings = _settings(args)
    _check_split(settings, target, len(table), args.seed)

    # 2. The model with its preprocessing fitted on the training rows, and the targets checked
    # against it, so that a bad target is one line before anything else.
    if args.class_weight is not None and task != "classification":
        raise UsageError(f"--class-weight weighs classes; {table.source} is a {task} task")
    run = _prepare(args, settings, table, target, report, weights)
    try:
        run.model.encode_targets(run.targets, len(table))
    except ValueError as exc:
        raise UsageError(f"{table.source}, column {table.target_name!r}: {exc}") from None
    if report is not None:
        say(
            f"column types of {table.source} (override with --categorical, --numeric, --drop, "
            "--keep, --decimal):"
        )
        say(report.text())
    if target_format is not None:
        say(f"target {table.target_name!r}: {target_format}")
    _announce(args, settings, table, target, run)

    # 3. Train. Ctrl-C: fit() stops after the current step, keeps the best weights, writes the
    # checkpoint and says so on stderr; the model is written as well, and the exit status says
    # that it was cut short.
    history = _fit(args, settings, run, comm)
    if comm is not None and not comm.is_root:
        return 0  # every rank holds the same weights; only rank 0 reports and writes files
    if getattr(history, "resumed_from", None):
        epoch, batch = history.resumed_from
        say(f"resumed from {args.checkpoint} at epoch {epoch}, batch {batch}")

    # 4. Metrics in the target's own units, then everything in memory before anything is written.
    model = run.model
    # SIGTERM comes with a deadline: mpiexec sends SIGKILL 0.25 s after it, which the metrics (a
    # pass over the whole table) can outlast. Then the model is written at once, without them.
    hurry = getattr(history, "signal", None) == "SIGTERM"
    results = {} if hurry else _split_metrics(run, target)
    model.metadata.update(  # the builder's column report is there already
        target=table.target_name,
        metrics=results,
        training=_training_record(args, settings, run, loss, history),
    )
    blob = model_bytes(model)
    png = None
    if args.plot is not None and len(history) and not hurry:
        from matnet.plots import history_png

        png = history_png(history, title=f"matnet on {table.source}")

    # 5. Report and write.
    # The best epoch's weights are restored when fit selected one (the recipe always does).
    kept_best = bool({**run.options, **settings.fit_options}.get("early_stopping"))
    _report_and_write(args, history, results, blob, png, kept_best)
    if getattr(history, "interrupted", False):
        return 143 if history.signal == "SIGTERM" else 130  # 128 + the signal's number
    return 0


# --- predict, evaluate, info -----------------------------------------------------------------


def _class_columns(
    model: Sequential, X: np.ndarray, name: str, proba: bool
) -> tuple[list[str], list[list[str]]]:
    header, columns = [name], [[str(v) for v in decisions(model, X).tolist()]]
    if proba:
        P = class_proba(model, X)
        header += [f"proba_{label}" for label in class_labels(model)]
        columns += [[f"{p:.6g}" for p in P[:, j]] for j in range(P.shape[1])]
    return header, columns


def _value_columns(
    model: Sequential, X: np.ndarray, name: str
) -> tuple[list[str], list[list[str]]]:
    values = predicted_values(model, X)
    if values.shape[1] == 1:
        header = [name]
    else:
        header = [f"{name}_{j}" for j in range(values.shape[1])]
    return header, [[f"{v:.8g}" for v in values[:, j]] for j in range(values.shape[1])]


def cmd_predict(args: argparse.Namespace) -> int:
    refuse_overwriting_inputs(
        {"--out": args.out}, {"model file": args.model, "data file": args.data}
    )
    model = load_model(args.model)
    if args.out is not None:
        check_writable(args.out, "predictions file")
    if args.proba and not is_classifier(model):
        raise UsageError("--proba gives class probabilities; this model is a regressor")
    table = read_for_model(model, args.data, None, need_target=False, encoding=args.encoding)
    note_unscaled(model, args.model)
    if is_classifier(model):
        header, columns = _class_columns(model, table.X, output_name(model), args.proba)
    else:
        header, columns = _value_columns(model, table.X, output_name(model))
    text = csv_text(header, columns)
    if args.out is None:
        sys.stdout.write(text)
    else:
        atomic_write(args.out, text.encode("utf-8"))
        print(f"wrote {len(table)} predictions to {args.out}", file=sys.stderr)
    return 0


def _evaluate_classifier(
    args: argparse.Namespace, model: Sequential, table: datasets.Table
) -> tuple[dict[str, Any], list[str], bytes | None]:
    """The report (for --json), the text lines and the confusion-matrix image of a classifier."""
    report = classification_report(model, table.X, class_indices(model, table))
    auc = report["roc_auc"]
    labels = [str(label) for label in class_labels(model)]
    lines = [f"{format_metrics(report)}  {roc_auc_text(auc)}"]
    how = [roc_auc_how(auc, len(labels)), *([auc["reason"]] if auc["reason"] else [])]
    how.append(
        f"log-loss: probabilities clipped to [eps, 1 - eps], eps = {metrics.LOG_LOSS_EPS:.3g}, "
        "as scikit-learn does"
    )
    lines += [f"  ({text})" for text in how if text]
    lines.append(
        f"calibration: expected calibration error {report['calibration']['ece']:.4f} (10 bins of "
        "the top probability; 0 when probabilities mean what they say)"
    )
    lines += ["per-class report", per_class_table(report)]
    lines += [f"note: {text}" for text in report["undefined"]]
    lines.append("confusion matrix (rows: true class, columns: predicted class)")
    lines.append(
        confusion_table(np.asarray(report["confusion_matrix"]), [shown(label) for label in labels])
    )
    png = None
    if args.plot is not None:
        from matnet.plots import confusion_matrix_png

        png = confusion_matrix_png(
            np.asarray(report["confusion_matrix"]),
            labels,
            title=f"{Path(args.model).name} on {table.source}: accuracy {report['accuracy']:.3f}",
            calibration=report["calibration"],
        )
    return report, lines, png


def _evaluate_regressor(
    args: argparse.Namespace, model: Sequential, table: datasets.Table
) -> tuple[dict[str, Any], list[str], bytes | None]:
    """The report (for --json), the text lines and the predicted-vs-actual image of a regressor."""
    _numbers_in_target(table)  # decimal commas, as training read them
    y = datasets.target_values(table)
    report = regression_report(model, table.X, y)
    predicted = report.pop("predicted")
    lines = [format_metrics({k: report[k] for k in ("mae", "rmse", "r2", "mse")})]
    lines += [f"note: {text}" for text in report["undefined"]]
    png = None
    if args.plot is not None:
        from matnet.plots import regression_png

        png = regression_png(
            y,
            predicted,
            title=f"{Path(args.model).name} on {table.source}: R² {report['r2']:.3f}",
        )
    return report, lines, png


def cmd_evaluate(args: argparse.Namespace) -> int:
    refuse_overwriting_inputs(
        {"--plot": args.plot}, {"model file": args.model, "data file": args.data}
    )
    model = load_model(args.model)
    plot_requested(args.plot)
    table = read_for_model(model, args.data, args.target, need_target=True, encoding=args.encoding)
    note_unscaled(model, args.model)
    classify = is_classifier(model)
    evaluate = _evaluate_classifier if classify else _evaluate_regressor
    report, lines, png = evaluate(args, model, table)
    if args.json:
        head = {
            "model": args.model,
            "data": table.source,
            "rows": len(table),
            "target": table.target_name,
            "task": "classification" if classify else "regression",
        }
        sys.stdout.write(json.dumps(head | report, allow_nan=False) + "\n")
        sys.stdout.flush()
    else:
        say("\n".join([f"{args.model} on {table.source}: {len(table)} rows", *lines]))
    if png is not None:
        atomic_write(args.plot, png)
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout, flush=True)
    return 0


def _info_header(path: str, raw: dict[str, str]) -> str:
    if "matnet.sha256" not in raw:
        return f"{path}: matnet model file, format {raw.get('format_version')}"
    return (
        f"{path}: matnet model file, format {raw.get('format_version')}, written by matnet "
        f"{shown(raw.get('matnet_version'), 20)}, {size_text(os.path.getsize(path))}, sha256 of "
        f"the data {shown(raw['matnet.sha256'][:16])}..."
    )


def _info_task_and_inputs(model: Sequential) -> list[str]:
    # Everything a file says is printed escaped (a label may hold terminal escape sequences).
    target = shown(repr(model.metadata["target"])) if "target" in model.metadata else "the target"
    if is_classifier(model):
        labels = [shown(label) for label in class_labels(model)]
        listed = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
        named = "" if model.classes is not None else " (no labels stored: class indices)"
        lines = [f"task: classification of {target} into {len(labels)} classes: {listed}{named}"]
    else:
        lines = [f"task: regression of {target}"]
    names = None if model.feature_names is None else [shown(n) for n in model.feature_names]
    columns = (
        f"{len(names)} features ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})"
        if names
        else f"{model.n_features} features (no names stored: columns are taken in order)"
    )
    scaling = "; standardized with the stored training mean and scale"
    if model.takes_table:
        scaling = "; raw table cells, preprocessed by the model's table layers"
    lines.append(f"inputs: {columns}" + (scaling if has_input_scaling(model) else ""))
    return lines


def _info_columns(columns: Any) -> list[str]:
    """The column report saved by ``matnet train`` (or an estimator) on a raw table: each column's
    type and the columns dropped, with why. The file is untrusted: every value is shown escaped."""
    if not isinstance(columns, dict):
        return []
    lines = ["columns read (as the column report before training said):"]
    for entry in [*columns.get("columns", []), *columns.get("dropped", [])]:
        if isinstance(entry, dict):
            gaps = f", {shown(entry['missing'])} missing" if entry.get("missing") else ""
            lines.append(
                f"  {shown(entry.get('name'))}  {shown(entry.get('kind'))} "
                f"({shown(entry.get('reason'))}{gaps})"
            )
    lines += [f"  note: {shown(note, None)}" for note in columns.get("notes", [])]
    return lines


def cmd_info(args: argparse.Namespace) -> int:
    from matnet.io import load_tensors, model_from_tensors

    # The file is read once: a hostile header costs its parse once, not twice.
    tensors, raw = load_tensors(args.model)
    model = model_from_tensors(tensors, raw, args.model)
    loss_of(model, args.model)
    note_unscaled(model, args.model)
    lines = [_info_header(args.model, raw), *_info_task_and_inputs(model)]
    lines += [*_info_columns(model.metadata.get("columns")), ""]
    lines.append(model.summary(print_fn=None))
    lines.append(
        "tensors: "
        + ", ".join(f"{shown(k)} {tuple(v.shape)} {v.dtype}" for k, v in tensors.items())
    )
    training = model.metadata.get("training")
    if isinstance(training, dict) and training:
        lines.append("")
        settings = ", ".join(f"{shown(k)}={shown(json.dumps(v))}" for k, v in training.items())
        lines.extend(textwrap.wrap(f"training: {settings}", width=100, subsequent_indent="  "))
    metrics = model.metadata.get("metrics")
    for split, m in (metrics if isinstance(metrics, dict) else {}).items():
        if isinstance(m, dict):
            lines.append(f"{shown(split)} metrics at save: {format_metrics(m)}")
    say("\n".join(lines))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from matnet.export import to_onnx

    model = load_model(args.model)
    check_writable(args.out, "ONNX file")
    proto = to_onnx(model, args.out, dtype=args.dtype, opset=args.opset)
    outputs = ", ".join(output.name for output in proto.graph.output)
    dtype = args.dtype or np.dtype(model.dtype).name
    inputs = (
        f"inputs {len(proto.graph.input)} raw columns (N, 1) each"  # a table model's TableInput
        if model.takes_table
        else f"input X (N, {model.n_features})"
    )
    print(
        f"wrote {args.out}: opset {args.opset}, {dtype}, {inputs}, "
        f"outputs {outputs} ({size_text(os.path.getsize(args.out))})",
        file=sys.stderr,
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from matnet.serve import serve

    return serve(
        args.model,
        host=args.host,
        port=args.port,
        max_body=args.max_body,
        batch_wait_ms=args.batch_wait_ms,
        max_batch_rows=args.max_batch_rows,
        batching=not args.no_batching,
        blas_threads=args.blas_threads or None,
    )


# --- gradcheck and explain -------------------------------------------------------------------


def _sized_model(args: argparse.Namespace, default_sizes: list[int], dtype: str) -> Sequential:
    if args.model is not None and args.sizes is not None:
        raise UsageError("give either a MODEL file or --sizes, not both")
    if args.model is not None:
        return load_model(args.model)
    sizes = args.sizes if args.sizes is not None else default_sizes
    if len(sizes) < 2:
        raise UsageError(f"--sizes needs an input and an output width, got {sizes}")
    if isinstance(get_loss(args.loss), SoftmaxCrossEntropy) and sizes[-1] < 2:
        raise UsageError(f"--loss {args.loss} needs at least two outputs")
    return MLP(sizes, args.activation, loss=args.loss, dtype=dtype, seed=args.seed)


def _random_targets(model: Sequential, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(model.loss, SoftmaxCrossEntropy):
        # Every class at least once when possible, so no column of dZ is trivially zero.
        return rng.permutation(np.arange(n) % model.n_outputs)
    return loss_of(model).sample_targets(rng, n, model.n_outputs)


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from matnet.gradcheck import gradcheck

    model = _sized_model(args, [5, 4, 3], "float64")
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.batch, model.n_features))
    y = _random_targets(model, args.batch, rng)
    error = gradcheck(model, X, y)
    ok = error <= args.tolerance
    widths = [model.n_features] + [layer.n_out for layer in model.dense_layers]
    say(
        f"gradcheck {' → '.join(map(str, widths))}, loss {loss_of(model).name}, batch {args.batch}, "
        f"float64 central differences over {model.n_params:,} parameters"
    )
    say(
        f"largest relative error {error:.3e}: "
        + ("OK" if ok else "FAILED")
        + f" (tolerance {args.tolerance:g})"
    )
    return 0 if ok else 1


def cmd_explain(args: argparse.Namespace) -> int:
    from matnet.explain import explain

    if args.html is not None:
        return _explain_html(args)
    batch = args.batch if args.batch is not None else 8
    model = _sized_model(args, [64, 32, 10], args.dtype)
    X: Any = batch
    y = None
    if args.data is not None:
        if args.model is None:
            raise UsageError("--data needs a MODEL file (its columns and labels read the data)")
        X, y = _model_rows(model, args.data)
        X, y = X[:batch], None if y is None else y[:batch]
    explain(model, X, y, values=args.values, seed=args.seed)
    return 0


def _model_rows(model: Sequential, spec: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of ``spec`` a model file reads (raw: the model's own preprocessing layers are
    explained too) and their targets, if the data has them."""
    table = read_for_model(model, spec, None, need_target=False)
    if table.y is None:  # without a target column, explain() draws random targets
        return table.X, None
    if is_classifier(model):
        return table.X, label_values(model, class_indices(model, table))
    return table.X, datasets.target_values(table)


def _explain_html(args: argparse.Namespace) -> int:
    """``matnet explain ... --html PAGE``: record a short training run and write it as a page."""
    from matnet.explain import to_html

    if args.values:
        raise UsageError("--values prints matrices in the terminal; the --html page has them all")
    batch = args.batch if args.batch is not None else 16
    if args.model is not None:
        model = _sized_model(args, [], args.dtype)
        if args.data is None:
            raise UsageError(
                "--html with a MODEL file needs --data (the rows its training run reads)"
            )
        X, y = _model_rows(model, args.data)
        if y is None:
            raise UsageError(f"--html trains on {args.data}, which has no target column")
        source = args.data
    elif args.data is not None:
        if not datasets.is_dataset_name(args.data):
            raise UsageError(
                f"with --sizes, --data must be a bundled dataset ({', '.join(datasets.DATASETS)}); "
                "for a CSV file train a MODEL first"
            )
        table = datasets.load_dataset(args.data)
        sizes = args.sizes if args.sizes is not None else [64, 32, 10]
        X, y, model = _sized_on_dataset(args, table, sizes)
        source = (
            f"the {args.data} dataset ({len(table)} rows), standardized by the model's first layer"
        )
    else:
        model = _sized_model(args, [64, 32, 10], args.dtype)
        rng = np.random.default_rng(args.seed)
        X = rng.standard_normal((max(4 * batch, 64), model.n_features))
        y = _random_targets(model, X.shape[0], rng)
        source = f"random data (standard normal X and random targets, seed {args.seed})"
    to_html(
        model, X, y, args.html, steps=args.steps, batch=batch, learning_rate=args.lr,
        seed=args.seed, source=source, max_side=args.max_side, max_bytes=args.max_bytes,
        option_names={"steps": "--steps", "batch": "--batch", "max_side": "--max-side",
                      "max_bytes": "--max-bytes "},
    )  # fmt: skip
    say(f"wrote {args.html}: {args.steps} training steps of {source}; open it in a browser")
    return 0


def _sized_on_dataset(
    args: argparse.Namespace, table: datasets.Table, sizes: list[int]
) -> tuple[np.ndarray, np.ndarray, Sequential]:
    """A fresh ``MLP(sizes)`` with a Standardize layer in front, for a bundled dataset."""
    if table.task != "classification":
        raise UsageError(
            f"--html with --sizes trains a classifier; {table.source} is a regression dataset "
            "(train a MODEL file on it and pass that instead)"
        )
    classes, y = np.unique(table.target(), return_inverse=True)
    if sizes[0] != table.X.shape[1] or sizes[-1] != classes.size:
        raise UsageError(
            f"--sizes {','.join(map(str, sizes))} does not fit {table.source}: it has "
            f"{table.X.shape[1]} features and {classes.size} classes (try --sizes "
            f"{table.X.shape[1]},32,{classes.size})"
        )
    model = MLP(
        sizes, args.activation, loss=args.loss, dtype=args.dtype, seed=args.seed, standardize=True
    )
    return table.X, y, model


def cmd_datasets(args: argparse.Namespace) -> int:
    for name in datasets.DATASETS:
        table = datasets.load_dataset(name)
        if table.task == "classification":
            kind = f"{np.unique(table.target()).size} classes"
        else:
            kind = "regression"
        say(f"{name:<14} {len(table):>5} rows  {table.X.shape[1]:>3} features  {kind}")
    say("add :train or :test for the fixed 75/25 split (seed 0), e.g. digits:train")
    return 0
