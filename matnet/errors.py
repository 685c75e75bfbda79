"""matnet's own exception classes; each subclasses the built-in error a caller would expect."""

from __future__ import annotations

__all__ = ["MatnetError", "ModelFileError", "TrainingDivergedError", "NotFittedError"]


class MatnetError(Exception):
    """Base class of every error matnet raises on purpose."""


class ModelFileError(MatnetError, ValueError):
    """A model or checkpoint file is malformed, truncated, or describes something matnet cannot build."""


class TrainingDivergedError(MatnetError, ValueError):
    """The loss or the parameters became NaN or infinite during training."""


class NotFittedError(MatnetError, ValueError, AttributeError):
    """A model that needs training (or a fixed output link) was used before it had one."""
