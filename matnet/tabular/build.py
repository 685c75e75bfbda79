"""The one builder of table models: ``matnet train``, ``TabularClassifier`` / ``TabularRegressor``
and Python users all come here, so the same table, seed and settings give the same weights
whichever front end trained them.

>>> run = prepare_tabular(frame, y, task="regression", seed=0)   # doctest: +SKIP
>>> print(run.report.text())                                      # doctest: +SKIP
>>> history = run.fit()                                            # doctest: +SKIP
>>> run.model.predict(new_rows)                                    # doctest: +SKIP

Randomness, from one integer seed: the initial weights from ``default_rng(seed)``, the held-out
rows from a second ``default_rng(seed)`` (stratified by class for classification), and shuffling and
dropout from a child stream of ``seed`` (the weights' stream again would tie the first dropout
masks to the weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matnet.layers import Layer, Standardize
from matnet.losses import Loss, get_loss
from matnet.mlp import MLP
from matnet.model import Sequential
from matnet.tabular.inference import ColumnReport, infer_columns, table_columns
from matnet.tabular.preprocess import output_width, preprocessor
from matnet.tabular.recipe import TabularRecipe, tabular_fit_options, tabular_loss, tabular_model
from matnet.validation import check_sample_weight, split_validation

__all__ = [
    "TabularFit",
    "build_tabular_model",
    "fit_tabular",
    "is_table",
    "prepare_tabular",
    "row_weights",
    "split_rows",
    "target_scaling",
    "training_stream",
]


def is_table(X: Any) -> bool:
    """True for input that a table model reads (named, possibly raw columns): a DataFrame, a
    mapping of columns, a list of row dicts, or an object array. A numeric array is a matrix."""
    if isinstance(X, dict) or (hasattr(X, "columns") and hasattr(X, "__getitem__")):
        return True
    if isinstance(X, (list, tuple)) and X and isinstance(X[0], dict):
        return True
    return isinstance(X, np.ndarray) and X.dtype == object


def split_rows(
    n: int, fraction: float, y: np.ndarray | None, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row indices ``(train, validation)``: ``fraction`` of the rows (of each class when
    ``stratify``) held out, drawn from ``default_rng(seed)``.

    Raises
    ------
    ValueError
        When the fraction leaves no training or no validation row.
    """
    if not fraction:
        return np.arange(n), np.arange(0)
    labels = np.zeros(n) if y is None else np.asarray(y)
    return split_validation(n, fraction, labels, np.random.default_rng(seed), stratify)


def target_scaling(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, scale)`` per output column of the training targets ``Y`` (n, k): the network
    learns ``(y − mean) / scale``, which suits its initial weights. A constant column gets scale 1.
    """
    Y = np.asarray(Y, dtype=np.float64).reshape(len(Y), -1)
    mean, std = Y.mean(axis=0), Y.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def training_stream(seed: int) -> np.random.Generator:
    """The shuffling and dropout stream of ``seed``: a child, not ``default_rng(seed)`` itself,
    which already drew the initial weights (on MNIST-1D reusing it spread accuracy 3x wider)."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


def build_tabular_model(
    n_outputs: int,
    loss: Loss,
    *,
    report: ColumnReport | None = None,
    n_features: int | None = None,
    recipe: TabularRecipe | str = "tabular",
    hidden: tuple[int, ...] = (128, 64),
    activation: str = "relu",
    dropout: float = 0.0,
    dtype: Any = "float32",
    seed: int = 0,
) -> Sequential:
    """A table model: the preprocessing of ``report``'s columns (or, for a numeric matrix of
    ``n_features`` columns, a Standardize layer) and the recipe's network behind it.

    Parameters
    ----------
    n_outputs : int
        Classes (softmax cross-entropy) or targets.
    loss : Loss
    report : ColumnReport, optional
        The raw table's columns: the model starts with a TableInput and takes raw rows.
    n_features : int, optional
        Without a report: the width of a numeric matrix.
    recipe : TabularRecipe or "mlp"
        matnet's tabular network, or a plain MLP of ``hidden`` widths, ``activation`` and
        ``dropout`` (``--recipe mlp``).
    dtype, seed
        The model's precision, and the seed of its initial weights.

    Returns
    -------
    Sequential
        Unfitted preprocessing (``adapt`` or ``fit`` fits it on the training rows).
    """
    if report is not None:
        front: list[Layer] = preprocessor(None, report=report)
    elif n_features is not None:
        front = [Standardize(n_features)]
    else:
        raise ValueError("build_tabular_model needs a column report or n_features")
    width = output_width(front)
    if isinstance(recipe, TabularRecipe):
        return tabular_model(
            width, n_outputs, loss, front=front, recipe=recipe, dtype=dtype, seed=seed
        )
    network = MLP([width, *hidden, n_outputs], activation, dropout=dropout, dtype=dtype, seed=seed)
    # MLP's layers (and its initializer per activation) behind the preprocessing, which draws
    # nothing, so the same seed gives the same weights as the network alone.
    return Sequential([*front, *network.layers], dtype=dtype, seed=seed, loss=loss)


@dataclass
class TabularFit:
    """A table model ready to train, with the rows it trains and validates on.

    Attributes
    ----------
    model : Sequential
        Preprocessing fitted on the training rows; class labels or target scaling set.
    report : ColumnReport or None
        The raw table's column types (None for a numeric matrix).
    train_rows, validation_rows : ndarray of int
    options : dict
        The keyword arguments of :func:`matnet.fit` that the recipe sets (optimizer, learning
        rate, epochs, batch size, schedule, best-epoch selection); :meth:`fit` takes overrides.
    history : History or None
        After :meth:`fit`.
    """

    model: Sequential
    report: ColumnReport | None
    train_rows: np.ndarray
    validation_rows: np.ndarray
    options: dict[str, Any]
    seed: int
    _X: Any = field(repr=False)
    _y: np.ndarray = field(repr=False)
    #: Each row's weight in the training loss, or None.
    weights: np.ndarray | None = field(default=None, repr=False)
    history: Any = None

    @property
    def targets(self) -> np.ndarray:
        """Every row's target as the model's fit takes it (class labels, or values)."""
        return self._y

    def rows(self, idx: np.ndarray) -> Any:
        """The input rows ``idx`` in the form the model reads (columns of raw cells, or matrix
        rows)."""
        if isinstance(self._X, dict):
            return {name: cells[idx] for name, cells in self._X.items()}
        return self._X[idx]

    def fit(self, **overrides: Any) -> Any:
        """Train with the recipe's options, ``overrides`` winning (``verbose``, ``checkpoint``,
        ``comm``, ``callbacks``, ...); returns the History."""
        train, val = self.train_rows, self.validation_rows
        options = {**self.options, **overrides}
        if not val.size:
            options.setdefault("validation_data", None)
            if "early_stopping" not in overrides:
                options["early_stopping"] = False
        else:
            options["validation_data"] = (self.rows(val), self._y[val])
        if self.weights is not None:
            options["sample_weight"] = self.weights[train]
        self.history = self.model.fit(
            self.rows(train), self._y[train], seed=training_stream(self.seed), **options
        )
        return self.history


def prepare_tabular(
    X: Any,
    y: Any,
    *,
    task: str,
    classes: list[Any] | None = None,
    recipe: TabularRecipe | str | None = None,
    loss: str | Loss | None = None,
    report: ColumnReport | None = None,
    validation_fraction: float | None = None,
    dtype: Any = "float32",
    seed: int = 0,
    feature_names: list[str] | None = None,
    sample_weight: Any = None,
    class_weight: str | dict | None = None,
    **architecture: Any,
) -> TabularFit:
    """Build a table model for ``(X, y)`` and fit its preprocessing on the training rows.

    Parameters
    ----------
    X : DataFrame, mapping of columns, list of row dicts, object array, or numeric array
        A table (anything but a numeric array) gets a TableInput front whose column types are
        ``report`` (inferred here when not given); a numeric array a Standardize layer.
    y : array of shape (n,) or (n, k)
        Class indices into ``classes`` (classification) or values (regression).
    task : {"classification", "regression"}
    classes : list, optional
        The labels the class indices stand for (kept in the model file).
    recipe : TabularRecipe or "mlp", optional
        Default: the tabular recipe.
    loss : str or Loss, optional
        Default: the recipe's for the task.
    validation_fraction : float, optional
        Rows held out to pick the best epoch; default the recipe's (0.1 for "mlp").
    dtype, seed
        Precision; the seed of weights, held-out rows, shuffling and dropout.
    feature_names : list of str, optional
        A numeric array's column names (a table's come from its columns), kept by the model so
        that a DataFrame given to predict is matched by name.
    sample_weight : array-like of shape (n,), optional
        Each row's weight in the training loss (non-negative, finite, not all zero).
    class_weight : "balanced", dict or None
        Classification: each class's weight, multiplying ``sample_weight``. ``"balanced"`` gives
        class c the weight ``n / (k · n_c)`` over the training rows (scikit-learn's rule); a dict
        maps class labels (as in ``classes``) to weights, 1 for a class it does not name.
    **architecture
        For ``recipe="mlp"``: ``hidden``, ``activation``, ``dropout``.

    Returns
    -------
    TabularFit
    """
    recipe = TabularRecipe() if recipe is None else recipe
    tabular_recipe = recipe if isinstance(recipe, TabularRecipe) else None
    if tabular_recipe is not None:
        chosen = tabular_loss(task, tabular_recipe, loss)
    else:
        chosen = get_loss(loss or ("cross_entropy" if task == "classification" else "mse"))
    y = np.asarray(y)
    classification = task == "classification"
    n_outputs = _n_outputs(y, classification, classes, chosen)
    data, report = _rows_of(X, report)
    n = len(next(iter(data.values()))) if isinstance(data, dict) else data.shape[0]
    if n != len(y):
        raise ValueError(f"X has {n} rows but y has {len(y)}")
    if validation_fraction is None:
        validation_fraction = tabular_recipe.validation_fraction if tabular_recipe else 0.1
    train, val = split_rows(n, validation_fraction, y if classification else None, seed,
                            stratify=classification)  # fmt: skip
    model = build_tabular_model(
        n_outputs,
        chosen,
        report=report if isinstance(data, dict) else None,
        n_features=None if isinstance(data, dict) else data.shape[1],
        recipe=recipe,
        dtype=dtype,
        seed=seed,
        **architecture,
    )
    y_fit = _labelled(model, y, classes)
    if isinstance(data, dict) and report is not None:
        model.feature_names = list(report.names)
        model.metadata["columns"] = report.as_dict()  # matnet info shows it
    elif feature_names is not None:
        model.feature_names = [str(name) for name in feature_names]
    if not classification and not chosen.link_name:
        # With the identity link the network learns (y - mean) / scale; a link such as Poisson's
        # exp needs the targets' own non-negative scale.
        model.target_scaling = target_scaling(y[train])
    weights = row_weights(n, y if classification else None, classes, train, sample_weight,
                          class_weight)  # fmt: skip
    fit = TabularFit(model, report if isinstance(data, dict) else None, train, val, {}, seed,
                     data, y_fit, weights)  # fmt: skip
    # The preprocessing's statistics from the training rows alone.
    model.adapt(model.input_matrix(fit.rows(train), finite=False))
    if tabular_recipe is not None:
        fit.options = tabular_fit_options(tabular_recipe, n_rows=train.size)
    return fit


def _rows_of(X: Any, report: ColumnReport | None) -> tuple[Any, ColumnReport | None]:
    """A table as its kept columns by name (with its column report, inferred when not given), or
    a numeric matrix as an array (and no report)."""
    if not is_table(X):
        return np.asarray(X), None
    report = report or infer_columns(X)
    names, cells = table_columns(X)
    by_name = dict(zip(names, cells, strict=True))
    return {name: by_name[name] for name in report.names}, report


def row_weights(
    n: int,
    y: np.ndarray | None,
    classes: list[Any] | None,
    train: np.ndarray,
    sample_weight: Any = None,
    class_weight: str | dict | None = None,
) -> np.ndarray | None:
    """Each row's weight in the training loss: ``sample_weight`` times its class's weight, or None
    when neither is given.

    Parameters
    ----------
    n : int
    y : ndarray of shape (n,) of class indices, or None (regression)
    classes : list, optional
        The labels the indices stand for (a ``class_weight`` dict's keys).
    train : ndarray of int
        The training rows, over which ``"balanced"`` counts the classes.

    Raises
    ------
    ValueError
        For weights that are negative, not finite or all zero, a ``class_weight`` on a regression,
        or a dict naming a label that is no class.
    """
    weights = None if sample_weight is None else check_sample_weight(sample_weight, n, np.float64)
    if class_weight is None:
        return weights
    if y is None:
        raise ValueError("class_weight applies to classification; this is a regression")
    k = len(classes) if classes is not None else int(y.max()) + 1
    if isinstance(class_weight, str) and class_weight == "balanced":
        counts = np.bincount(y[train], minlength=k).astype(np.float64)
        per_class = np.where(counts > 0, train.size / (k * np.maximum(counts, 1)), 0.0)
    elif isinstance(class_weight, dict):
        labels = list(classes) if classes is not None else list(range(k))
        unknown = [key for key in class_weight if key not in labels]
        if unknown:
            raise ValueError(
                f"class_weight names {unknown[0]!r}, which is no class; the classes are "
                + ", ".join(map(repr, labels[:12]))
            )
        per_class = np.asarray([float(class_weight.get(c, 1.0)) for c in labels])
        if not np.all(np.isfinite(per_class)) or np.any(per_class < 0):
            raise ValueError("class_weight values must be finite and non-negative")
    else:
        raise ValueError(
            f"class_weight={class_weight!r} must be 'balanced', a dict {{class: weight}} or None"
        )
    by_row = per_class[y]
    return by_row if weights is None else weights * by_row


def _labelled(model: Sequential, y: np.ndarray, classes: list[Any] | None) -> np.ndarray:
    """The targets as fit takes them: class indices as the labels they stand for, which the model
    carries and its fit maps to the outputs, as for any user (values stay as they are)."""
    if classes is None:
        return y
    model.classes = list(classes)
    labels = np.empty(len(classes), dtype=object)
    labels[:] = model.classes
    return labels[y]


def _n_outputs(y: np.ndarray, classification: bool, classes: Any, loss: Loss) -> int:
    """One output per class (one for two classes under a sigmoid loss), or per target column."""
    if classification:
        n_classes = len(classes) if classes is not None else int(y.max()) + 1
        return 1 if (n_classes == 2 and not loss.exclusive) else n_classes
    return 1 if y.ndim == 1 else y.shape[1]


def fit_tabular(X: Any, y: Any, *, task: str, fit_options: dict | None = None,
                **settings: Any) -> TabularFit:  # fmt: skip
    """:func:`prepare_tabular` then :meth:`TabularFit.fit` with ``fit_options``; returns the
    TabularFit, whose ``model`` and ``history`` are the result."""
    run = prepare_tabular(X, y, task=task, **settings)
    run.fit(**(fit_options or {}))
    return run
