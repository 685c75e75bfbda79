"""Learning-rate schedules, applied by :func:`matnet.fit` at the start of every epoch.

A schedule maps ``(epoch, base_lr)`` to the learning rate of that epoch (epochs count from 0), and
:meth:`Schedule.apply` sets it on the optimizer. :class:`Constant`, the default, leaves the optimizer's
rate alone, so a callback may change the rate between epochs and have it hold.
:class:`ReduceLROnPlateau` also watches the monitored loss through :meth:`Schedule.observe`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

__all__ = [
    "Schedule",
    "Constant",
    "StepDecay",
    "ExponentialDecay",
    "CosineDecay",
    "CosLog",
    "FlatCos",
    "ReduceLROnPlateau",
    "get_schedule",
    "epoch_schedule",
]


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(
            f"{name}={value!r} must be a {'non-negative' if allow_zero else 'positive'} number"
        )
    return float(value)


class Schedule:
    """Base class: the constant schedule."""

    name = "constant"

    def learning_rate(self, epoch: int, base_lr: float) -> float:
        """The learning rate for ``epoch`` (0-based) given the optimizer's initial rate."""
        return base_lr

    def apply(self, optimizer: Any, epoch: int, base_lr: float) -> None:
        """Set ``optimizer.learning_rate`` for ``epoch`` (0-based); called by fit at each epoch start."""
        optimizer.learning_rate = self.learning_rate(epoch, base_lr)

    def observe(self, value: float) -> None:
        """Called once per epoch with the monitored loss (validation loss when there is one)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class Constant(Schedule):
    """``lr = base_lr`` every epoch: the optimizer's rate is left as it is, so a rate that a callback
    set between epochs (scikit-learn's ``adaptive`` and ``invscaling`` rules, say) holds."""

    def apply(self, optimizer, epoch, base_lr):
        pass  # the rate starts at base_lr and only a callback changes it


class StepDecay(Schedule):
    """``lr = base_lr * gamma ** (epoch // step_size)``."""

    name = "step"

    def __init__(self, step_size: int = 10, gamma: float = 0.1) -> None:
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"step_size={step_size!r} must be a positive integer")
        self.step_size, self.gamma = step_size, _positive("gamma", gamma)

    def learning_rate(self, epoch, base_lr):
        return base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialDecay(Schedule):
    """``lr = base_lr * gamma ** epoch``."""

    name = "exponential"

    def __init__(self, gamma: float = 0.95) -> None:
        self.gamma = _positive("gamma", gamma)

    def learning_rate(self, epoch, base_lr):
        return base_lr * self.gamma**epoch


class CosineDecay(Schedule):
    """Cosine annealing from ``base_lr`` to ``min_lr`` over ``total_epochs``, then ``min_lr``."""

    name = "cosine"

    def __init__(self, total_epochs: int, min_lr: float = 0.0) -> None:
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"total_epochs={total_epochs!r} must be a positive integer")
        self.total_epochs, self.min_lr = total_epochs, _positive("min_lr", min_lr, allow_zero=True)

    def learning_rate(self, epoch, base_lr):
        progress = min(epoch, self.total_epochs) / self.total_epochs
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1 + math.cos(math.pi * progress))


class CosLog(Schedule):
    """RealMLP's cos-log schedule ("coslog4"): with ``t = (epoch + 1/2) / total_epochs``,
    ``lr = base_lr · (1/2 − 1/2 · cos(2π · log2(1 + (2^cycles − 1) · t)))``: ``cycles`` warm
    restarts, each longer than the one before (equal on a log scale), from 0 up to ``base_lr`` and
    back, ending at 0.

    Applied per epoch, at each epoch's middle: with the tabular recipe's epoch counts (≥ 64) the
    shortest cycle, the first, still spans several epochs, so a per-step rate would change the
    curve little (RealMLP steps it per batch over far more steps).

    Parameters
    ----------
    total_epochs : int
    cycles : int
        The number of restarts (RealMLP: 4).
    """

    name = "coslog"

    def __init__(self, total_epochs: int, cycles: int = 4) -> None:
        for label, value in (("total_epochs", total_epochs), ("cycles", cycles)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label}={value!r} must be a positive integer")
        self.total_epochs, self.cycles = total_epochs, cycles

    def learning_rate(self, epoch, base_lr):
        t = min(epoch + 0.5, self.total_epochs) / self.total_epochs
        phase = math.log2(1 + (2**self.cycles - 1) * t)
        return base_lr * (0.5 - 0.5 * math.cos(2 * math.pi * phase))


class FlatCos(Schedule):
    """RealMLP's ``flat_cos`` schedule: the base value for the first ``flat_fraction`` of training,
    then a half cosine down to 0 at the end.

    With ``t = (epoch + 1/2) / total_epochs`` (the epoch's middle, as :class:`CosLog`) and
    ``f = flat_fraction``, the factor is 1 for ``t <= f`` and ``1/2 · (1 + cos(π · (t − f) / (1 − f)))``
    after, so it lies in [0, 1] and is near 0 in the last epoch. RealMLP-TD applies it to its
    dropout rate and weight decay (:class:`~matnet.training.DropoutSchedule`,
    :class:`~matnet.training.WeightDecaySchedule`); as ``fit(schedule=...)`` it scales the
    learning rate.

    Parameters
    ----------
    total_epochs : int
    flat_fraction : float in [0, 1)
        The share of training at the base value (RealMLP: 0.5).
    """

    name = "flatcos"

    def __init__(self, total_epochs: int, flat_fraction: float = 0.5) -> None:
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"total_epochs={total_epochs!r} must be a positive integer")
        ok = isinstance(flat_fraction, (int, float)) and not isinstance(flat_fraction, bool)
        if not (ok and 0 <= flat_fraction < 1):
            raise ValueError(f"flat_fraction={flat_fraction!r} must be a number in [0, 1)")
        self.total_epochs, self.flat_fraction = total_epochs, float(flat_fraction)

    def learning_rate(self, epoch, base_lr):
        t = min(epoch + 0.5, self.total_epochs) / self.total_epochs
        if t <= self.flat_fraction:
            return base_lr
        u = (t - self.flat_fraction) / (1 - self.flat_fraction)
        return base_lr * 0.5 * (1 + math.cos(math.pi * u))


class ReduceLROnPlateau(Schedule):
    """Multiply the rate by ``factor`` after ``patience`` epochs without an improvement of the
    monitored loss by more than ``min_delta``; never go below ``min_lr``."""

    name = "plateau"

    def __init__(
        self, factor: float = 0.1, patience: int = 5, min_delta: float = 1e-4, min_lr: float = 0.0
    ) -> None:
        self.factor = _positive("factor", factor)
        if self.factor >= 1:
            raise ValueError(f"factor={factor!r} must be below 1")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience={patience!r} must be a non-negative integer")
        self.patience = patience
        self.min_delta = _positive("min_delta", min_delta, allow_zero=True)
        self.min_lr = _positive("min_lr", min_lr, allow_zero=True)
        self.scale, self.best, self.bad_epochs = 1.0, math.inf, 0

    def learning_rate(self, epoch, base_lr):
        return max(base_lr * self.scale, self.min_lr)

    def observe(self, value):
        if value < self.best - self.min_delta:
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= max(self.patience, 1):
            self.scale *= self.factor
            self.bad_epochs = 0

    def state_dict(self):
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.scale = float(state["scale"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


_REGISTRY = {
    "constant": Constant,
    "step": StepDecay,
    "exponential": ExponentialDecay,
    "cosine": CosineDecay,
    "coslog": CosLog,
    "flatcos": FlatCos,
    "plateau": ReduceLROnPlateau,
}


def get_schedule(spec: str | Schedule | None, **kwargs: Any) -> Schedule:
    """A schedule from its name (``"constant"``, ``"step"``, ``"exponential"``, ``"cosine"``,
    ``"coslog"``, ``"flatcos"``, ``"plateau"``) and keyword arguments, an instance, or None for constant."""
    if spec is None:
        return Constant()
    if isinstance(spec, Schedule):
        return spec
    if not isinstance(spec, str) or spec not in _REGISTRY:
        raise ValueError(f"unknown schedule {spec!r}; choose one of {', '.join(_REGISTRY)}")
    try:
        return _REGISTRY[spec](**kwargs)
    except TypeError as exc:  # a missing or unknown argument, e.g. "cosine" without total_epochs
        raise ValueError(f"schedule {spec!r}: {exc}") from exc


def epoch_schedule(spec: str | Schedule, total_epochs: int) -> Schedule:
    """A schedule whose value depends on the epoch alone, for scaling another hyperparameter.

    Parameters
    ----------
    spec : str or Schedule
        A name of :func:`get_schedule` or an instance. A name whose schedule takes
        ``total_epochs`` (``"cosine"``, ``"coslog"``, ``"flatcos"``) is given ``total_epochs``.
    total_epochs : int
        The run's epochs.

    Returns
    -------
    Schedule

    Raises
    ------
    ValueError
        For an unknown name, or a schedule that watches the loss (``"plateau"``): its value
        depends on the run's history, which a callback does not feed it nor checkpoint.
    TypeError
        When ``spec`` is neither a name nor a :class:`Schedule`.
    """
    cls: type[Schedule]
    if isinstance(spec, str):
        if spec not in _REGISTRY:
            raise ValueError(f"unknown schedule {spec!r}; choose one of {', '.join(_REGISTRY)}")
        cls = _REGISTRY[spec]
    elif isinstance(spec, Schedule):
        cls = type(spec)
    else:
        raise TypeError(f"schedule must be a name such as 'flatcos' or a Schedule, got {spec!r}")
    if cls.observe is not Schedule.observe:
        raise ValueError(
            f"schedule {cls.__name__} follows the monitored loss; a hyperparameter schedule needs "
            "one that depends on the epoch only, e.g. 'flatcos', 'cosine' or StepDecay(...)"
        )
    if isinstance(spec, Schedule):
        return spec
    takes_total = "total_epochs" in inspect.signature(cls).parameters
    return get_schedule(spec, **({"total_epochs": total_epochs} if takes_total else {}))
