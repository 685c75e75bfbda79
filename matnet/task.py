"""The task layer: between a user's rows and the article's engine (:class:`~matnet.model.Sequential`).

The engine computes ``Z = A_prev·W + b`` on float matrices. A user has a DataFrame, a dict of columns,
a list of row dicts or a raw table, class labels such as ``"Adelie"``, and targets in their own units;
they want labels, probabilities and values back. :class:`Task` owns that translation, for every front
end (the Python API, the estimators, ``matnet train``/``predict``, ``matnet serve``):

- inputs: :meth:`Task.input_matrix`: a table model's first layer reads raw cells into codes; a
  numeric model gets its feature matrix checked, a DataFrame's (or dict's) columns matched by name;
- targets: :meth:`Task.encode_targets`: labels to class indices through :attr:`Task.classes`,
  values to ``(y − mean) / scale`` through :attr:`Task.target_scaling` (one pair per output column);
- outputs: :meth:`Task.predict`: decisions as labels (or indices), 0/1 labels, or values back in the
  target's units; :meth:`Task.predict_proba`: the loss's link.

:class:`FitConfig` is the one frozen, validated set of training options that :func:`matnet.fit`,
``Sequential.fit`` and the front ends pass along.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from matnet.errors import NotFittedError
from matnet.layers.tabular import rows_to_columns
from matnet.losses import Loss
from matnet.validation import check_features, check_positive_int, check_targets

if TYPE_CHECKING:
    from matnet.model import Sequential

__all__ = ["FitConfig", "Task", "with_fit_signature"]


@dataclass
class Task:
    """What a model's inputs and outputs mean, saved with it in its file.

    Attributes
    ----------
    classes : list or None
        The class labels (any JSON values) that the outputs stand for; None: class indices.
    feature_names : list of str or None
        The input columns' names when known; a DataFrame or dict given to predict is matched by
        name.
    target_scaling : (mean, scale) or None
        A regressor's scaling, each of shape (n_outputs,): the model learns ``(y − mean) / scale``
        and predicts ``Z · scale + mean``.
    """

    classes: list[Any] | None = None
    feature_names: list[str] | None = None
    target_scaling: tuple[np.ndarray, np.ndarray] | None = None

    # --- inputs -------------------------------------------------------------------------------

    def input_matrix(self, model: Sequential, X: Any, *, finite: bool = True) -> np.ndarray:
        """The float matrix the layers run on: a table model's codes of the raw table (see
        :meth:`matnet.layers.TableInput.encode`), else the checked feature matrix.

        Parameters
        ----------
        X : array-like, DataFrame, mapping of columns or list of row dicts, (n, n_features)
        finite : bool
            Check a numeric model's features for NaN and infinity here.

        Returns
        -------
        ndarray of shape (n, n_features), the model's dtype
        """
        if model.takes_table:
            return model.layers[0].encode(X, dtype=model.dtype)  # type: ignore[attr-defined]
        X = self.select_features(rows_to_columns(X))
        return check_features(X, model.n_features, model.dtype, finite=finite)

    def select_features(self, X: Any) -> Any:
        """``X`` with its columns in the model's order: a DataFrame (anything with ``columns``) or
        a mapping of columns is matched by name when the model knows its :attr:`feature_names`;
        arrays are taken as they are.

        Raises
        ------
        ValueError
            When a named table lacks a feature the model was trained on.
        """
        names = self.feature_names
        if isinstance(X, dict):  # columns by name (a list of row dicts arrives as one)
            names = names if names is not None else [str(k) for k in X]
            missing = [name for name in names if name not in X]
            if not missing:
                return np.column_stack([_numbers(X[name]) for name in names])
            columns: list[str] = [str(c) for c in X]
        else:
            if names is None or getattr(X, "columns", None) is None:
                return X
            columns = [str(c) for c in X.columns]
            missing = [name for name in names if name not in columns]
        if missing:
            shown = ", ".join(map(repr, missing[:5])) + (", ..." if len(missing) > 5 else "")
            raise ValueError(
                f"X lacks {len(missing)} of the model's {len(names)} features ({shown}); give "
                "a table with every column the model was trained on"
            )
        if columns == names:
            return X
        return X[names] if hasattr(X, "__getitem__") else X

    # --- targets ------------------------------------------------------------------------------

    def n_classes(self, model: Sequential, loss: Loss) -> int:
        """How many class labels the outputs stand for: one per output for exclusive classes
        (softmax), two for a single yes/no output; 0 when labels do not apply (multi-label)."""
        if loss.exclusive:
            return model.n_outputs
        return 2 if model.n_outputs == 1 else 0

    def class_labels(self, model: Sequential) -> np.ndarray | None:
        """The labels the decisions stand for, when the model has them and they fit its output."""
        loss = model.loss
        if self.classes is None or loss is None or loss.task != "classification":
            return None
        if len(self.classes) != self.n_classes(model, loss):
            return None  # multi-label: the outputs are independent 0/1 labels
        return np.asarray(self.classes)

    def encode_targets(
        self, model: Sequential, y: Any, n_samples: int, loss: Loss | None = None
    ) -> np.ndarray:
        """Targets in the form the loss trains on: labels mapped through :attr:`classes` (learned
        here from non-numeric ``y`` when the model has none), values through
        :attr:`target_scaling`.

        Raises
        ------
        ValueError
            For a label the model does not know, or targets that do not fit the loss.
        """
        loss = loss or require_loss(model)
        y_array = np.asarray(y) if not hasattr(y, "to_numpy") else y.to_numpy()
        n_classes = self.n_classes(model, loss)
        if loss.task == "classification" and y_array.ndim == 1 and n_classes:
            if self.classes is None and y_array.dtype.kind in "OUSb":
                classes = [json_label(c) for c in np.unique(y_array)]
                if len(classes) != n_classes:
                    shown = ", ".join(map(repr, classes[:8])) + (
                        ", ..." if len(classes) > 8 else ""
                    )
                    raise ValueError(
                        f"y holds {len(classes)} distinct labels ({shown}), but the model's "
                        f"{model.n_outputs} output(s) stand for {n_classes} classes; give the "
                        f"last Dense layer {len(classes)} outputs (1 for two classes with binary "
                        "cross-entropy)"
                    )
                self.classes = classes
            if self.classes is not None and len(self.classes) == n_classes:
                y_array = label_indices(y_array, self.classes)
        Y = check_targets(loss, y_array, n_samples, model.n_outputs, model.dtype)
        if self.target_scaling is not None and loss.task == "regression":
            mean, scale = self.target_scaling
            Y = ((Y - mean) / scale).astype(model.dtype)
        return Y

    # --- outputs ------------------------------------------------------------------------------

    def predict(self, model: Sequential, X: Any) -> np.ndarray:
        """Decisions: class labels (or indices when the model has no :attr:`classes`), 0/1
        labels (multi-label), or values in the target's own units (regression).

        Returns
        -------
        array of shape (n,) for a single output or class, else (n, n_outputs)
        """
        loss = require_loss(model)
        result = loss.predict(model.logits(X))
        if loss.task == "regression" and self.target_scaling is not None:
            mean, scale = self.target_scaling
            result = result * scale + mean
        if result.ndim == 2 and result.shape[1] == 1:
            result = result[:, 0]
        labels = self.class_labels(model)
        return result if labels is None else labels[result]

    def predict_proba(self, model: Sequential, X: Any) -> np.ndarray:
        """The loss's link applied to the logits: softmax or sigmoid probabilities, columns in
        the order of :attr:`classes`; (n, n_outputs)."""
        Z = model.logits(X)  # a new array: the probabilities overwrite it
        return require_loss(model).link(Z, out=Z)

    def evaluate(self, model: Sequential, X: Any, y: Any) -> dict[str, float]:
        """Mean loss and the loss's metric (accuracy or R²) on ``(X, y)``; ``y`` as for fit."""
        loss = require_loss(model)
        Z = model.logits(X)
        Y = self.encode_targets(model, y, Z.shape[0], loss)
        value, _ = loss(Z, Y)
        return {"loss": value, loss.metric_name: loss.metric(Z, Y)}


def _numbers(column: Any) -> np.ndarray:
    """A column of a mapping as numbers when its cells are (a list of row dicts gives objects);
    anything else as it is, for check_features to name."""
    array = np.asarray(column)
    if array.dtype == object:
        try:
            return array.astype(np.float64)
        except (TypeError, ValueError):
            return array
    return array


def require_loss(model: Sequential) -> Loss:
    """The model's loss; a NotFittedError when it has none (its outputs have no link)."""
    if model.loss is None:
        raise NotFittedError(
            "this model has no loss, so its outputs have no link; pass loss=... to the model "
            "or to fit()"
        )
    return model.loss


def json_label(value: Any) -> Any:
    """A class label as a plain JSON value (NumPy scalars become Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


def label_indices(y: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Class indices of the labels ``y`` in ``classes``; an unknown label is an error."""
    lookup = {label: i for i, label in enumerate(classes)}
    try:
        return np.fromiter((lookup[json_label(v)] for v in y), dtype=np.intp, count=len(y))
    except KeyError as exc:
        shown = ", ".join(map(repr, classes[:12])) + (", ..." if len(classes) > 12 else "")
        raise ValueError(
            f"y holds the label {exc.args[0]!r}, which the model does not know; its classes are "
            f"{shown}"
        ) from None
    except TypeError as exc:  # an unhashable label
        raise ValueError(f"y holds a label that cannot be a class: {exc}") from None


# --- the training options ------------------------------------------------------------------------

#: Settings a resumed run may change when the caller names them in ``resume_overrides``. The
#: validation split is not among them: the checkpoint's held-out rows belong to the saved one.
OVERRIDABLE = (
    "shuffle",
    "clip_norm",
    "schedule",
    "early_stopping",
    "patience",
    "min_delta",
    "sample_weight",
    "loss",
)


@dataclass(frozen=True)
class FitConfig:
    """Every option of :func:`matnet.fit`, checked once when made (each is documented there).

    ``matnet.fit(model, X, y, config, **options)``, ``model.fit(X, y, config, **options)`` and the
    front ends all take one: ``options`` replace fields of ``config``. An unknown option is a
    TypeError naming it; a bad value a ValueError naming the value and what it must be, raised
    before any work starts.
    """

    loss: Any = None
    optimizer: Any = "adam"
    learning_rate: float | None = None
    l2: float = 0.0
    epochs: int = 10
    batch_size: int = 32
    shuffle: bool = True
    seed: Any = 0
    validation_data: Any = None
    validation_fraction: float = 0.0
    early_stopping: bool = False
    patience: int = 10
    min_delta: float = 0.0
    schedule: Any = None
    clip_norm: float | None = None
    sample_weight: Any = field(default=None, repr=False)
    callbacks: Any = None
    verbose: int = 1
    on_divergence: str = "raise"
    checkpoint: str | os.PathLike | None = None
    checkpoint_every: int | str = "epoch"
    resume: Any = False
    comm: Any = None
    rows: Any = field(default=None, repr=False)
    resume_overrides: Any = ()
    threads: int | None = None

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        p = self.patience
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 0:
            raise ValueError(f"patience={p!r} must be a non-negative integer")
        v = self.validation_fraction
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1):
            raise ValueError(f"validation_fraction={v!r} must be in [0, 1)")
        d = self.min_delta
        if not (isinstance(d, (int, float)) and math.isfinite(d) and d >= 0):
            raise ValueError(f"min_delta={d!r} must be a finite non-negative number")
        c = self.clip_norm
        if c is not None and not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
            raise ValueError(f"clip_norm={c!r} must be a positive number or None")
        if self.verbose not in (0, 1, 2, False, True):
            raise ValueError(f"verbose={self.verbose!r} must be 0, 1 or 2")
        if self.on_divergence not in ("raise", "warn"):
            raise ValueError(f"on_divergence={self.on_divergence!r} must be 'raise' or 'warn'")
        if self.checkpoint_every != "epoch":
            check_positive_int("checkpoint_every", self.checkpoint_every)
        if self.threads is not None:
            check_positive_int("threads", self.threads)
        object.__setattr__(self, "resume_overrides", _overrides(self.resume_overrides))

    @classmethod
    def of(
        cls, config: FitConfig | None = None, options: dict[str, Any] | None = None
    ) -> FitConfig:
        """``config`` (default: all defaults) with ``options`` replacing its fields.

        Raises
        ------
        TypeError
            For an option that is no field (with the closest field's name).
        """
        options = options or {}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"fit() got an unknown option {unknown[0]!r}{hint}")
        if config is not None and not isinstance(config, FitConfig):
            raise TypeError(f"config must be a FitConfig, got {type(config).__name__}")
        base = config or cls()
        return replace(base, **options) if options else base


def _overrides(resume_overrides: Any) -> frozenset[str]:
    if isinstance(resume_overrides, str):
        resume_overrides = (resume_overrides,)
    try:
        names = frozenset(resume_overrides)
    except TypeError:
        raise TypeError(
            f"resume_overrides must be a list of setting names, got {resume_overrides!r}"
        ) from None
    unknown = sorted(str(name) for name in names - set(OVERRIDABLE))
    if unknown:
        raise ValueError(
            f"resume_overrides names {', '.join(map(repr, unknown))}, which a resumed run cannot "
            f"change; it may name {', '.join(OVERRIDABLE)}"
        )
    return names


def with_fit_signature(function: Callable[..., Any]) -> Callable[..., Any]:
    """Give a ``fit(..., config=None, **options)`` function the signature that lists every
    :class:`FitConfig` field as a keyword with its default, so ``help()``, IDEs and
    ``inspect.signature`` show the options, from their one definition."""
    signature = inspect.signature(function)
    leading = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    options = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=f.default if f.default is not MISSING else None,
        )
        for f in fields(FitConfig)
    ]
    function.__signature__ = signature.replace(parameters=[*leading, *options])  # type: ignore[attr-defined]
    return function
