"""Losses: each returns ``(value, dZ)`` together, from the network's raw outputs (logits).

The model's last layer is linear; the loss owns the output link (softmax, sigmoid or identity). Fusing
the link with the loss gives the short gradients

* softmax + cross-entropy:        ``dZ = (softmax(Z) - Y) / n``
* sigmoid + binary cross-entropy: ``dZ = (sigmoid(Z) - Y) / n``
* identity + squared error:       ``dZ = 2 (Z - Y) / (n k)``

which hold only for these pairs. Values come from log-sum-exp forms, so no probability is clipped and no
``exp`` overflows: logits of ±1e4 give finite, correct values and gradients.

Targets: class indices (n,) or one-hot (n, k) for cross-entropy; 0/1 of shape (n,) or (n, k) for
binary cross-entropy (k independent labels: multi-label); real values (n,) or (n, k) for squared error.
``sample_weight`` of shape (n,) weights each example: ``value = sum_i w_i l_i / n``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from matnet import functional as F
from matnet.equations import Equation, shape_text

__all__ = [
    "Loss",
    "SoftmaxCrossEntropy",
    "BinaryCrossEntropy",
    "MeanSquaredError",
    "PoissonLoss",
    "get_loss",
    "register_loss",
    "loss_names",
    "LOSS_NAMES",
]

Array = Any


class Loss(ABC):
    """Base class. Subclasses define ``__call__``, ``link``, ``predict``, targets and a metric.

    A loss also says what it is for, so the front ends need not know it by class: ``task``
    (``"classification"`` or ``"regression"``), ``link`` (the output map, named in ``link_name``), and
    :meth:`describe` (its equations for :func:`matnet.explain`). Add one with :func:`register_loss`.
    """

    name = ""
    metric_name = ""
    #: "classification" (outputs are class scores or 0/1 labels) or "regression" (values).
    task = "regression"
    #: The output map as :func:`matnet.explain` writes it ("softmax", "σ", "exp"; "" for none).
    link_name = ""
    #: Classification only: True when the outputs are exclusive classes (one per output, the
    #: decision is the largest); False when each output is its own yes/no label, so class labels
    #: apply to a single output only (binary: two labels).
    exclusive = False

    def __init__(self) -> None:
        self._grad: Array | None = None

    def _grad_buffer(self, Z: Array) -> Array:
        buf = self._grad
        if (
            buf is None
            or buf.shape[0] < Z.shape[0]
            or buf.shape[1:] != Z.shape[1:]
            or (buf.dtype != Z.dtype)
        ):
            buf = self._grad = np.empty_like(Z)
        return buf[: Z.shape[0]]

    @abstractmethod
    def __call__(
        self, Z: Array, Y: Array, sample_weight: Array | None = None
    ) -> tuple[float, Array]:
        """Return the mean loss over the batch and its gradient with respect to ``Z``.

        Parameters
        ----------
        Z : array of shape (n, k)
            Logits, the output of the model's last (linear) layer.
        Y : array of shape (n,) or (n, k)
            Targets, encoded by :meth:`encode_targets`.
        sample_weight : array of shape (n,), optional

        Returns
        -------
        value : float
        dZ : array of shape (n, k)
            Valid until the next call (a reused buffer).
        """

    @abstractmethod
    def link(self, Z: Array, out: Array | None = None) -> Array:
        """Map logits to the model's outputs (probabilities or predicted values).

        ``out`` (which may be ``Z`` itself) receives the result; by default a new array.
        """

    @abstractmethod
    def predict(self, Z: Array) -> Array:
        """Map logits to decisions: class indices, 0/1 labels, or values."""

    @abstractmethod
    def encode_targets(self, y: Array, n_outputs: int, dtype: Any) -> Array:
        """Validate ``y`` against ``n_outputs`` and return it in the form ``__call__`` expects."""

    @abstractmethod
    def metric(self, Z: Array, Y: Array) -> float:
        """The loss's natural score (higher is better): accuracy or R²."""

    def describe(self, Z: str, n: int, k: int) -> tuple[list[Equation], Equation]:
        """The loss's equations on logits named ``Z`` of shape (n, k): the forward ones (the link,
        then ``L``) and the backward one (``dZ``), as :class:`~matnet.layers.Equation` objects."""
        nk = shape_text(n, k)
        return (
            [Equation(f"L = {self.name}({Z})", f"{nk} → scalar", "", "L")],
            Equation(f"d{Z} = ∂L/∂{Z}", nk, "", f"d{Z}"),
        )

    def sample_targets(self, rng: np.random.Generator, n: int, k: int) -> Array:
        """Random targets of the right kind for ``n`` rows and ``k`` outputs (explanations, tests)."""
        return rng.standard_normal((n, k))

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_grad": None}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _weights(sample_weight: Array | None, n: int) -> Array | None:
    if sample_weight is None:
        return None
    return np.asarray(sample_weight).reshape(n, 1)


def _weighted_mean(
    losses: Array, G: Array, sample_weight: Array | None, n: int
) -> tuple[float, Array]:
    """The batch's mean loss and ``dZ = G / n`` (each row weighted when ``sample_weight`` is given),
    from per-element losses and the unscaled gradient ``G`` (scaled in place)."""
    w = _weights(sample_weight, n)
    if w is None:
        G /= n
        return float(losses.sum() / n), G
    G *= w / n
    return float(np.sum(losses * w) / n), G


def _assign(out: Array, values: Array) -> Array:
    out[...] = values
    return out


def _check_finite_targets(y: Array, name: str) -> None:
    if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} targets contain NaN or infinity; remove or impute those rows")


class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy from logits: ``l = logsumexp(Z_i) - Z_i[y_i]``.

    Parameters
    ----------
    label_smoothing : float in [0, 1)
        ``ε``: the target becomes ``Y' = (1 − ε) Y + ε / k`` (k classes), so the loss is
        ``l = logsumexp(Z_i) − (1 − ε) Z_i[y_i] − ε mean_j Z_ij`` and its gradient
        ``dZ = (softmax(Z) − Y') / n``. It keeps the logits from growing without bound on classes
        the network already separates (RealMLP uses ε = 0.1). 0, the default, is plain cross-entropy.
    """

    name = "softmax_cross_entropy"
    metric_name = "accuracy"
    task = "classification"
    link_name = "softmax"
    exclusive = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        eps = label_smoothing
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 1:
            raise ValueError(f"label_smoothing={eps!r} must be a number in [0, 1)")
        self.label_smoothing = float(eps)

    def config(self) -> dict[str, Any]:
        if not self.label_smoothing:
            return {"name": self.name}
        return {"name": self.name, "label_smoothing": self.label_smoothing}

    def __repr__(self) -> str:
        eps = self.label_smoothing
        return f"SoftmaxCrossEntropy(label_smoothing={eps})" if eps else "SoftmaxCrossEntropy()"

    def describe(self, Z, n, k):
        nk = shape_text(n, k)
        return (
            [
                Equation(f"P = softmax({Z})", f"{nk} → {nk}", "row-wise, from the logits", "P"),
                Equation("L = −(1/n) Σᵢ log P[i, yᵢ]", f"{nk} → scalar", "mean cross-entropy", "L"),
            ],
            Equation(
                f"d{Z} = (P − Y) / n",
                f"{nk} − {nk} → {nk}",
                "Y one-hot; softmax with cross-entropy only"
                + (
                    f"; Y smoothed: (1 − {self.label_smoothing:g})·onehot + {self.label_smoothing:g}/{k}"
                    if self.label_smoothing
                    else ""
                ),
                f"d{Z}",
            ),
        )

    def sample_targets(self, rng, n, k):
        return rng.integers(0, k, size=n)

    def __call__(self, Z, Y, sample_weight=None):
        n, k = Z.shape
        G = self._grad_buffer(Z)
        Zt, ones, rows = self._workspace(Z)
        # Row maxima through a (k, n) copy: NumPy vectorizes a reduction along the long axis only,
        # and the rows of logits are short. Rows sums of exp likewise as G @ ones(k, 1) on BLAS.
        np.copyto(Zt, Z.T)
        np.subtract(Z, np.maximum.reduce(Zt, axis=0)[:, None], out=G)  # shifted, max 0 per row
        if Y.ndim == 1:
            # Z[i, y_i] through flat indices i * k + y_i: one 1-D take (and one 1-D fancy update
            # below) instead of 2-D fancy indexing, which costs more per step.
            flat = rows * k
            flat += Y
            G_flat = G.reshape(-1)  # a view: G is a leading slice of a C-contiguous buffer
            picked = G_flat.take(flat)  # Z[y], shifted
        else:
            picked = np.sum(G * Y, axis=1)
        eps = self.label_smoothing
        if eps:  # the smoothed target's pick: (1 - eps) Z[y] + eps mean_j Z_j (shifted alike)
            picked = (1 - eps) * picked + eps * np.matmul(G, ones)[:, 0] / k
        np.exp(G, out=G)
        S = np.matmul(G, ones)  # (n, 1) sums of exp: logsumexp(Z) = log(S), shifted
        w = _weights(sample_weight, n)
        if w is None:
            value = (float(np.log(S).sum()) - float(picked.sum())) / n
        else:
            value = float(np.vdot(np.log(S)[:, 0] - picked, w)) / n
        # dZ = (softmax(Z) - Y) / n, valid for softmax + cross-entropy only.
        S *= n
        G /= S
        if Y.ndim == 1:
            G_flat[flat] -= (1 - eps) / n
        else:
            G -= Y * ((1 - eps) / n)
        if eps:
            G -= eps / (k * n)
        if w is not None:
            G *= w
        return value, G

    def _workspace(self, Z: Array) -> tuple[Array, Array, Array]:
        """Reused ``(k, n)`` scratch for the transposed logits, ``ones(k, 1)`` and ``arange(n)``."""
        n, k = Z.shape
        work = self.__dict__.get("_work")
        if work is None or work[0].shape[0] != k or work[0].dtype != Z.dtype or work[2].size < n:
            work = self._work = (
                np.empty((k, n), dtype=Z.dtype),
                np.ones((k, 1), dtype=Z.dtype),
                np.arange(n),
            )
        Zt, ones, rows = work
        return Zt[:, :n], ones, rows[:n]

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_work": None}

    def link(self, Z, out=None):
        if not isinstance(Z, np.ndarray):
            return F.softmax(Z) if out is None else _assign(out, F.softmax(Z))
        # functional.softmax's result, with its short-row reductions done as in __call__: the row
        # maxima along the long axis of a (k, n) copy, the row sums on BLAS.
        out = np.empty_like(Z) if out is None else out
        np.subtract(Z, np.maximum.reduce(np.ascontiguousarray(Z.T), axis=0)[:, None], out=out)
        np.exp(out, out=out)
        out /= np.matmul(out, np.ones((Z.shape[1], 1), dtype=out.dtype))
        return out

    def predict(self, Z):
        return np.argmax(Z, axis=1)

    def encode_targets(self, y, n_outputs, dtype):
        y = np.asarray(y)
        if y.ndim == 1:
            if y.dtype.kind == "f":
                _check_finite_targets(y, "class")
                if not np.all(y == np.round(y)):
                    raise ValueError(
                        "cross-entropy targets must be integer class indices or one-hot rows; "
                        "got non-integer floats"
                    )
            elif y.dtype.kind not in "iub":
                raise ValueError(
                    f"cross-entropy targets must be integer class indices, got dtype {y.dtype}; "
                    "encode string labels first (e.g. with numpy.unique(..., return_inverse=True))"
                )
            y = y.astype(np.intp)
            if y.size and (y.min() < 0 or y.max() >= n_outputs):
                raise ValueError(
                    f"class indices must lie in [0, {n_outputs - 1}] for a model with "
                    f"{n_outputs} outputs; got values from {y.min()} to {y.max()}"
                )
            return y
        if y.ndim == 2 and y.shape[1] == n_outputs:
            _check_finite_targets(y, "one-hot")
            if y.dtype.kind not in "iubf":
                raise ValueError(f"soft cross-entropy targets must be numbers, got dtype {y.dtype}")
            Y = y.astype(np.float64)
            # Rows are distributions: the loss and dZ = (P - Y) / n hold only for those.
            if np.any(Y < 0) or not np.allclose(Y.sum(axis=1), 1.0, rtol=0, atol=1e-6):
                bad = int(
                    np.flatnonzero(
                        (Y < 0).any(axis=1) | ~np.isclose(Y.sum(axis=1), 1.0, rtol=0, atol=1e-6)
                    )[0]
                )
                raise ValueError(
                    f"soft cross-entropy targets must be non-negative rows that sum to 1; row {bad} "
                    f"sums to {Y[bad].sum():.6g} (normalize each row, or give class indices)"
                )
            return y.astype(dtype)
        raise ValueError(
            f"cross-entropy targets of shape {y.shape} do not fit a model with {n_outputs} "
            f"outputs; give class indices of shape (n,) or one-hot rows of shape (n, {n_outputs})"
        )

    def metric(self, Z, Y):
        labels = Y if Y.ndim == 1 else np.argmax(Y, axis=1)
        return float(np.mean(np.argmax(Z, axis=1) == labels))


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits, one or many independent outputs (multi-label).

    ``l = sum_j max(z_j, 0) - z_j y_j + log1p(exp(-|z_j|))``, summed over outputs, averaged over the batch.
    """

    name = "binary_cross_entropy"
    metric_name = "accuracy"
    task = "classification"
    link_name = "σ"

    def describe(self, Z, n, k):
        nk = shape_text(n, k)
        return (
            [
                Equation(f"P = σ({Z})", f"{nk} → {nk}", "elementwise sigmoid", "P"),
                Equation(
                    "L = −(1/n) Σ Y log P + (1−Y) log(1−P)",
                    f"{nk} → scalar",
                    "binary cross-entropy",
                    "L",
                ),
            ],
            Equation(
                f"d{Z} = (P − Y) / n",
                f"{nk} − {nk} → {nk}",
                "sigmoid with binary cross-entropy only",
                f"d{Z}",
            ),
        )

    def sample_targets(self, rng, n, k):
        return rng.integers(0, 2, size=(n, k))

    def __call__(self, Z, Y, sample_weight=None):
        n = Z.shape[0]
        Y = Y.reshape(Z.shape)
        losses = np.maximum(Z, 0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))
        G = self._grad_buffer(Z)
        G[...] = F.sigmoid(Z)
        G -= Y  # dZ = sigmoid(Z) - Y, valid for sigmoid + BCE only
        return _weighted_mean(losses, G, sample_weight, n)

    def link(self, Z, out=None):
        return F.sigmoid(Z) if out is None else _assign(out, F.sigmoid(Z))

    def predict(self, Z):
        return (Z > 0).astype(np.intp)

    def encode_targets(self, y, n_outputs, dtype):
        y = np.asarray(y)
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != n_outputs:
            raise ValueError(
                f"binary cross-entropy targets of shape {y.shape} do not fit a model with "
                f"{n_outputs} outputs; give 0/1 values of shape (n, {n_outputs})"
            )
        if y.dtype.kind not in "iubf":
            raise ValueError(f"binary targets must be 0/1 numbers, got dtype {y.dtype}")
        _check_finite_targets(y, "binary")
        if np.any((y < 0) | (y > 1)):
            raise ValueError("binary cross-entropy targets must lie in [0, 1]")
        return y.astype(dtype)

    def metric(self, Z, Y):
        hits = (Z > 0) == (Y.reshape(Z.shape) > 0.5)
        return float(np.mean(np.all(hits, axis=1)))  # subset accuracy for several labels


class MeanSquaredError(Loss):
    """Mean squared error over all outputs: ``value = mean((Z - Y)**2)``."""

    name = "mse"
    metric_name = "r2"
    task = "regression"

    def describe(self, Z, n, k):
        nk = shape_text(n, k)
        return (
            [Equation(f"L = Σ ({Z} − Y)² / (n·k)", f"{nk} → scalar", "mean squared error", "L")],
            Equation(
                f"d{Z} = 2 ({Z} − Y) / (n·k)",
                f"{nk} − {nk} → {nk}",
                "identity output with squared error",
                f"d{Z}",
            ),
        )

    def __call__(self, Z, Y, sample_weight=None):
        n, k = Z.shape
        G = self._grad_buffer(Z)
        np.subtract(Z, Y.reshape(Z.shape), out=G)  # residual
        w = _weights(sample_weight, n)
        if w is None:
            value = float(np.vdot(G, G) / (n * k))
            G *= 2.0 / (n * k)
        else:
            value = float(np.sum(G * G * w) / (n * k))
            G *= w * (2.0 / (n * k))
        return value, G

    def link(self, Z, out=None):
        return Z if out is None or out is Z else _assign(out, Z)

    def predict(self, Z):
        return Z

    def encode_targets(self, y, n_outputs, dtype):
        y = np.asarray(y)
        if y.dtype.kind not in "iubf":
            raise ValueError(f"regression targets must be numbers, got dtype {y.dtype}")
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != n_outputs:
            raise ValueError(
                f"regression targets of shape {y.shape} do not fit a model with {n_outputs} "
                f"outputs; give shape (n,) or (n, {n_outputs})"
            )
        _check_finite_targets(y, "regression")
        return y.astype(dtype)

    def metric(self, Z, Y):
        Y = Y.reshape(Z.shape)
        ss_res = np.sum((Y - Z) ** 2, axis=0)
        ss_tot = np.sum((Y - Y.mean(axis=0)) ** 2, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
        return float(np.mean(r2))


class PoissonLoss(Loss):
    """Half the Poisson deviance from log-rate logits (the exp link), as scikit-learn's
    ``MLPRegressor(loss="poisson")``:

    ``l = sum_j xlogy(y, y) - y z - y + exp(z)`` (its constant term included, so a perfect fit
    scores 0); ``dZ = w (exp(Z) - Y) / n``, valid for the exp link with this loss only.
    """

    name = "poisson"
    metric_name = "r2"
    task = "regression"
    link_name = "exp"

    def __call__(self, Z, Y, sample_weight=None):
        n = Z.shape[0]
        Y = Y.reshape(Z.shape)
        G = self._grad_buffer(Z)
        np.exp(Z, out=G)
        with np.errstate(divide="ignore", invalid="ignore"):
            ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1)), 0.0)
        losses = (ylogy - Y * Z - Y + G).sum(axis=1, keepdims=True)
        G -= Y
        return _weighted_mean(losses, G, sample_weight, n)

    def link(self, Z, out=None):
        return np.exp(Z) if out is None else np.exp(Z, out=out)

    def predict(self, Z):
        return np.exp(Z)

    def encode_targets(self, y, n_outputs, dtype):
        y = MeanSquaredError.encode_targets(self, y, n_outputs, dtype)
        if np.any(y < 0):
            raise ValueError("Poisson targets must be non-negative counts or rates")
        return y

    def metric(self, Z, Y):
        return MeanSquaredError.metric(self, np.exp(Z), Y)

    def describe(self, Z, n, k):
        nk = shape_text(n, k)
        return (
            [
                Equation(f"Ŷ = exp({Z})", f"{nk} → {nk}", "the log link: Z is a log rate", "P"),
                Equation(
                    f"L = (1/n) Σ Y log Y − Y·{Z} − Y + Ŷ",
                    f"{nk} → scalar",
                    "half the Poisson deviance",
                    "L",
                ),
            ],
            Equation(
                f"d{Z} = (Ŷ − Y) / n", f"{nk} − {nk} → {nk}", "exp link with Poisson only", f"d{Z}"
            ),
        )

    def sample_targets(self, rng, n, k):
        return rng.poisson(2.0, size=(n, k)).astype(float)


_REGISTRY: dict[str, type[Loss]] = {
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "cross_entropy": SoftmaxCrossEntropy,
    "categorical_cross_entropy": SoftmaxCrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "bce": BinaryCrossEntropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "squared_error": MeanSquaredError,
    "poisson": PoissonLoss,
}


def register_loss(cls: type[Loss], *aliases: str) -> type[Loss]:
    """Add a :class:`Loss` subclass to the registry under ``cls.name`` (and any aliases); usable
    as a decorator. Models, model files, checkpoints, the estimators and the command line then
    accept the name.

    Raises
    ------
    ValueError
        When a name is empty or already taken by a different class.
    """
    if not (isinstance(cls, type) and issubclass(cls, Loss)):
        raise TypeError(f"register_loss needs a Loss subclass, got {cls!r}")
    for name in (cls.name, *aliases):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"loss name {name!r} must be a non-empty identifier")
        if _REGISTRY.get(name, cls) is not cls:
            raise ValueError(f"loss name {name!r} is already registered")
    if cls.task not in ("classification", "regression"):
        raise ValueError(
            f"{cls.__name__}.task={cls.task!r} must be 'classification' or 'regression'"
        )
    for name in (cls.name, *aliases):
        _REGISTRY[name] = cls
    return cls


def loss_names() -> tuple[str, ...]:
    """Every name :func:`get_loss` accepts, registered ones included."""
    return tuple(_REGISTRY)


#: The built-in names (see :func:`loss_names` for the registered ones too).
LOSS_NAMES = loss_names()


def get_loss(spec: str | dict | Loss) -> Loss:
    """Build a loss from its name (or config dict), or return a :class:`Loss` unchanged."""
    if isinstance(spec, Loss):
        return spec
    options: dict[str, Any] = {}
    if isinstance(spec, dict):
        options = {key: value for key, value in spec.items() if key != "name"}
        spec = spec.get("name", "")
    if not isinstance(spec, str):
        raise TypeError(f"loss must be a name such as 'cross_entropy', got {type(spec).__name__}")
    if spec not in _REGISTRY:
        raise ValueError(f"unknown loss {spec!r}; choose one of {', '.join(loss_names())}")
    if not options:
        return _REGISTRY[spec]()
    try:  # a loss's options, as its config() wrote them (label_smoothing)
        return _REGISTRY[spec](**options)
    except TypeError as exc:
        raise ValueError(f"loss {spec!r} takes no options {sorted(options)}: {exc}") from exc
