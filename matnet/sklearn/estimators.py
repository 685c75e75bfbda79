"""The estimators of :mod:`matnet.sklearn`: parameters, input checks, the network, prediction and
model files. Training runs through matnet's loop with scikit-learn's rules from
:mod:`matnet.sklearn.rules`; prediction through the model's own inference forward pass."""

from __future__ import annotations

import json
import math
import numbers
import os
from itertools import pairwise
from typing import Any

import numpy as np

try:
    import scipy.sparse as sp
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import _safe_indexing
    from sklearn.utils._param_validation import Interval, Options, StrOptions
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        f"matnet.sklearn needs scikit-learn >= 1.6 and SciPy: pip install 'matnet[sklearn]' ({exc})"
    ) from exc

from matnet.activations import activation_names
from matnet.backend import blas_threads
from matnet.errors import ModelFileError, TrainingDivergedError
from matnet.io import load_tensors, model_from_tensors, model_metadata, save_tensors
from matnet.layers import Activation, Dense, Dropout, Layer
from matnet.losses import (
    BinaryCrossEntropy,
    Loss,
    MeanSquaredError,
    PoissonLoss,
    SoftmaxCrossEntropy,
)
from matnet.model import Sequential
from matnet.optim import SGD, Adam, AdamW, Optimizer, get_optimizer
from matnet.sklearn.rules import (
    Progress,
    SklearnLoss,
    SklearnRate,
    SklearnRules,
    Validation,
    warn_caller,
)
from matnet.training import Callback, as_callbacks, fit
from matnet.training.rows import Rows

__all__ = ["MLPClassifier", "MLPRegressor", "load"]

_STOCHASTIC_SOLVERS = ("sgd", "adam")
# What input validation sets on the estimator; restored when a fit fails before training.
_VALIDATION_STATE = ("n_features_in_", "feature_names_in_", "classes_", "_label_binarizer")
# Rows densified at a time when a sparse X is predicted (the model takes dense blocks).
_SPARSE_BLOCK = 16384
_FILE_KEY = "matnet.sklearn"


# --- parameter checks (at fit time, never in __init__ or set_params) ---------------------------


def _bad(name: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"The '{name}' parameter of the estimator must be {expected}; got {value!r}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_real(
    name: str, value: Any, low: float, high: float, *, low_open: bool, high_open: bool
) -> None:
    ok = _is_real(value) and not math.isnan(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise _bad(name, value, f"a float in the range {interval}")


def _is_view_of(array: Any, view: np.ndarray) -> bool:
    """True when ``array`` is exactly the memory of ``view`` (a parameter in the flat vector)."""
    return (
        isinstance(array, np.ndarray)
        and array.__array_interface__["data"][0] == view.__array_interface__["data"][0]
        and array.shape == view.shape
        and array.strides == view.strides
        and array.dtype == view.dtype
    )


def _check_feature_dtype(X: Any) -> None:
    """Refuse string, complex and non-numeric object features with a clear error, before
    scikit-learn's conversion (which would turn numeric strings into numbers silently, dump the
    whole array for complex input, or fail with numpy's bare message).

    Object arrays of numbers convert, as scikit-learn's contract (``check_dtype_object``) requires.
    """
    if sp.issparse(X) or not isinstance(X, (np.ndarray, list, tuple)):
        return  # DataFrames and other containers: scikit-learn's own checks
    try:
        A = np.asarray(X) if not isinstance(X, np.ndarray) else X
    except ValueError:
        return  # ragged: scikit-learn reports it
    kind = A.dtype.kind
    if kind in "USV":
        raise TypeError(
            f"X has dtype {A.dtype}; matnet needs numeric features (encode strings or categories "
            "as numbers first)"
        )
    if kind == "c":
        raise ValueError(
            f"Complex data not supported: X has dtype {A.dtype}; matnet needs real-valued "
            "features (take X.real or abs(X) first)"
        )
    if kind == "O":
        try:
            np.asarray(A, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            where = ""
            if A.ndim == 2:
                for (i, j), value in np.ndenumerate(A):
                    try:
                        float(value)
                    except (TypeError, ValueError):
                        where = f" {value!r} at row {i}, column {j}"
                        break
            raise TypeError(
                f"X has dtype object with a non-numeric entry{where}; matnet needs numeric "
                f"features (encode strings or categories as numbers first): {exc}"
            ) from None


def _as_generator(random_state: Any) -> np.random.Generator:
    """The Generator that drives initialization, shuffling, dropout and the validation split.

    None draws fresh entropy (never NumPy's global state); an int seeds a new Generator on every fit,
    as an int ``random_state`` re-seeds scikit-learn's; a ``RandomState`` is advanced by one draw.
    """
    if random_state is None:
        return np.random.default_rng()
    if _is_int(random_state):
        return np.random.default_rng(int(random_state))
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(int(random_state.randint(np.iinfo(np.int32).max)))
    raise _bad(
        "random_state", random_state, "None, an int, a numpy.random.RandomState or Generator"
    )


def _check_two_classes(lb: Any, what: str) -> None:
    """A classifier learns to tell classes apart: one class alone is refused (as the CLI does)."""
    if lb.y_type_ != "multilabel-indicator" and len(lb.classes_) < 2:
        raise ValueError(
            f"{what} has only one class ({np.asarray(lb.classes_)[0].item()!r}); a classifier needs "
            "samples of at "
            "least two classes"
        )


# --- the shared estimator ----------------------------------------------------------------------


class _BaseMLP(BaseEstimator):
    """The training and prediction machinery shared by the classifier and the regressor."""

    # Fitted state, set by fit (records of the stochastic solvers are None where they do not apply).
    _model: Sequential
    _optimizer: Optimizer | None
    loss_curve_: list[float]
    validation_scores_: list[float] | None
    validation_loss_curve_: list[float] | None
    best_validation_score_: float | None
    best_validation_loss_: float | None
    best_loss_: float | None

    # The subclass's __init__ lists the parameters; this one holds their checks and the loop.

    # --- structure -----------------------------------------------------------------------------

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        if not all(_is_int(s) for s in sizes):
            raise _bad("hidden_layer_sizes", self.hidden_layer_sizes, "an int or ints")
        if any(s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _hidden_activations(self, n_hidden: int) -> list[str]:
        acts = self.activation
        # scikit-learn's four names and every other registered activation (softmax is no hidden
        # activation: its rows would be tied together).
        allowed = tuple(name for name in activation_names() if name != "softmax")
        if isinstance(acts, str):
            acts = [acts] * n_hidden
            names = [self.activation]
        else:
            acts = names = list(acts) if hasattr(acts, "__iter__") else [acts]
            if len(acts) != n_hidden:
                raise ValueError(
                    f"activation has {len(acts)} entries for {n_hidden} hidden layers; give one "
                    "name, or one per hidden layer"
                )
        for name in names:
            if not (isinstance(name, str) and name in allowed):
                raise _bad("activation", self.activation, f"a str among {set(allowed)} or a list")
        return acts

    def _dropout_rates(self, n_hidden: int) -> list[float]:
        rates = self.dropout
        if _is_real(rates):
            rates = [rates] * n_hidden
        elif isinstance(rates, (list, tuple, np.ndarray)):
            rates = list(rates)
        else:
            raise _bad("dropout", rates, "a float in [0, 1) or a list of them")
        if len(rates) != n_hidden:
            raise ValueError(
                f"dropout has {len(rates)} rates for {n_hidden} hidden layers; give one rate, or "
                "one per hidden layer"
            )
        for rate in rates:
            _check_real("dropout", rate, 0.0, 1.0, low_open=False, high_open=True)
        return [float(r) for r in rates]

    # Declared the way scikit-learn declares its own (its MLP's list, plus matnet's parameters),
    # and checked by scikit-learn's _validate_params at fit; the checks no declaration expresses
    # (every hidden width, activation and dropout rate, and pairs of parameters) follow it.
    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [str, "array-like"],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state", np.random.Generator],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        # matnet's SGD keeps momentum < 1; a momentum of 1 never forgets a gradient.
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(numbers.Integral, 1, None, closed="left"),
            Options(numbers.Real, {np.inf}),
        ],
        "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left"), "array-like"],
        "optimizer": [None, StrOptions({"adamw"})],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "dtype": [
            None,
            StrOptions({"float32", "float64"}),
            Options(type, {np.float32, np.float64}),
        ],
        "callbacks": [None, "array-like", Callback, callable],
        "early_stopping_on": [StrOptions({"score", "loss"})],
        "threads": [None, Interval(numbers.Integral, 1, None, closed="left")],
    }

    def _check_params(self) -> None:
        self._validate_params()
        n_hidden = len(self._hidden_sizes())
        self._hidden_activations(n_hidden)
        rates = self._dropout_rates(n_hidden)
        if any(rates) and self.solver == "lbfgs":
            raise ValueError(
                "dropout needs a stochastic solver ('sgd' or 'adam'); 'lbfgs' minimizes a "
                "deterministic loss"
            )
        if self.optimizer == "adamw" and self.solver != "adam":
            raise ValueError(
                f"optimizer='adamw' replaces Adam's update and needs solver='adam', got "
                f"solver={self.solver!r}"
            )
        self._callbacks()

    def _callbacks(self) -> list[Callback]:
        return as_callbacks(self.callbacks)

    # --- input -------------------------------------------------------------------------------

    def _fit_dtype(self, reset: bool) -> Any:
        if self.dtype is not None:
            return np.dtype(self.dtype).type
        if not reset and getattr(self, "_model", None) is not None:
            return self._model.dtype
        return (np.float64, np.float32)  # scikit-learn's rule: keep float32, else float64

    def _check_sample_weight(self, sample_weight: Any, n: int, dtype: Any) -> np.ndarray | None:
        if sample_weight is None:
            return None
        if _is_real(sample_weight):
            return np.full(n, sample_weight, dtype=dtype)
        w = np.asarray(sample_weight)
        if w.ndim != 1 or w.shape[0] != n:
            raise ValueError(
                f"sample_weight.shape == {w.shape}, expected ({n},): one weight per sample"
            )
        if w.dtype.kind not in "iubf":
            raise ValueError(f"sample_weight must be numeric, got dtype {w.dtype}")
        w = w.astype(dtype)
        if not np.all(np.isfinite(w)):
            raise ValueError("sample_weight contains NaN or infinity")
        if np.any(w < 0):
            raise ValueError("Negative values in data passed to sample_weight")
        if not np.any(w > 0):
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return w

    # --- the network ---------------------------------------------------------------------------

    def _build_model(self, layer_units: list[int], dtype: Any, rng: np.random.Generator) -> None:
        n_hidden = len(layer_units) - 2
        acts = self._hidden_activations(n_hidden)
        rates = self._dropout_rates(n_hidden)
        layers: list[Layer] = []
        for i, (n_in, n_out) in enumerate(pairwise(layer_units)):
            layers.append(Dense(n_in, n_out, init="glorot_uniform"))
            if i < n_hidden:
                layers.append(Activation(acts[i]))
                if rates[i]:
                    layers.append(Dropout(rates[i]))
        model = Sequential(layers, dtype=dtype, seed=0, loss=self._make_loss())
        # scikit-learn's initialization: Glorot-uniform weights *and* biases, bound
        # sqrt(6 / (fan_in + fan_out)), or sqrt(2 / ...) for the logistic activation.
        for i, layer in enumerate(model.dense_layers):
            act = acts[min(i, n_hidden - 1)] if n_hidden else self.activation
            factor = 2.0 if act == "logistic" else 6.0
            bound = math.sqrt(factor / (layer.n_in + layer.n_out))
            layer.W[...] = rng.uniform(-bound, bound, (layer.n_in, layer.n_out))
            layer.b[...] = rng.uniform(-bound, bound, layer.n_out)
        self._model = model
        self._link_attributes()

    def _link_attributes(self) -> None:
        """Point coefs_/intercepts_ at the model's parameters (views into its flat vector)."""
        model = self._model
        keys = [i for i, layer in enumerate(model.layers) if isinstance(layer, Dense)]
        self.coefs_ = [model.params[f"{i}.W"] for i in keys]
        self.intercepts_ = [model.params[f"{i}.b"].reshape(-1) for i in keys]
        self.n_layers_ = len(keys) + 1

    def _sync_from_attributes(self) -> None:
        """Copy coefs_/intercepts_ into the model when the user replaced them (not in place)."""
        model = self._model
        keys = [i for i, layer in enumerate(model.layers) if isinstance(layer, Dense)]
        if len(self.coefs_) != len(keys) or len(self.intercepts_) != len(keys):
            raise ValueError(
                f"coefs_ and intercepts_ must hold {len(keys)} arrays each, one per layer; got "
                f"{len(self.coefs_)} and {len(self.intercepts_)}"
            )
        changed = False
        for j, i in enumerate(keys):
            for name, arrays, view in (
                ("W", self.coefs_, model.params[f"{i}.W"]),
                ("b", self.intercepts_, model.params[f"{i}.b"].reshape(-1)),
            ):
                if _is_view_of(arrays[j], view):
                    continue
                value = np.asarray(arrays[j])
                if value.shape != view.shape:
                    label = "coefs_" if name == "W" else "intercepts_"
                    raise ValueError(
                        f"{label}[{j}] has shape {value.shape}; the network needs {view.shape}"
                    )
                view[...] = value
                changed = True
        if changed:
            self._link_attributes()

    def _make_loss(self) -> Loss:
        losses: dict[str, type[Loss]] = {
            "softmax": SoftmaxCrossEntropy,
            "logistic": BinaryCrossEntropy,
            "identity": MeanSquaredError,
            "exp": PoissonLoss,
        }
        return losses[self.out_activation_]()

    # --- prediction: the model's own inference forward pass ------------------------------------

    def _raw_outputs(self, X: Any) -> np.ndarray:
        """The network's logits for validated X, a new array, from :meth:`Sequential.logits`
        (the fused kernels, row blocks and the NaN check of every matnet model).

        A sparse X is densified one block of rows at a time, so memory stays that of a block.
        """
        model = self._model
        if not sp.issparse(X):
            return model.logits(X)
        out = np.empty((X.shape[0], model.n_outputs), dtype=model.dtype)
        for start in range(0, X.shape[0], _SPARSE_BLOCK):
            block = X[start : start + _SPARSE_BLOCK].toarray()
            out[start : start + block.shape[0]] = model.logits(block)
        return out

    def _forward_pass_fast(self, X: Any, check_input: bool = True) -> np.ndarray:
        """The outputs (``out_activation_`` applied), as scikit-learn's method of this name."""
        if check_input:
            _check_feature_dtype(X)
            X = validate_data(
                self, X, accept_sparse=["csr", "csc"], dtype=self._model.dtype, reset=False
            )
        self._sync_from_attributes()
        Z = self._raw_outputs(X)
        return self._make_loss().link(Z, out=Z)

    # --- fit -----------------------------------------------------------------------------------

    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False) -> Any:
        self._check_params()
        if self.early_stopping and incremental and self.solver in _STOCHASTIC_SOLVERS:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        # Every check runs before the network changes; a failed fit leaves a fitted estimator as
        # it was (validation would otherwise already have replaced classes_ or n_features_in_).
        saved = {k: self.__dict__[k] for k in _VALIDATION_STATE if k in self.__dict__}
        try:
            X, y = self._validate_input(X, y, incremental, reset=first_pass)
            n_samples, n_features = X.shape
            sample_weight = self._check_sample_weight(sample_weight, n_samples, X.dtype)
            sample_weight = self._apply_class_weight(sample_weight, y, incremental, X.dtype)
            Y, y_labels = self._encode_targets(y, X.dtype)
            n_outputs = Y.shape[1] if Y.ndim == 2 else len(self.classes_)
            layer_units = [n_features, *self._hidden_sizes(), n_outputs]
            if first_pass:
                dtype = np.dtype(self.dtype).type if self.dtype is not None else X.dtype
            else:
                dtype = self._model.dtype
                units = [self._model.n_features] + [d.n_out for d in self._model.dense_layers]
                if units != layer_units:
                    raise ValueError(
                        f"the network has layer sizes {units} but the data and "
                        f"hidden_layer_sizes need {layer_units}; fit without warm_start to start "
                        "over"
                    )
            if X.dtype != dtype:
                X = X.astype(dtype)
            if not sp.issparse(X):
                X = np.ascontiguousarray(X)
            rng = _as_generator(self.random_state)
            split = None
            if self.early_stopping and self.solver in _STOCHASTIC_SOLVERS:
                split = self._split(X, Y, y_labels, sample_weight, rng, n_outputs)
        except BaseException:
            for key in _VALIDATION_STATE:
                self.__dict__.pop(key, None)
            self.__dict__.update(saved)
            raise

        if first_pass:
            self.n_outputs_ = n_outputs
            self._initialize(y, layer_units, dtype, rng)
        else:
            self._sync_from_attributes()
            self._ensure_records()
        with blas_threads(self.threads):
            if self.solver in _STOCHASTIC_SOLVERS:
                self._fit_stochastic(X, Y, sample_weight, split, rng, incremental)
            else:
                self._fit_lbfgs(X, Y, sample_weight)

        if not np.all(np.isfinite(self._model.flat_params)):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large "
                "values and need to be preprocessed."
            )
        return self

    def _initialize(
        self, y: Any, layer_units: list[int], dtype: Any, rng: np.random.Generator
    ) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.out_activation_ = self._out_activation()
        self._build_model(layer_units, dtype, rng)
        self._optimizer = None
        self._best_params = self._model.flat_params.copy()
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self.best_validation_loss_ = np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.validation_loss_curve_ = None
                self.best_validation_score_ = None
                self.best_validation_loss_ = None

    def _ensure_records(self) -> None:
        """Start the records a warm start needs but the first fit did not keep (it used 'lbfgs',
        or ran without ``early_stopping``); scikit-learn fails with an AttributeError there."""
        if self.solver not in _STOCHASTIC_SOLVERS:
            return
        if getattr(self, "loss_curve_", None) is None:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.best_loss_ = np.inf
        if self.early_stopping and getattr(self, "validation_scores_", None) is None:
            self.validation_scores_ = []
            self.validation_loss_curve_ = []
            self.best_validation_score_ = -np.inf
            self.best_validation_loss_ = np.inf
            self.best_loss_ = None
            self._no_improvement_count = 0
        if not self.early_stopping and self.best_loss_ is None:
            self.best_loss_ = np.inf
            self._no_improvement_count = 0

    def _make_optimizer(self) -> Optimizer:
        if self.solver == "sgd":
            momentum = float(self.momentum)
            return SGD(
                self.learning_rate_init,
                momentum,
                # Nesterov without momentum is plain SGD, which matnet spells nesterov=False.
                nesterov=bool(self.nesterovs_momentum) and momentum > 0,
            )
        if self.optimizer == "adamw":
            return AdamW(
                self.learning_rate_init,
                self.beta_1,
                self.beta_2,
                self.epsilon,
                weight_decay=self.weight_decay,
            )
        return Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)

    def _split(
        self,
        X: Any,
        Y: np.ndarray,
        y_labels: Any,
        w: np.ndarray | None,
        rng: np.random.Generator,
        n_outputs: int,
    ) -> tuple[np.ndarray, Validation]:
        """``(train_rows, validation)``: the rows scikit-learn's early stopping trains on (stratified
        for single-output classification), by index, and the held-out rows as a
        :class:`Validation` whose features are a :class:`~matnet.training.rows.Rows`. X is never
        copied (a memmapped X of GiB stays on disk); the targets, labels and weights are."""
        stratify = y_labels if is_classifier(self) and n_outputs == 1 else None
        # train_test_split's own splitter, asked for the indices it would take the arrays by (the
        # same rows, without indexing X or building an index array of every row first).
        seed = int(rng.integers(np.iinfo(np.int32).max))
        if stratify is not None and np.ndim(stratify) == 1:
            train, val = _stratified_split(stratify, self.validation_fraction, seed)
        else:
            splitter = StratifiedShuffleSplit if stratify is not None else ShuffleSplit
            train, val = next(
                splitter(test_size=self.validation_fraction, random_state=seed).split(X, stratify)
            )
        if val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size of "
                "your dataset."
            )
        labels = _safe_indexing(y_labels, val)
        return train, Validation(Rows(X, val), Y[val], labels, None if w is None else w[val])

    def _batch_size(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warn_caller(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped"
            )
        return int(np.clip(self.batch_size, 1, n))

    def _fit_stochastic(
        self,
        X: Any,
        Y: np.ndarray,
        sample_weight: np.ndarray | None,
        split: tuple | None,
        rng: np.random.Generator,
        incremental: bool,
    ) -> None:
        """'sgd' and 'adam': :func:`matnet.fit`, matnet's one training loop, with scikit-learn's
        rules as its loss, schedule and callbacks (:mod:`matnet.sklearn.rules`).

        The optimizer instance is kept on the estimator, so ``partial_fit`` continues its moments
        and rate. The early-stopping rows are split off here, the scikit-learn way, and scored by
        the callback; ``fit`` sees only the training rows.
        """
        model = self._model
        opt = self._optimizer
        if not incremental or opt is None:
            opt = self._optimizer = self._make_optimizer()
            opt.setup(model.flat_params, model.n_decay)
        loss = SklearnLoss(self._make_loss(), model, self.alpha, opt)
        rows, validation = (None, None) if split is None else split
        kind = self.learning_rate if self.solver == "sgd" else "constant"
        schedule = SklearnRate(kind, self.learning_rate_init, self.power_t)
        rules = SklearnRules(self, loss, schedule, validation, incremental)
        if sp.issparse(X):
            X = X.toarray()  # the loop gathers dense rows (as 'lbfgs' takes a dense X)
        plain_loss = model.loss
        try:
            history = fit(
                model,
                X,
                Y,
                loss=loss,
                optimizer=opt,
                epochs=self.max_iter,
                batch_size=self._batch_size(X.shape[0] if rows is None else rows.shape[0]),
                shuffle=self.shuffle,
                seed=rng,
                schedule=schedule,
                sample_weight=sample_weight,
                callbacks=rules.callbacks(self._callbacks()),
                verbose=0,
                rows=rows,
                threads=self.threads,
            )
        except TrainingDivergedError as exc:
            self._after_divergence(exc)
            return
        finally:
            rules.close()
            model.loss = plain_loss  # fit leaves the wrapper as the model's loss
        if history.interrupted:
            warn_caller("Training interrupted by user.")

    def _after_divergence(self, exc: TrainingDivergedError) -> None:
        """The loop stopped at a non-finite loss or parameter and put back the last finite epoch's
        weights. scikit-learn trains on through NaN, then restores the best validation weights
        (``early_stopping``) or refuses the result: so do these, in its words and with its fixes
        (the loop's own message names ``fit`` options that the estimators do not have)."""
        where = f"at epoch {exc.epoch}, step {exc.step}"
        rate = self._optimizer.learning_rate if self._optimizer is not None else math.nan
        fix = (
            f"scale the input data, or lower learning_rate_init (the rate was {rate:.3g}; try "
            f"{rate / 10:.3g})"
        )
        if self.early_stopping:
            self._model.flat_params[...] = self._best_params
            warn_caller(
                f"Training diverged {where}; the weights of the best validation epoch were kept. "
                f"To train further, {fix}.",
                ConvergenceWarning,
            )
            return
        raise TrainingDivergedError(
            f"Solver produced non-finite parameter weights {where}; the weights at the end of the "
            f"last finite epoch were kept. The input data may contain large values: {fix}."
        ) from exc

    def _objective(
        self, X: np.ndarray, Y: np.ndarray, sample_weight: np.ndarray | None, loss_fn: Loss
    ) -> float:
        """scikit-learn's full objective at the current parameters; fills ``model.flat_grads``.

        ``sum_i w_i l_i / sum(w) + alpha / 2 * ||W||**2 / sum(w)`` (:class:`.rules.SklearnLoss`)
        and its gradient: the backward pass for the data term, ``alpha * W / sum(w)`` added on the
        weights.
        """
        model = self._model
        if not isinstance(loss_fn, SklearnLoss):
            loss_fn = SklearnLoss(loss_fn, model, self.alpha)
        Z, backward = model.forward(X)
        value, dZ = loss_fn(Z, Y, sample_weight)
        backward(dZ)
        k = model.n_decay
        model.flat_grads[:k] += loss_fn.l2 * model.flat_params[:k]
        return value

    def _fit_lbfgs(self, X: Any, Y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        import scipy.optimize

        params, grads = self._model.flat_params, self._model.flat_grads
        loss_fn = SklearnLoss(self._make_loss(), self._model, self.alpha)
        if sp.issparse(X):
            X = X.toarray()
        callbacks = self._callbacks()
        progress = Progress(self.verbose, self.max_iter)

        def loss_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
            params[...] = x
            value = self._objective(X, Y, sample_weight, loss_fn)
            return value, grads.astype(np.float64)

        iteration, stopped = [0], [False]

        def on_iteration(intermediate_result: Any) -> None:
            iteration[0] += 1
            logs = {"loss": float(intermediate_result.fun)}
            progress.update(iteration[0], logs)
            if any(cb.on_epoch_end(iteration[0], dict(logs)) for cb in callbacks):
                stopped[0] = True
                raise StopIteration

        for cb in callbacks:
            cb.on_train_begin({"epochs": self.max_iter, "n_samples": X.shape[0]})
        try:
            result = scipy.optimize.minimize(
                loss_and_grad,
                params.astype(np.float64),
                method="L-BFGS-B",
                jac=True,
                callback=on_iteration,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
            )
        finally:
            progress.close()
        if result.status != 0 and not stopped[0]:
            warn_caller(
                f"lbfgs failed to converge after {result.nit} iteration(s) "
                f"(status={result.status}):\n{result.message}.\n\nIncrease the number of "
                f"iterations to improve the convergence (max_iter={self.max_iter}).\nYou "
                "might also want to scale the data as shown in:\n    "
                "https://scikit-learn.org/stable/modules/preprocessing.html",
                ConvergenceWarning,
            )
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        params[...] = result.x
        for cb in callbacks:
            cb.on_train_end({"epochs_run": self.n_iter_})

    # --- methods ---------------------------------------------------------------------------------

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not "
                "stochastic."
            )
        return True

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classifier; an indicator matrix for multilabel) or real values.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    # --- model files ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted estimator to ``path`` (safetensors layout, atomically; never pickle).

        The network's parameters are the tensors; the metadata holds the estimator's class and
        JSON-representable parameters, ``classes_`` and the label binarizer's state, the input
        width and feature names, and the training record (``loss_curve_``, ``n_iter_``, ...).
        Callbacks and random generators are not stored. :func:`matnet.sklearn.load` (or
        ``MLPClassifier.load``) reads it back; :func:`matnet.load` reads the bare network.
        """
        check_is_fitted(self)
        self._sync_from_attributes()
        state = {
            "class": type(self).__name__,
            "params": _json_params(self.get_params(deep=False)),
            "attributes": {
                name: _to_json(getattr(self, name))
                for name in _SAVED_ATTRIBUTES
                if hasattr(self, name)
            },
        }
        if hasattr(self, "_label_binarizer"):
            lb = self._label_binarizer
            state["label_binarizer"] = {
                "classes_": _to_json(lb.classes_),
                "y_type_": lb.y_type_,
                "sparse_input_": bool(lb.sparse_input_),
            }
        model = self._model
        # The file is one model for every reader: matnet.load and `matnet predict` answer with the
        # estimator's labels, match columns by its feature names and use its loss.
        model.loss = self._make_loss()
        classes = getattr(self, "classes_", None)
        if (
            classes is not None
            and getattr(self._label_binarizer, "y_type_", "") != "multilabel-indicator"
        ):
            model.classes = [_json_label(c) for c in classes]
        names = getattr(self, "feature_names_in_", None)
        model.feature_names = None if names is None else [str(n) for n in names]
        meta = model_metadata(model)
        meta[_FILE_KEY] = json.dumps(state)
        tensors = {key: np.asarray(value) for key, value in {**model.params, **model.state}.items()}
        save_tensors(path, tensors, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Any:
        """Read an estimator written by :meth:`save`; it must be of this class.

        Raises
        ------
        matnet.ModelFileError
            For a missing, corrupted or foreign file, or one holding another estimator class.
        """
        estimator = load(path)
        if not isinstance(estimator, cls):
            raise ModelFileError(
                f"{path}: holds a {type(estimator).__name__}, not a {cls.__name__}; use "
                "matnet.sklearn.load to read any matnet estimator"
            )
        return estimator

    # --- pickling: coefs_/intercepts_ are views, the optimizer keeps its moments -----------------

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state = dict(state)
        if "_model" in state:
            state.pop("coefs_", None)
            state.pop("intercepts_", None)
            self._sync_from_attributes()
        opt = state.get("_optimizer")
        if isinstance(opt, Optimizer):
            state["_optimizer"] = ("matnet.optimizer", opt.config(), opt.state_dict())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        opt = state.get("_optimizer")
        super().__setstate__(state)
        if getattr(self, "_model", None) is not None:
            self._link_attributes()
        if isinstance(opt, tuple) and opt and opt[0] == "matnet.optimizer":
            optimizer = get_optimizer(opt[1])
            optimizer.setup(self._model.flat_params, self._model.n_decay)
            optimizer.load_state_dict(opt[2])
            self._optimizer = optimizer

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


# --- the two estimators ------------------------------------------------------------------------


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's MLPClassifier on matnet's engine.

    Binary problems use one logistic output, multiclass a softmax over ``len(classes_)`` outputs,
    multilabel (an indicator matrix ``y``) one logistic output per label; the log-loss is minimized
    with 'adam', 'sgd' or 'lbfgs'. Labels may be strings or integers.

    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate, learning_rate_init,
    power_t, max_iter, shuffle, random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
    early_stopping, validation_fraction, beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As in :class:`sklearn.neural_network.MLPClassifier`, same defaults. ``activation`` also
        takes 'leaky_relu', 'gelu' or a list with one name per hidden layer. ``random_state`` may
        also be a :class:`numpy.random.Generator`; None draws fresh entropy. ``verbose=1`` shows a
        progress bar, ``verbose=2`` prints scikit-learn's lines.
    dropout : float or list of float, default=0.0
        Inverted-dropout rate after each hidden activation (one for all, or one per hidden layer).
    optimizer : {None, 'adamw'}, default=None
        'adamw' (with ``solver='adam'``) decays the weights by ``learning_rate * weight_decay`` each
        step, apart from the gradient (Loshchilov & Hutter). ``alpha`` still adds its L2 term.
    weight_decay : float, default=0.01
        Decoupled weight decay for ``optimizer='adamw'``.
    class_weight : dict, 'balanced' or None, default=None
        Per-class weights multiplying ``sample_weight`` ('balanced': ``n / (k * count(class))``).
    dtype : {None, 'float32', 'float64'}, default=None
        None follows scikit-learn: float32 input is trained in float32, anything else in float64
        (so results match scikit-learn's precision). 'float32' is about twice as fast.
    callbacks : matnet.Callback, callable or list of them, default=None
        Called at train begin/end, epoch begin/end (``logs`` with loss, validation_score,
        validation_loss, learning_rate) and after each batch; returning True stops training.
    early_stopping_on : {'score', 'loss'}, default='score'
        What ``early_stopping`` (and the ``tol`` rule with it) watches: scikit-learn's validation
        score, or the validation loss (lower is better; the best-loss weights are restored).
    threads : int or None, default=None
        BLAS threads while fitting, through threadpoolctl (installed with scikit-learn). None
        leaves them as they are, but inside a joblib worker (``GridSearchCV(n_jobs=2)``) uses 1,
        so that the workers do not each start a BLAS thread per core.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,) or list for multilabel
    loss_ : float
    best_loss_ : float or None
    loss_curve_ : list of float
    validation_scores_ : list of float or None
    validation_loss_curve_ : list of float or None
        The validation loss (with the L2 term) per epoch when ``early_stopping``; matnet's extra.
    best_validation_score_ : float or None
    best_validation_loss_ : float or None
        The lowest validation loss when ``early_stopping``; matnet's extra.
    t_ : int
    coefs_ : list of ndarray of shape (n_in, n_out)
    intercepts_ : list of ndarray of shape (n_out,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
    n_iter_ : int
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : {'softmax', 'logistic'}
    """

    #: As scikit-learn's attribute (not a parameter): the classifier always minimizes log-loss.
    loss = "log_loss"

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [None, StrOptions({"balanced"}), dict],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dropout=0.0,
        optimizer=None,
        weight_decay=0.01,
        class_weight=None,
        dtype=None,
        callbacks=None,
        early_stopping_on="score",
        threads=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.dtype = dtype
        self.callbacks = callbacks
        self.early_stopping_on = early_stopping_on
        self.threads = threads

    def _out_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, Any]:
        _check_feature_dtype(X)
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=self._fit_dtype(reset),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
            _check_two_classes(self._label_binarizer, "y")
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                unseen = np.setdiff1d(classes, self.classes_, assume_unique=True)
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}; unseen at fit time: "
                    f"{unseen.tolist()} (pass every class to the first partial_fit call)"
                )
        return X, y

    def _apply_class_weight(
        self, sample_weight: np.ndarray | None, y: Any, incremental: bool, dtype: Any
    ) -> np.ndarray | None:
        cw = self.class_weight
        if cw is None:
            return sample_weight
        if not (cw == "balanced" or isinstance(cw, dict)):
            raise _bad("class_weight", cw, "None, 'balanced' or a dict {class: weight}")
        if cw == "balanced" and incremental:
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit (one batch does not "
                "show the class frequencies); pass a dict of class weights instead"
            )
        weights = compute_sample_weight(cw, y).astype(dtype)
        return weights if sample_weight is None else weights * sample_weight

    def _encode_targets(self, y: Any, dtype: Any) -> tuple[np.ndarray, Any]:
        # What LabelBinarizer.transform gives, without its (n, k) intermediate arrays: one logistic
        # column for two classes, class indices (for softmax cross-entropy) for more.
        binarizer, classes = self._label_binarizer, self.classes_
        kind = binarizer.y_type_
        if kind in ("binary", "multiclass") and np.ndim(y) == 1 and len(classes) >= 2:
            if kind == "binary" and len(classes) == 2:
                return (np.asarray(y) == classes[1]).astype(dtype).reshape(-1, 1), y
            if kind == "multiclass":
                index = np.searchsorted(classes, y)
                if np.array_equal(classes[np.minimum(index, len(classes) - 1)], y):
                    return index.astype(np.intp, copy=False), y
        Y = binarizer.transform(y)
        if kind == "multiclass":
            return np.argmax(Y, axis=1).astype(np.intp), y  # class indices for softmax CE
        return np.asarray(Y, dtype=dtype), y

    def _score_outputs(self, out: np.ndarray, y: Any, w: Any) -> float:
        if self.n_outputs_ == 1:
            out = out.ravel()
        return accuracy_score(y, self._label_binarizer.inverse_transform(out), sample_weight=w)

    def predict(self, X: Any) -> np.ndarray:
        """Predict the classes of X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes) for multilabel
        """
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of each class (columns ordered as ``classes_``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log of :meth:`predict_proba`.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
        """
        y_prob = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(y_prob, out=y_prob)

    @available_if(lambda est: est._check_solver())
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None
    ) -> MLPClassifier:
        """One pass over (X, y), keeping the optimizer's state between calls.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            Every class of the whole data; required on the first call, optional afterwards.

        Returns
        -------
        self
        """
        if hasattr(self, "classes_"):
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(
                    f"`classes={classes!r}` is not the same as on last call to partial_fit, was: "
                    f"{self.classes_!r}"
                )
            return self._fit(X, y, sample_weight=sample_weight, incremental=True)
        if classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        lb = LabelBinarizer()
        lb.fit(y if type_of_target(y).startswith("multilabel") else classes)
        _check_two_classes(lb, "classes")
        self._label_binarizer, self.classes_ = lb, unique_labels(classes)
        try:
            return self._fit(X, y, sample_weight=sample_weight, incremental=True)
        except BaseException:
            # A failed first call leaves the estimator unfitted, as it was (not half-fitted with
            # classes_ but no network).
            if not hasattr(self, "coefs_"):
                del self._label_binarizer, self.classes_
            raise

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's MLPRegressor on matnet's engine.

    Minimizes half the squared error (identity output) or, with ``loss='poisson'``, half the
    Poisson deviance (exp output), with 'adam', 'sgd' or 'lbfgs'; one or several outputs.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
    hidden_layer_sizes, activation, solver, ..., max_fun
        As in :class:`sklearn.neural_network.MLPRegressor`, same defaults; see
        :class:`MLPClassifier` for ``activation``, ``random_state`` and ``verbose``.
    dropout, optimizer, weight_decay, dtype, callbacks, early_stopping_on
        matnet's extras, as in :class:`MLPClassifier`.

    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, validation_loss_curve_,
    best_validation_score_, best_validation_loss_, t_, coefs_, intercepts_, n_features_in_,
    feature_names_in_, n_iter_, n_layers_, n_outputs_
        As in :class:`MLPClassifier` (the validation score is R²).
    out_activation_ : {'identity', 'exp'}
    """

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dropout=0.0,
        optimizer=None,
        weight_decay=0.01,
        dtype=None,
        callbacks=None,
        early_stopping_on="score",
        threads=None,
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.dtype = dtype
        self.callbacks = callbacks
        self.early_stopping_on = early_stopping_on
        self.threads = threads

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def _out_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> tuple[Any, Any]:
        _check_feature_dtype(X)
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=self._fit_dtype(reset),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError(
                "Some value(s) of y are negative, which is not allowed for loss='poisson'"
            )
        return X, y

    def _apply_class_weight(self, sample_weight, y, incremental, dtype):
        return sample_weight

    def _encode_targets(self, y: Any, dtype: Any) -> tuple[np.ndarray, Any]:
        return np.asarray(y, dtype=dtype).reshape(y.shape[0], -1), y

    def _score_outputs(self, out: np.ndarray, y: Any, w: Any) -> float:
        if out.shape[1] == 1:
            out = out.ravel()
        return r2_score(y, out, sample_weight=w)

    def predict(self, X: Any) -> np.ndarray:
        """Predict the target(s) of X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One pass over (X, y), keeping the optimizer's state between calls.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Several targets at once (scikit-learn's MLPRegressor supports them without the tag). The
        # classifier's multilabel support is its multi_label tag; multiclass-multioutput it lacks.
        tags.target_tags.multi_output = True
        return tags


# --- model files -------------------------------------------------------------------------------

_SAVED_ATTRIBUTES = (
    "classes_",
    "n_features_in_",
    "feature_names_in_",
    "n_outputs_",
    "out_activation_",
    "n_iter_",
    "t_",
    "loss_",
    "best_loss_",
    "loss_curve_",
    "validation_scores_",
    "validation_loss_curve_",
    "best_validation_score_",
    "best_validation_loss_",
)
_ESTIMATORS: dict[str, type[MLPClassifier] | type[MLPRegressor]] = {
    "MLPClassifier": MLPClassifier,
    "MLPRegressor": MLPRegressor,
}


def _to_json(value: Any) -> Any:
    """A JSON value that :func:`_from_json` turns back into an equal value of the same type."""
    if isinstance(value, np.ndarray):
        return {"ndarray": value.dtype.str, "values": value.tolist()}
    if isinstance(value, np.generic):
        return _to_json(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):  # e.g. class_weight: keys may be ints, which JSON would stringify
        return {"dict": [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and "ndarray" in value:
        dtype = np.dtype(value["ndarray"])
        if dtype.kind == "O":
            array = np.empty(len(value["values"]), dtype=object)
            array[:] = value["values"]
            return array
        return np.asarray(value["values"], dtype=dtype)
    if isinstance(value, dict) and "float" in value:
        return float(value["float"])
    if isinstance(value, dict) and "dict" in value:
        return {_from_json(k): _from_json(v) for k, v in value["dict"]}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that JSON can hold; callbacks and random generators are left out."""
    result = {}
    for key, value in params.items():
        if key == "callbacks" or (key == "random_state" and not _is_int(value)):
            continue
        if key == "dtype" and value is not None:
            value = np.dtype(value).name
        value = _to_json(value)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        result[key] = value
    return result


def _check_loaded_state(estimator: Any, model: Sequential, path: Any) -> None:
    """The estimator state in a file must describe its network (a hand-edited file could claim
    another input width, output count or class list, and fail only later, vaguely, in predict)."""

    def bad(problem: str) -> ModelFileError:
        return ModelFileError(f"{path}: the estimator state does not fit the network: {problem}")

    n_in = getattr(estimator, "n_features_in_", None)
    if n_in != model.n_features:
        raise bad(f"n_features_in_={n_in!r}, but the network takes {model.n_features} inputs")
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and len(names) != model.n_features:
        raise bad(f"{len(names)} feature_names_in_ for {model.n_features} inputs")
    n_out = getattr(estimator, "n_outputs_", None)
    if n_out != model.n_outputs:
        raise bad(f"n_outputs_={n_out!r}, but the network has {model.n_outputs} outputs")
    links: dict[Any, str] = {
        SoftmaxCrossEntropy: "softmax",
        BinaryCrossEntropy: "logistic",
        MeanSquaredError: "identity",
        PoissonLoss: "exp",
    }
    expected = links.get(type(model.loss))
    act = getattr(estimator, "out_activation_", None)
    if is_classifier(estimator):
        lb = getattr(estimator, "_label_binarizer", None)
        classes = getattr(estimator, "classes_", None)
        if lb is None or classes is None or len(lb.classes_) != len(classes):
            raise bad("the classes_ and the label binarizer's classes differ")
        if lb.y_type_ not in ("binary", "multiclass", "multilabel-indicator"):
            raise bad(f"unknown target type {lb.y_type_!r}")
        k = 1 if lb.y_type_ == "binary" else len(classes)
        if k != model.n_outputs or act != estimator._out_activation():
            raise bad(
                f"{len(classes)} classes ({lb.y_type_}, out_activation_={act!r}) for a network "
                f"with {model.n_outputs} outputs and loss {getattr(model.loss, 'name', None)}"
            )
    elif act != estimator._out_activation() or (expected is not None and act != expected):
        raise bad(f"out_activation_={act!r} for loss={estimator.loss!r}")


def load(path: str | os.PathLike) -> MLPClassifier | MLPRegressor:
    """Read an estimator written by ``MLPClassifier.save`` or ``MLPRegressor.save``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    MLPClassifier or MLPRegressor
        Fitted, predicting exactly as the saved one did.

    Raises
    ------
    matnet.ModelFileError
        For a missing, truncated or corrupted file, or one that holds no matnet estimator.
    """
    tensors, metadata = load_tensors(path)
    if _FILE_KEY not in metadata:
        raise ModelFileError(
            f"{path}: holds a bare matnet network, not a scikit-learn estimator; read it with "
            "matnet.load"
        )
    model = model_from_tensors(tensors, metadata, path)
    try:
        state = json.loads(metadata[_FILE_KEY])
        cls = _ESTIMATORS[state["class"]]
        params = {k: _from_json(v) for k, v in state["params"].items()}
        if isinstance(params.get("hidden_layer_sizes"), list):
            params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        estimator = cls(**params)
        for name, value in state["attributes"].items():
            if name not in _SAVED_ATTRIBUTES:
                raise ValueError(f"unexpected attribute {name!r}")
            setattr(estimator, name, _from_json(value))
        if "label_binarizer" in state:
            info = state["label_binarizer"]
            lb = LabelBinarizer()
            lb.classes_ = _from_json(info["classes_"])
            lb.y_type_ = str(info["y_type_"])
            lb.sparse_input_ = bool(info["sparse_input_"])
            estimator._label_binarizer = lb
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path}: the estimator state in the file is invalid: {exc}") from None
    _check_loaded_state(estimator, model, path)
    estimator._model = model
    estimator._optimizer = None
    estimator._best_params = model.flat_params.copy()
    estimator._link_attributes()
    if estimator.solver in _STOCHASTIC_SOLVERS:
        estimator._no_improvement_count = 0
    return estimator


def _stratified_split(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``next(StratifiedShuffleSplit(test_size=test_size, random_state=seed).split(X, y))`` for 1-D
    ``y``: the same checks and messages, the same draws in the same order, so the same indices.

    scikit-learn gathers each class's rows into Python lists (some 70 bytes per row, 150 MiB for
    two million rows); here they stay NumPy arrays.
    """
    from sklearn.model_selection._split import _validate_shuffle_split
    from sklearn.utils import check_random_state
    from sklearn.utils.extmath import _approximate_mode

    y = np.asarray(y)
    n_train, n_test = _validate_shuffle_split(y.shape[0], test_size, None, default_test_size=0.1)
    classes, y_indices, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    if np.min(class_counts) < 2:
        raise ValueError(
            "The least populated classes in y have only 1 member, which is too few. The minimum "
            "number of groups for any class cannot be less than 2. Classes with too few members "
            f"are: {classes[class_counts < 2].tolist()}"
        )
    if n_train < classes.shape[0]:
        raise ValueError(
            f"The train_size = {n_train} should be greater or equal to the number of classes = "
            f"{classes.shape[0]}"
        )
    if n_test < classes.shape[0]:
        raise ValueError(
            f"The test_size = {n_test} should be greater or equal to the number of classes = "
            f"{classes.shape[0]}"
        )
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    del y_indices
    rng = check_random_state(seed)
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train, test = [], []
    for i in range(classes.shape[0]):
        rows = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.append(rows[: n_i[i]])
        test.append(rows[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _json_label(value: Any) -> Any:
    """A class label as a plain JSON value (NumPy scalars become Python ones)."""
    return value.item() if isinstance(value, np.generic) else value
