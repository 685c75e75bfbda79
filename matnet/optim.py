"""Optimizers that update the model's flat parameter vector in place.

Every parameter of a :class:`matnet.model.Sequential` is a view into one flat vector and every gradient a
view into another, with the weights (the parameters that get L2 or weight decay) first. A step is therefore
a handful of whole-vector NumPy operations, whatever the number of layers, and the optimizer's state is a
few vectors of the same length, saved and restored by :meth:`Optimizer.state_dict`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from matnet import _accel
from matnet._blas import axpy
from matnet.validation import check_number

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "get_optimizer", "OPTIMIZER_NAMES"]

Array = Any


class Optimizer(ABC):
    """Base class.

    Parameters
    ----------
    learning_rate : float > 0
    l2 : float >= 0
        L2 penalty: ``l2 * W`` is added to the gradient of every weight (not the biases), i.e. the loss
        gains ``l2 / 2 * ||W||**2``.
    """

    name = ""

    def __init__(self, learning_rate: float = 1e-3, *, l2: float = 0.0) -> None:
        self.learning_rate = check_number("learning_rate", learning_rate, 0, np.inf, low_open=True)
        self.l2 = check_number("l2", l2, 0, np.inf, low_open=False)
        #: How many leading entries of the flat vector are weights (decayed); None until
        #: :meth:`prepare` or :meth:`setup` is told (``model.n_decay``).
        self.n_decay: int | None = None
        self._scratch: Array | None = None

    def setup(self, params: Array, n_decay: int) -> None:
        """Allocate state for a flat parameter vector whose first ``n_decay`` entries are weights."""
        self.n_decay = int(n_decay)
        self._scratch = np.empty_like(params)

    def prepare(self, params: Array, n_decay: int | None) -> None:
        """Set up state unless it already fits ``params`` (so a reused optimizer keeps its moments).

        ``n_decay`` is ``model.n_decay``; None (never told) is allowed while nothing is decayed.
        """
        scratch = self._scratch
        if (
            scratch is None
            or scratch.shape != params.shape
            or scratch.dtype != params.dtype
            or (self.n_decay != n_decay)
        ):
            self.setup(params, 0 if n_decay is None else n_decay)
            self.n_decay = None if n_decay is None else int(n_decay)

    def _weights(self) -> int:
        """``n_decay``, or a clear error when a step must decay weights it cannot tell apart."""
        if self.n_decay is None:
            decay = getattr(self, "weight_decay", 0)
            raise ValueError(
                f"{type(self).__name__} has l2={self.l2}"
                + (f" and weight_decay={decay}" if decay else "")
                + " but does not know which parameters are weights: call "
                "optimizer.prepare(model.flat_params, model.n_decay) before step() (matnet.fit "
                "does this)"
            )
        return self.n_decay

    def step(self, params: Array, grads: Array) -> None:
        """Update ``params`` in place from ``grads`` (both flat vectors of the same length).

        ``grads`` may be overwritten (the L2 term is added into it).

        Raises
        ------
        ValueError
            When the optimizer has ``l2`` or weight decay and :meth:`prepare` was never told which
            parameters are weights (``model.n_decay``); :func:`matnet.fit` tells it.
        """
        self.prepare(params, self.n_decay)
        if self.l2:
            k = self._weights()
            grads[:k] += self.l2 * params[:k]
        self._update(params, grads)

    @abstractmethod
    def _update(self, params: Array, grads: Array) -> None:
        """The optimizer's own rule, given the gradient with any L2 term added."""

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state: its hyperparameters and the arrays it keeps between steps."""
        return {"learning_rate": self.learning_rate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s values; the arrays arrive as host copies (see
        :meth:`to_device` for a model on a GPU)."""
        self.learning_rate = float(state["learning_rate"])

    def to_device(self, asarray: Callable[[Array], Array]) -> None:
        """Move the state arrays (moments, velocity) with ``asarray``, e.g. a GPU backend's, so
        they live where the parameters they update live."""
        for key, value in self.state_dict().items():
            if isinstance(value, np.ndarray):
                setattr(self, key, asarray(value))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "learning_rate": self.learning_rate, "l2": self.l2}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_scratch": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # The scratch buffer is not pickled: rebuild it from a state vector (m, v, velocity), or
        # prepare() would take the restored optimizer for a fresh one and reset its moments.
        ref = next((v for v in state.values() if isinstance(v, np.ndarray)), None)
        if ref is not None:
            self._scratch = np.empty_like(ref)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, scikit-learn's form.

    ``v = momentum * v - lr * g``; then ``p += v`` (classical) or ``p += momentum * v - lr * g``
    (Nesterov).
    """

    name = "sgd"

    def __init__(
        self,
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        *,
        l2: float = 0.0,
    ) -> None:
        super().__init__(learning_rate, l2=l2)
        self.momentum = check_number("momentum", momentum, 0, 1, low_open=False)
        if nesterov and not self.momentum:
            raise ValueError("nesterov=True needs a momentum > 0")
        self.nesterov = bool(nesterov)
        self.velocity: Array | None = None

    def setup(self, params, n_decay):
        super().setup(params, n_decay)
        self.velocity = np.zeros_like(params) if self.momentum else None

    def _update(self, params, grads):
        lr, mu = self.learning_rate, self.momentum
        if not mu:
            # p -= lr * g: one BLAS axpy pass when NumPy's OpenBLAS offers it (10-18 us instead of
            # the two NumPy passes' 27 us at 235k parameters; see matnet._blas), else two passes.
            if not axpy(-lr, grads, params):
                grads *= -lr
                params += grads
            return
        v, tmp = self.velocity, self._scratch
        v *= mu
        # Classical momentum: v = mu v - lr g through the same axpy (3 passes instead of 4, 66 ->
        # 48 us at 235k parameters). Nesterov's form gained nothing that way and stays in NumPy.
        if not self.nesterov and axpy(-lr, grads, v):
            params += v
            return
        np.multiply(grads, lr, out=tmp)
        v -= tmp  # v = mu v - lr g
        if self.nesterov:
            np.multiply(v, mu, out=grads)
            grads -= tmp
            params += grads  # p += mu v - lr g
        else:
            params += v

    def state_dict(self):
        state = super().state_dict()
        if self.velocity is not None:
            state["velocity"] = self.velocity
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "velocity" in state:
            self.velocity = np.array(state["velocity"], copy=True)

    def config(self):
        return {**super().config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction folded into the step size.

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g**2``;
    ``p -= lr sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps)``.
    """

    name = "adam"

    def __init__(
        self,
        learning_rate: float = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        *,
        l2: float = 0.0,
    ) -> None:
        super().__init__(learning_rate, l2=l2)
        self.beta_1 = check_number("beta_1", beta_1, 0, 1, low_open=False)
        self.beta_2 = check_number("beta_2", beta_2, 0, 1, low_open=False)
        self.epsilon = check_number("epsilon", epsilon, 0, np.inf, low_open=True)
        self.t = 0
        self.m: Array | None = None
        self.v: Array | None = None

    def setup(self, params, n_decay):
        super().setup(params, n_decay)
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self.t = 0

    def _update(self, params, grads):
        b1, b2, tmp = self.beta_1, self.beta_2, self._scratch
        self.t += 1
        step_size = self.learning_rate * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        if _accel.usable(params, grads, self.m, self.v):  # the passes below in one (same bits)
            _accel.kernels.adam_step(params, grads, self.m, self.v, b1, b2, step_size, self.epsilon)
            return
        self.m *= b1
        np.multiply(grads, 1 - b1, out=tmp)
        self.m += tmp
        self.v *= b2
        np.multiply(grads, grads, out=tmp)
        tmp *= 1 - b2
        self.v += tmp
        np.sqrt(self.v, out=tmp)
        tmp += self.epsilon
        np.divide(self.m, tmp, out=tmp)
        tmp *= step_size
        params -= tmp

    def state_dict(self):
        return {**super().state_dict(), "t": self.t, "m": self.m, "v": self.v}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.t = int(state["t"])
        self.m = np.array(state["m"], copy=True)
        self.v = np.array(state["v"], copy=True)

    def config(self):
        return {
            **super().config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``W -= lr * weight_decay * W`` each
    step, apart from the gradient, on the weights only."""

    name = "adamw"

    def __init__(
        self,
        learning_rate: float = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        l2: float = 0.0,
    ) -> None:
        super().__init__(learning_rate, beta_1, beta_2, epsilon, l2=l2)
        self.weight_decay = check_number("weight_decay", weight_decay, 0, np.inf, low_open=False)

    def _update(self, params, grads):
        if self.weight_decay:
            params[: self._weights()] *= 1 - self.learning_rate * self.weight_decay
        super()._update(params, grads)

    def config(self):
        return {**super().config(), "weight_decay": self.weight_decay}


_REGISTRY: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
OPTIMIZER_NAMES = tuple(_REGISTRY)


def get_optimizer(spec: str | dict | Optimizer, **kwargs: Any) -> Optimizer:
    """Build an optimizer from a name (with keyword hyperparameters) or a config dict.

    Raises
    ------
    ValueError
        For an unknown name or a hyperparameter out of range.
    """
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, dict):
        kwargs = {**{k: v for k, v in spec.items() if k != "name"}, **kwargs}
        spec = spec.get("name", "")
    if not isinstance(spec, str):
        raise TypeError(f"optimizer must be a name such as 'adam', got {type(spec).__name__}")
    if spec.lower() not in _REGISTRY:
        raise ValueError(f"unknown optimizer {spec!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")
    try:
        return _REGISTRY[spec.lower()](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad parameters for optimizer {spec!r}: {exc}") from exc
