"""matnet's own exception classes, all in one place; each subclasses the built-in error a caller
would expect, so ``except ValueError`` still catches a bad argument."""

from __future__ import annotations

__all__ = [
    "MatnetError",
    "ModelFileError",
    "TrainingDivergedError",
    "NotFittedError",
    "DataError",
    "UsageError",
    "OptionalDependencyError",
    "NonFiniteProductError",
    "ConversionError",
    "RequestError",
    "CheckpointInUseError",
    "CellError",
]


class MatnetError(Exception):
    """Base class of every error matnet raises on purpose."""


class ModelFileError(MatnetError, ValueError):
    """A model or checkpoint file is malformed, truncated, or describes something matnet cannot build."""


class TrainingDivergedError(MatnetError, ValueError):
    """The loss or the parameters became NaN or infinite during training.

    ``epoch`` and ``step`` say where, and ``history`` holds the epochs trained until then.
    """

    epoch: int = 0
    step: int = 0
    history: object = None


class NotFittedError(MatnetError, ValueError, AttributeError):
    """A model that needs training (or a fixed output link) was used before it had one."""


class DataError(MatnetError, ValueError):
    """A data file or dataset name that cannot be used: missing, malformed, or lacking a column."""


class UsageError(MatnetError, ValueError):
    """A command-line option that cannot be used."""


class OptionalDependencyError(MatnetError, ImportError):
    """An optional library that a feature needs is not installed; the message names the extra."""


class NonFiniteProductError(MatnetError, ArithmeticError):
    """A checked Dense product (see :meth:`matnet.layers.Dense.forward`) has a NaN or an infinity."""


class ConversionError(MatnetError, ValueError):
    """A model that another format cannot express (a layer, activation, loss or class labels
    without an ONNX or PyTorch counterpart), or a foreign model matnet cannot rebuild; the message
    names the part and what to do instead."""


class RequestError(MatnetError, ValueError):
    """An HTTP request that ``matnet serve`` cannot answer: ``status`` is the 4xx status it gets
    (400 malformed, 413 too large, 415 unsupported type, 422 rows that do not fit the model)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class CheckpointInUseError(MatnetError, RuntimeError):
    """Another live process trains into the same checkpoint path (it holds ``<path>.lock``); the
    message names it (pid and host)."""


class CellError(MatnetError, ValueError):
    """A cell of a raw table that its column cannot read. ``row`` (0-based, in the table given),
    ``column`` and ``reason`` say where and why, so a front end can name the file's line."""

    def __init__(self, reason: str, row: int, column: str) -> None:
        super().__init__(f"column {column!r}, row {row}: {reason}")
        self.reason = reason
        self.row = row
        self.column = column
