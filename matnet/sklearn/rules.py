"""scikit-learn's training rules as pieces of matnet's training loop.

The estimators train with the loop's one protocol (a loss, a schedule, callbacks); what makes the
result equal scikit-learn's lives here:

* :class:`SklearnLoss` wraps a matnet loss: it divides by ``sum(sample_weight)`` instead of the batch
  size, uses scikit-learn's half squared error, adds ``alpha / 2 * ||W||**2 / sum(w)`` to the value
  and sets the optimizer's ``l2`` to ``alpha / sum(w)`` for the step that follows, so the penalty's
  gradient ``alpha * W / sum(w)`` is added where every other L2 term is.
* :class:`SklearnRate` is the learning-rate schedule: 'constant' keeps the optimizer's rate,
  'adaptive' divides it by 5 on a plateau, 'invscaling' sets ``learning_rate_init / (t + 1) **
  power_t`` from ``t``, the samples seen.
* :class:`SklearnRules` is the callback that records each epoch: ``loss_curve_`` and ``t_``,
  scikit-learn's validation score (and matnet's validation loss) for ``early_stopping``, the best
  parameters, the count of epochs without a ``tol`` improvement, the ``verbose`` lines.
* :class:`SklearnStopping` is the callback that decides, after the user's callbacks (scikit-learn's
  order): the next epoch's rate, and after ``n_iter_no_change`` epochs without improvement a stop,
  or for 'adaptive' the rate divided by 5.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import matnet
from matnet.losses import Loss, MeanSquaredError
from matnet.optim import Optimizer
from matnet.schedules import Schedule
from matnet.training import Callback
from matnet.training import Progress as _PackageProgress
from matnet.training.rows import Rows

__all__ = [
    "Progress",
    "SklearnLoss",
    "SklearnRate",
    "SklearnRules",
    "SklearnStopping",
    "Validation",
    "warn_caller",
]

# scikit-learn's floor for 'adaptive': below it, a plateau stops training instead.
_ADAPTIVE_MIN_RATE = 1e-6
_PACKAGE_DIR = os.path.dirname(os.path.abspath(matnet.__file__)) + os.sep


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside matnet: the user's call of ``fit``,
    however many frames of the training loop and its callbacks lie between."""
    frame: Any = sys._getframe(0)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


class SklearnLoss(Loss):
    """scikit-learn's objective on a batch, around a matnet loss of the same link.

    ``value = sum_i w_i l_i / sum(w) + alpha / 2 * ||W||**2 / sum(w)``; ``dZ`` is the data term's
    gradient. For the identity link ``l_i`` is half the squared error averaged over outputs while
    ``dZ`` sums over them, as scikit-learn's value and gradient do. Each call sets
    ``optimizer.l2`` (when an optimizer is given) and :attr:`l2` to ``alpha / sum(w)``: the penalty's
    gradient on the weights is ``l2 * W``, which the optimizer's step adds (or
    :meth:`MLPClassifier._objective <matnet.sklearn.estimators._BaseMLP._objective>` for 'lbfgs').

    Parameters
    ----------
    base : Loss
        matnet's loss for the output link: it divides by the batch size ``n`` and, for the squared
        error, averages the gradient over outputs; this wrapper rescales both.
    model : Sequential
        Whose weights (``flat_params[:n_decay]``) the penalty is on.
    alpha : float
        scikit-learn's L2 strength.
    optimizer : Optimizer, optional
        The optimizer whose ``l2`` each batch sets (None for 'lbfgs', which adds the term itself).
    """

    def __init__(
        self, base: Loss, model: Any, alpha: float, optimizer: Optimizer | None = None
    ) -> None:
        super().__init__()
        self.base, self.model, self.alpha, self.optimizer = base, model, float(alpha), optimizer
        self.name, self.metric_name = base.name, base.metric_name
        self._half_squared = isinstance(base, MeanSquaredError)
        #: ``alpha / sum(w)`` of the last batch: the coefficient of the penalty's gradient.
        self.l2 = 0.0

    def __call__(self, Z, Y, sample_weight=None):
        value, dZ, l2 = self.evaluate(Z, Y, sample_weight)
        self.l2 = l2
        if self.optimizer is not None:
            self.optimizer.l2 = l2  # grads[:n_decay] += alpha * W / sum(w) in the step
        return value, dZ

    def evaluate(self, Z: Any, Y: Any, sample_weight: Any = None) -> tuple[float, Any, float]:
        """``(value, dZ, alpha / sum(w))`` without touching the optimizer (validation uses it).

        A batch whose weights are all zero has no scikit-learn value (it divides 0 by 0); here it
        contributes nothing: value 0, a zero gradient and no penalty gradient.
        """
        n = Z.shape[0]
        sw_sum = float(n) if sample_weight is None else float(sample_weight.sum())
        value, dZ = self.base(Z, Y, sample_weight)
        if sw_sum == 0.0:
            dZ[...] = 0.0
            return 0.0, dZ, 0.0
        # matnet's squared error: value mean((Z-Y)**2) over n*k, dZ 2 (Z-Y) / (n k); scikit-learn's:
        # half that value, and dZ (Z-Y) / sum(w), summed (not averaged) over the k outputs.
        if self._half_squared:
            value_scale = n / (2.0 * sw_sum)
            grad_scale = n * Z.shape[1] / (2.0 * sw_sum)
        else:
            value_scale = grad_scale = n / sw_sum
        if grad_scale != 1.0:
            dZ *= grad_scale
        W = self.model.flat_params[: self.model.n_decay]
        penalty = 0.5 * self.alpha * float(np.dot(W, W)) / sw_sum
        return value * value_scale + penalty, dZ, self.alpha / sw_sum

    def link(self, Z, out=None):
        return self.base.link(Z, out=out)

    def predict(self, Z):
        return self.base.predict(Z)

    def encode_targets(self, y, n_outputs, dtype):
        return self.base.encode_targets(y, n_outputs, dtype)

    def metric(self, Z, Y):
        return self.base.metric(Z, Y)

    def config(self) -> dict[str, Any]:
        return self.base.config()


class SklearnRate(Schedule):
    """The learning rate of scikit-learn's stochastic solvers, as a schedule.

    scikit-learn changes the rate after an epoch (``iteration_ends(t)``, then a plateau's division),
    not before the next, and the last change is what a following ``partial_fit`` starts from; so
    :class:`SklearnStopping` sets the optimizer's rate at each epoch end from this schedule's answers,
    and :meth:`apply` (the loop's call at each epoch start) leaves the rate as it is. 'constant'
    keeps the optimizer's rate; 'adaptive' divides it by 5 on a plateau (:meth:`divide`);
    'invscaling' sets ``learning_rate_init / (t + 1) ** power_t`` from ``t``, the samples seen
    (:meth:`samples_seen`).

    Parameters
    ----------
    kind : {'constant', 'invscaling', 'adaptive'}
    learning_rate_init, power_t : float
    """

    def __init__(self, kind: str, learning_rate_init: float, power_t: float) -> None:
        self.name = kind
        self.learning_rate_init, self.power_t = float(learning_rate_init), float(power_t)
        self.rate: float | None = None  # None: the optimizer's rate, unchanged so far

    def learning_rate(self, epoch: int, base_lr: float) -> float:
        return base_lr if self.rate is None else self.rate

    def apply(self, optimizer: Any, epoch: int, base_lr: float) -> None:
        """Leave the rate: :class:`SklearnStopping` set it when the previous epoch ended."""

    def samples_seen(self, t: int, current: float) -> float:
        """The rate after an epoch that ends with ``t`` samples seen in all."""
        if self.name == "invscaling":
            self.rate = self.learning_rate_init / (t + 1) ** self.power_t
            return self.rate
        return current

    def divide(self, current: float) -> float | None:
        """'adaptive' on a plateau: the rate divided by 5, or None to stop (already <= 1e-6)."""
        if current <= _ADAPTIVE_MIN_RATE:
            return None
        self.rate = current / 5.0
        return self.rate

    def state_dict(self) -> dict[str, Any]:
        return {"rate": self.rate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rate = state["rate"]


class Validation:
    """The rows held out for ``early_stopping``: features, encoded targets, labels and weights."""

    def __init__(self, X: Any, Y: np.ndarray, y: Any, sample_weight: np.ndarray | None) -> None:
        self.X, self.Y, self.y, self.sample_weight = X, Y, y, sample_weight


class Progress:
    """What ``verbose`` shows: with 1, the package's progress bar (:class:`matnet.training.Progress`,
    tqdm) over iterations; with 2, or 1 without tqdm, scikit-learn's own lines on standard output
    (``Iteration 3, loss = 0.12345678``), which its users' log parsers expect."""

    def __init__(self, verbose: int, total: int) -> None:
        self.verbose = int(verbose)
        self.bar: _PackageProgress | None = None
        if self.verbose == 1:
            self.bar = _PackageProgress(1)
            self.bar.open(total)
            if self.bar.bar is None:  # no tqdm: the lines
                self.bar = None

    def update(self, epoch: int, logs: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(logs)
        elif self.verbose:
            print(f"Iteration {epoch}, loss = {logs['loss']:.8f}")
            if "validation_score" in logs:
                print(f"Validation score: {logs['validation_score']:f}")

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.bar.write(text)  # type: ignore[attr-defined]  # open, with tqdm (see __init__)
        elif self.verbose:
            print(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class SklearnRules(Callback):
    """scikit-learn's record of each epoch, for one ``fit`` or ``partial_fit`` call of an estimator.

    Writes the estimator's training record (``n_iter_``, ``t_``, ``loss_``, ``loss_curve_``,
    ``validation_scores_``, ``validation_loss_curve_``, the best values, ``_no_improvement_count``,
    ``_best_params``), so a warm start continues from it exactly as scikit-learn's does, and adds
    ``validation_score`` and ``validation_loss`` to the epoch's record for the callbacks after it.
    :meth:`callbacks` puts it before the user's callbacks and :class:`SklearnStopping` after them,
    which is scikit-learn's order: record, the user's, then the decision to stop.

    Parameters
    ----------
    estimator : MLPClassifier or MLPRegressor
        Being fitted; its model, parameters and record attributes are read and written.
    loss : SklearnLoss
        For the validation loss.
    schedule : SklearnRate
    validation : Validation, optional
        The held-out rows with ``early_stopping``.
    incremental : bool
        ``partial_fit``: one epoch, and no warning that ``max_iter`` was reached.
    """

    def __init__(
        self,
        estimator: Any,
        loss: SklearnLoss,
        schedule: SklearnRate,
        validation: Validation | None,
        incremental: bool,
    ) -> None:
        self.estimator, self.loss = estimator, loss
        self.schedule, self.validation, self.incremental = schedule, validation, incremental
        # Made anew by each fit (on_train_begin); a plain Progress(0) until then prints nothing.
        self.progress = Progress(0, 0)

    def callbacks(self, user: list[Callback]) -> list[Callback]:
        """What ``fit(callbacks=...)`` gets: this record, the user's callbacks, the decision."""
        return [self, *user, SklearnStopping(self)]

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.estimator.n_iter_ = 0  # counts this call's epochs, as scikit-learn's
        self.progress = Progress(self.estimator.verbose, self.estimator.max_iter)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        est, state = self.estimator, self.trainer.state
        # Rows this epoch trained on: all, unless a callback stopped it after some batch.
        seen = min(state.batch * self.trainer.batch_size, self.trainer.n_samples)
        est.n_iter_ += 1
        est.loss_ = state.loss_sum / seen  # = logs["loss"] for a whole epoch
        est.t_ += seen
        est.loss_curve_.append(est.loss_)
        logs["loss"] = est.loss_
        if est.early_stopping:
            score, val_loss = self._validate()
            est.validation_scores_.append(score)
            est.validation_loss_curve_.append(val_loss)
            logs["validation_score"] = score
            logs["validation_loss"] = val_loss
        self.progress.update(est.n_iter_, logs)
        _update_no_improvement_count(est)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        # First of the callbacks given to fit, so the user's on_train_end sees the best weights.
        self.close()
        est = self.estimator
        if est.early_stopping:
            est._model.flat_params[...] = est._best_params

    def close(self) -> None:
        """Close the progress bar (also when training ends by an exception)."""
        self.progress.close()

    def _validate(self) -> tuple[float, float]:
        """scikit-learn's validation score (accuracy or R², NaN for non-finite outputs) and the
        validation loss (with the L2 term), through the model's inference forward pass."""
        est, val = self.estimator, self.validation
        assert val is not None, "scored only with early_stopping, which splits validation rows"
        Z = val.X.logits(est._model) if isinstance(val.X, Rows) else est._raw_outputs(val.X)
        val_loss = self.loss.evaluate(Z, val.Y, val.sample_weight)[0]
        out = self.loss.link(Z, out=Z)
        if not np.all(np.isfinite(out)):
            return float("nan"), float(val_loss)
        return float(est._score_outputs(out, val.y, val.sample_weight)), float(val_loss)


class SklearnStopping(Callback):
    """scikit-learn's decision after each epoch, once the user's callbacks have seen it.

    Sets the rate for the next epoch (:meth:`SklearnRate.samples_seen`), then, after
    ``n_iter_no_change`` epochs without a ``tol`` improvement, stops, or for 'adaptive' SGD divides
    the rate by 5; stops ``partial_fit`` after its one epoch; warns when ``max_iter`` is reached
    without a stop.

    Parameters
    ----------
    rules : SklearnRules
        The record this decision reads (the estimator, schedule, progress).
    """

    def __init__(self, rules: SklearnRules) -> None:
        self.rules = rules

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool:
        est, opt = self.rules.estimator, self.trainer.optimizer
        opt.learning_rate = self.rules.schedule.samples_seen(est.t_, opt.learning_rate)
        if est._no_improvement_count > est.n_iter_no_change and self._plateau():
            return True
        if self.rules.incremental or self.trainer.stop_requested:
            return True
        if est.n_iter_ == est.max_iter:
            warn_caller(
                f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
            )
        return False

    def _plateau(self) -> bool:
        """``n_iter_no_change`` epochs without a ``tol`` improvement: True to stop, or (for
        'adaptive' SGD) the rate divided by 5 and the count started over."""
        est, progress = self.rules.estimator, self.rules.progress
        if est.early_stopping:
            watched = "loss" if est.early_stopping_on == "loss" else "score"
            msg = f"Validation {watched} did not improve more than tol={est.tol:f} for"
        else:
            msg = f"Training loss did not improve more than tol={est.tol:f} for"
        msg += f" {est.n_iter_no_change} consecutive epochs."
        if not (est.solver == "sgd" and est.learning_rate == "adaptive"):
            progress.message(msg + " Stopping.")
            return True
        rate = self.rules.schedule.divide(self.trainer.optimizer.learning_rate)
        if rate is None:
            progress.message(msg + " Learning rate too small. Stopping.")
            return True
        self.trainer.optimizer.learning_rate = rate
        progress.message(msg + f" Setting learning rate to {rate:f}")
        est._no_improvement_count = 0
        return False


def _update_no_improvement_count(est: Any) -> None:
    """scikit-learn's ``tol`` bookkeeping after an epoch, on the training loss, the validation
    score, or (``early_stopping_on='loss'``) the validation loss; keeps the best parameters."""
    if est.early_stopping and est.early_stopping_on == "loss":
        last = est.validation_loss_curve_[-1]
        est.best_validation_score_ = max(est.best_validation_score_, est.validation_scores_[-1])
        if not last <= est.best_validation_loss_ - est.tol:  # NaN counts as no improvement
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if last < est.best_validation_loss_:
            est.best_validation_loss_ = last
            est._best_params = est._model.flat_params.copy()
    elif est.early_stopping:
        est.best_validation_loss_ = min(est.best_validation_loss_, est.validation_loss_curve_[-1])
        last = est.validation_scores_[-1]
        if last < est.best_validation_score_ + est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if last > est.best_validation_score_:
            est.best_validation_score_ = last
            est._best_params = est._model.flat_params.copy()
    else:
        if est.loss_curve_[-1] > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if est.loss_curve_[-1] < est.best_loss_:
            est.best_loss_ = est.loss_curve_[-1]
