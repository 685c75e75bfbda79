"""The argument tables of the ``matnet`` command and the types that check each option's value.

The choices of ``--activation``, ``--loss`` and ``--optimizer`` are read from matnet's registries when
the parser is built, so an activation or loss registered with :func:`matnet.register_activation` or
:func:`matnet.register_loss` before :func:`matnet.cli.main` runs is accepted like a built-in one.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

import numpy as np

from matnet import datasets, optim
from matnet.activations import activation_names
from matnet.cli.commands import (
    cmd_datasets,
    cmd_evaluate,
    cmd_explain,
    cmd_export,
    cmd_gradcheck,
    cmd_info,
    cmd_predict,
    cmd_serve,
    cmd_train,
)
from matnet.errors import UsageError
from matnet.export.onnx import DEFAULT_OPSET, MIN_OPSET
from matnet.losses import loss_names
from matnet.tabular.recipe import TabularRecipe

#: The recipe's defaults, which the help texts quote (a test compares them).
_RECIPE = TabularRecipe()

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage block
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


def _columns(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UsageError(f"expected comma-separated column names, got {text!r}")
    return names


def _add_encoding(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--encoding",
        default="utf-8-sig",
        metavar="NAME",
        help="the CSV file's text encoding (default UTF-8; e.g. latin-1)",
    )


# --- the tables ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``matnet`` command.

    Returns
    -------
    argparse.ArgumentParser
        Its ``parse_args`` raises :class:`~matnet.errors.UsageError` (one line) for a bad command
        line; the parsed namespace's ``func`` runs the command.
    """
    from matnet import __version__

    parser = _Parser(
        prog="matnet",
        description="Dense neural networks in matrix form: train, predict, evaluate, explain.",
    )
    parser.add_argument("--version", action="version", version=f"matnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data_help = (
        "a CSV file with a header row (comma, semicolon or tab separated; .csv.gz; - for stdin), "
        "a .parquet file (needs matnet[parquet]), or a bundled dataset: "
        + ", ".join(datasets.DATASETS)
        + " (add :train or :test for a fixed 75/25 split)"
    )
    _add_train(sub, data_help)
    _add_model_commands(sub, data_help)
    _add_gradcheck_and_explain(sub)
    _add_serve(sub)
    p = sub.add_parser("datasets", help="list the bundled datasets")
    p.set_defaults(func=cmd_datasets)
    return parser


def _add_train(sub: argparse._SubParsersAction, data_help: str) -> None:
    p = sub.add_parser("train", help="train a network on a CSV file or bundled dataset")
    p.add_argument("data", metavar="DATA", help=data_help)
    p.add_argument(
        "--target", metavar="COLUMN", help="the target column (not for a bundled dataset)"
    )
    p.add_argument(
        "--task",
        choices=("classification", "regression"),
        help="default: the --loss's task; else text labels or at most 20 whole numbers mean "
        "classification",
    )
    p.add_argument(
        "--recipe",
        choices=("tabular", "mlp"),
        default="tabular",
        help="tabular (default): matnet's tabular recipe (learnable input scale, periodic "
        "embeddings, an ensemble of 4 MLPs, label smoothing, Adam(beta2=0.95) under a cos-log "
        "schedule, the best epoch on validation rows); mlp: a plain MLP under Adam",
    )
    p.add_argument(
        "--hidden",
        type=_hidden,
        default=None,
        metavar="W1,W2,...",
        help="hidden layer widths (default: "
        f"{','.join(map(str, _RECIPE.hidden))} per member for tabular, 128,64 for mlp; "
        "'none' for a linear model)",
    )
    p.add_argument("--activation", default="relu", choices=activation_names())
    p.add_argument(
        "--dropout",
        type=_fraction,
        default=None,
        help=f"dropout rate after each hidden layer (default: {_RECIPE.dropout:g} tabular, 0 mlp)",
    )
    p.add_argument(
        "--loss",
        choices=loss_names(),
        help="default: cross_entropy for classification, mse for regression",
    )
    p.add_argument(
        "--optimizer",
        default=None,
        choices=optim.OPTIMIZER_NAMES,
        help="default: adamw (beta2 "
        f"{_RECIPE.beta_2:g}, weight decay {_RECIPE.weight_decay:g}) tabular, adam mlp",
    )
    p.add_argument(
        "--lr", type=_positive_float, default=None, help="learning rate (default: the optimizer's)"
    )
    p.add_argument("--l2", type=_non_negative_float, default=0.0, help="L2 penalty on the weights")
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help=f"default: {_RECIPE.epochs} tabular, 50 mlp",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help=f"default: {_RECIPE.batch_size} (at most an eighth of the rows) tabular, 32 mlp",
    )
    p.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=None,
        help="rows held out to validate each epoch (stratified; default: "
        f"{_RECIPE.validation_fraction:g} tabular, 0.1 mlp)",
    )
    p.add_argument(
        "--early-stopping",
        action="store_true",
        help="stop when the validation loss stops improving; keep the best weights",
    )
    p.add_argument(
        "--patience",
        type=_positive_int,
        default=None,
        help="epochs without improvement (default: 10 mlp; tabular runs every epoch and keeps "
        "the best)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="weights, shuffling, split (default: 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument(
        "--out", default="model.safetensors", metavar="PATH", help="default: model.safetensors"
    )
    p.add_argument("--plot", metavar="PNG", help="write training curves (needs matnet[plot])")
    p.add_argument(
        "--history",
        metavar="PATH",
        help="write every epoch's record (loss, validation metric, learning rate, seconds) to "
        "PATH.csv or PATH.json",
    )
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
    _add_encoding(p)
    for option, what in (
        ("--categorical", "columns to treat as categories (default: inferred)"),
        ("--numeric", "columns to treat as numbers (default: inferred)"),
        ("--drop", "columns to leave out"),
        ("--keep", "columns to keep although they look like ids or constants"),
        ("--features", "only these columns, in this order (default: all but the target)"),
    ):
        p.add_argument(option, type=_columns, action="extend", metavar="COL1,COL2,...", help=what)
    p.add_argument(
        "--tabular",
        action="store_true",
        help="preprocess a bundled dataset as a table (robust scaling, imputation); a CSV "
        "file always is",
    )
    p.add_argument(
        "--sample-weight",
        metavar="COLUMN",
        help="a column of non-negative numbers weighing each row's loss (not a feature)",
    )
    p.add_argument(
        "--class-weight",
        choices=("balanced",),
        help="balanced: weigh each class n / (k * n_class) over the training rows",
    )
    p.add_argument(
        "--decimal",
        choices=(".", ","),
        help="the decimal separator of numbers in the file (default: inferred per column)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="BLAS threads while training (needs threadpoolctl: matnet[threads]; default: 1 for "
        "the tabular recipe, whose products are too small to share; as BLAS chooses for mlp)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel across the ranks of mpiexec (needs matnet[mpi])",
    )
    p.set_defaults(func=cmd_train)


def _add_model_commands(sub: argparse._SubParsersAction, data_help: str) -> None:
    p = sub.add_parser("predict", help="predict with a trained model")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA", help=data_help)
    p.add_argument("--out", metavar="CSV", help="write predictions here (default: stdout)")
    p.add_argument("--proba", action="store_true", help="add class probabilities")
    _add_encoding(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="score a trained model on labeled data")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA", help=data_help)
    p.add_argument(
        "--target", metavar="COLUMN", help="default: the column the model was trained on"
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="write a confusion matrix (classifier) or predicted against actual with the "
        "residuals (regressor) as an image (needs matnet[plot])",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with every number instead of the text report",
    )
    _add_encoding(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("info", help="architecture, shapes, parameters and training of a model file")
    p.add_argument("model", metavar="MODEL")
    p.set_defaults(func=cmd_info)
    _add_export(sub)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a model as an ONNX graph: preprocessing, layers, labels (matnet[onnx])",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("out", metavar="OUT.onnx")
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        help="the graph's float type (default: the model's)",
    )
    p.add_argument(
        "--opset",
        type=_positive_int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {MIN_OPSET} or newer (default {DEFAULT_OPSET})",
    )
    p.set_defaults(func=cmd_export)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} must be in 0..65535 (0: any free port)")
    return value


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="an HTTP prediction service for a model file (needs matnet[serve])"
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1: this machine only; the service has "
        "no authentication)",
    )
    p.add_argument(
        "--port", type=_port, default=8000, help="default 8000; 0 picks a free port and prints it"
    )
    p.add_argument(
        "--max-body",
        type=_positive_int,
        default=8 * 1024 * 1024,
        metavar="BYTES",
        help="larger request bodies are refused with 413 (default 8 MiB)",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=_non_negative_float,
        default=2.0,
        metavar="MS",
        help="how long a batch may wait for the rows of requests already arriving (default 2)",
    )
    p.add_argument(
        "--max-batch-rows",
        type=_positive_int,
        default=4096,
        metavar="ROWS",
        help="a batch stops gathering at this many rows (default 4096)",
    )
    p.add_argument(
        "--no-batching",
        action="store_true",
        help="one model call per request (to measure what micro-batching gives)",
    )
    p.add_argument(
        "--blas-threads",
        type=_seed,
        default=1,
        metavar="N",
        help="NumPy's BLAS threads while serving (default 1: small products run fastest on one "
        "thread; 0 leaves BLAS as it is)",
    )
    p.set_defaults(func=cmd_serve)


def _add_gradcheck_and_explain(sub: argparse._SubParsersAction) -> None:
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
            choices=activation_names(),
        )
        p.add_argument("--loss", default="cross_entropy", choices=loss_names())
        p.add_argument(
            "--batch",
            type=_positive_int,
            default=7 if name == "gradcheck" else None,
            help="default 7" if name == "gradcheck" else "default 8 (16 with --html)",
        )
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
            p.add_argument(
                "--html",
                metavar="PAGE",
                help="train for --steps and write the run as one self-contained page (offline)",
            )
            p.add_argument(
                "--steps", type=_positive_int, default=30, help="with --html: steps (default 30)"
            )
            p.add_argument(
                "--lr",
                type=_positive_float,
                default=0.1,
                help="with --html: the SGD learning rate (default 0.1)",
            )
            p.add_argument(
                "--max-side",
                type=_positive_int,
                default=64,
                help="with --html: show larger matrices as an even sample of this many rows and "
                "columns (default 64)",
            )
            p.add_argument(
                "--max-bytes",
                type=_positive_int,
                default=5 * 2**20,
                help="with --html: the page's size limit in bytes (default 5 MiB)",
            )
            p.set_defaults(func=cmd_explain)
