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
    "CheckpointInUseError",
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


class CheckpointInUseError(MatnetError, RuntimeError):
    """Another live process trains into the same checkpoint path (it holds ``<path>.lock``); the
    message names it (pid and host)."""
