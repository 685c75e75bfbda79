"""``TabularClassifier`` and ``TabularRegressor``: matnet's tabular recipe behind scikit-learn's API.

Unlike :class:`~matnet.sklearn.MLPClassifier` (scikit-learn's defaults, exactly), these estimators
default to the recipe of :mod:`matnet.tabular.recipe`: standardized inputs with a learnable scale,
periodic numerical embeddings, a BatchEnsemble of k MLPs, Adam(β2 = 0.95) under the cos-log schedule,
label smoothing, best-epoch selection on held-out rows, and (regression) standardized targets.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils._param_validation import Interval, StrOptions
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("matnet.sklearn needs scikit-learn: pip install 'matnet[sklearn]'") from exc

from matnet.tabular import TabularRecipe, infer_columns
from matnet.tabular.build import is_table, prepare_tabular

__all__ = ["TabularClassifier", "TabularRegressor"]

_DEFAULT = TabularRecipe()


class _TabularBase(BaseEstimator):
    """The parameters and the fit shared by both estimators."""

    _task = ""
    # Declared as scikit-learn declares its own, and checked by its _validate_params at fit.
    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like"],
        "n_ensemble": [Interval(Integral, 1, None, closed="left")],
        "n_frequencies": [Interval(Integral, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "categorical": [None, str, list],
        "numeric": [None, str, list],
        "drop": [None, str, list],
        "keep": [None, str, list],
        "decimal": [None, StrOptions({".", ","})],
        "class_weight": [None, StrOptions({"balanced"}), dict],
        "dtype": [StrOptions({"float32", "float64"})],
        "random_state": [None, Interval(Integral, 0, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        hidden_layer_sizes: tuple[int, ...] = _DEFAULT.hidden,
        n_ensemble: int = _DEFAULT.k,
        n_frequencies: int = _DEFAULT.n_frequencies,
        dropout: float = _DEFAULT.dropout,
        max_iter: int = _DEFAULT.epochs,
        batch_size: int = _DEFAULT.batch_size,
        learning_rate_init: float = _DEFAULT.learning_rate,
        weight_decay: float = _DEFAULT.weight_decay,
        label_smoothing: float = _DEFAULT.label_smoothing,
        validation_fraction: float = _DEFAULT.validation_fraction,
        categorical: list[str] | None = None,
        numeric: list[str] | None = None,
        drop: list[str] | None = None,
        keep: list[str] | None = None,
        decimal: str | None = None,
        class_weight: str | dict | None = None,
        dtype: str = "float32",
        random_state: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.n_ensemble = n_ensemble
        self.n_frequencies = n_frequencies
        self.dropout = dropout
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.validation_fraction = validation_fraction
        self.categorical = categorical
        self.numeric = numeric
        self.drop = drop
        self.keep = keep
        self.decimal = decimal
        self.class_weight = class_weight
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def _recipe(self) -> TabularRecipe:
        self._validate_params()
        fraction = self.validation_fraction
        return TabularRecipe(
            hidden=tuple(int(h) for h in self.hidden_layer_sizes),
            k=self.n_ensemble,
            n_frequencies=self.n_frequencies,
            dropout=self.dropout,
            epochs=self.max_iter,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate_init,
            weight_decay=self.weight_decay,
            label_smoothing=self.label_smoothing,
            validation_fraction=float(fraction),
        )

    def _features(self, X: Any, y: Any = None) -> tuple[Any, Any]:
        """Numeric X checked as scikit-learn does; a raw table (a DataFrame with text columns or
        gaps, or an object array) kept as it is for the model's table preprocessing."""
        fitting = y is not None
        if fitting:
            self._raw = is_table(X)
        if not fitting:
            check_is_fitted(self)
        if not self._raw:
            if fitting:
                kwargs = (
                    {"multi_output": True, "y_numeric": True} if self._task == "regression" else {}
                )
                return validate_data(self, X, y, dtype=[np.float64, np.float32], **kwargs)
            return validate_data(self, X, reset=False, dtype=[np.float64, np.float32]), None
        if fitting:
            self.n_features_in_ = int(np.shape(X)[1])
            if hasattr(X, "columns"):
                self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
            if len(X) != len(y):
                raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
            return X, np.asarray(y)
        if np.shape(X)[1] != self.n_features_in_:
            raise ValueError(
                f"X has {np.shape(X)[1]} columns; the estimator was fitted on {self.n_features_in_}"
            )
        return X, None

    def _fit_model(
        self,
        X: Any,
        y: np.ndarray,
        classes: list[Any] | None,
        sample_weight: Any = None,
        class_weight: Any = None,
    ) -> None:
        recipe = self._recipe()  # every parameter checked before any work
        columns = self._columns()
        report = None
        if self._raw:
            report = infer_columns(X, **columns)
            self.column_report_ = report
        run = prepare_tabular(
            X,
            y,
            task=self._task,
            classes=classes,
            recipe=recipe,
            report=report,
            dtype=self.dtype,
            seed=0 if self.random_state is None else int(self.random_state),
            feature_names=getattr(self, "feature_names_in_", None),
            sample_weight=sample_weight,
            class_weight=class_weight,
        )
        self.history_ = run.fit(verbose=self.verbose)
        self.model_ = run.model
        self.n_iter_ = len(self.history_)
        self.best_epoch_ = self.history_.best_epoch

    def _columns(self) -> dict[str, Any]:
        """The column overrides, for a table (they name columns, so a numeric array has none)."""
        return {
            "categorical": self.categorical,
            "numeric": self.numeric,
            "drop": self.drop,
            "keep": self.keep,
            "decimal": self.decimal,
        }


class TabularClassifier(ClassifierMixin, _TabularBase):
    """matnet's tabular recipe as a scikit-learn classifier.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int
        Hidden widths of each ensemble member.
    n_ensemble : int
        BatchEnsemble members (k).
    n_frequencies : int
        Cosines per numeric column of the PeriodicLinear (PBLD) numerical embedding (0: none;
        tables with over 100 numeric columns get none).
    dropout : float
    max_iter : int
        Epochs.
    batch_size : int
        At most an eighth of the training rows.
    learning_rate_init : float
        The peak of the cos-log schedule.
    weight_decay : float
        AdamW's decoupled weight decay (0: Adam).
    label_smoothing : float
    validation_fraction : float
        Stratified held-out rows that pick the best epoch (0: keep the last epoch).
    categorical, numeric, drop, keep : list of str, optional
        Column overrides for a table (a DataFrame, a mapping of columns, a list of row dicts):
        columns forced to be categories or numbers, left out, or kept although they look like
        ids or constants (see :func:`matnet.tabular.infer_columns`).
    decimal : {".", ","}, optional
        The decimal separator of numbers given as text (default: inferred per column).
    class_weight : "balanced", dict or None
        Each class's weight in the loss: ``"balanced"`` gives class c the weight
        ``n / (k · n_c)`` over the training rows; a dict maps labels to weights (1 for the rest).
    dtype : {"float32", "float64"}
    random_state : int or None
        Weights, shuffling, dropout and the validation split (the same seed scheme as
        ``matnet train --seed``, so both give the same weights).
    verbose : int

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    model_ : matnet.Sequential
        Input (n, n_features_in_), output (n, n_classes) logits; carries the class labels.
    column_report_ : matnet.tabular.ColumnReport
        For a table: each column's type, the columns dropped and why.
    history_ : matnet.History
    best_epoch_ : int
        The epoch whose weights were kept.
    """

    _task = "classification"

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TabularClassifier:
        """Fit on X (n, n_features) and labels y (n,). X is numeric, or a raw table (a DataFrame
        with text columns or gaps, an object array) that the model's own preprocessing layers
        (:func:`matnet.tabular.preprocessor`) encode, so ``model_`` takes raw rows too.
        ``sample_weight`` (n,) weighs each row's loss, times its class's ``class_weight``."""
        X, y = self._features(X, y)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"TabularClassifier needs at least 2 classes in y, got {len(self.classes_)}"
            )
        labels = [c.item() if hasattr(c, "item") else c for c in self.classes_]
        self._fit_model(X, codes, labels, sample_weight, self.class_weight)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, (n, n_classes)."""
        X, _ = self._features(X)
        return np.asarray(self.model_.predict_proba(X), dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """Class labels, (n,)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class TabularRegressor(RegressorMixin, _TabularBase):
    """matnet's tabular recipe as a scikit-learn regressor; targets are standardized for training
    (the network learns ``(y − mean) / std``) and predictions returned in y's units.

    Parameters are those of :class:`TabularClassifier` (``label_smoothing`` is unused, and a
    ``class_weight`` is refused: it weighs classes).

    Attributes
    ----------
    model_ : matnet.Sequential
        Input (n, n_features_in_), output (n, n_targets) in y's units (its target scaling).
    history_ : matnet.History
    best_epoch_ : int
    """

    _task = "regression"

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TabularRegressor:
        """Fit on X (n, n_features) and y (n,) or (n, n_targets); X numeric or a raw table, as
        for :meth:`TabularClassifier.fit`; ``sample_weight`` (n,) weighs each row's loss."""
        X, y = self._features(X, y)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        self._fit_model(X, y, None, sample_weight, self.class_weight)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions in y's units: (n,) for a 1-D y, else (n, n_targets)."""
        X, _ = self._features(X)
        out = np.asarray(self.model_.predict(X), dtype=np.float64).reshape(len(X), -1)
        return out[:, 0] if self._y_1d else out
