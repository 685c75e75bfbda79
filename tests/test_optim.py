"""Optimizers against their textbook update rules, applied per parameter in plain Python."""

from __future__ import annotations

import numpy as np
import pytest

import matnet
from matnet.optim import SGD, Adam, AdamW, get_optimizer
from matnet.schedules import (
    CosineDecay,
    ExponentialDecay,
    ReduceLROnPlateau,
    StepDecay,
    get_schedule,
)


def _steps(opt, p0, grads, n_decay):
    p = p0.copy()
    opt.setup(p, n_decay)
    for g in grads:
        opt.step(p, g.copy())
    return p


@pytest.fixture
def problem(rng):
    p0 = rng.normal(size=10)
    grads = [rng.normal(size=10) for _ in range(5)]
    return p0, grads


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum(problem, nesterov):
    p0, grads = problem
    lr, mu = 0.1, 0.9
    p, v = p0.copy(), np.zeros(10)
    for g in grads:
        v = mu * v - lr * g
        p = p + (mu * v - lr * g if nesterov else v)
    result = _steps(SGD(lr, momentum=mu, nesterov=nesterov), p0, grads, 0)
    np.testing.assert_allclose(result, p, rtol=1e-12)


def test_plain_sgd_and_l2_only_on_weights(problem):
    p0, grads = problem
    lr, l2, k = 0.05, 0.1, 6
    p = p0.copy()
    for g in grads:
        g = g.copy()
        g[:k] += l2 * p[:k]
        p = p - lr * g
    np.testing.assert_allclose(_steps(SGD(lr, l2=l2), p0, grads, k), p, rtol=1e-12)


def test_adam_and_adamw(problem):
    p0, grads = problem
    lr, b1, b2, eps, wd, k = 0.01, 0.9, 0.999, 1e-8, 0.1, 6
    for decoupled in (False, True):
        p, m, v = p0.copy(), np.zeros(10), np.zeros(10)
        for t, g in enumerate(grads, start=1):
            if decoupled:
                p[:k] -= lr * wd * p[:k]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            # Kingma & Ba's "efficient version": bias corrections folded into the step size.
            p = p - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        opt = AdamW(lr, weight_decay=wd) if decoupled else Adam(lr)
        np.testing.assert_allclose(_steps(opt, p0, grads, k), p, rtol=1e-12)


def test_optimizer_state_round_trip(problem):
    p0, grads = problem
    a = Adam(0.01)
    p = _steps(a, p0, grads[:3], 0)
    b = Adam(0.01)
    b.setup(p, 0)
    b.load_state_dict(a.state_dict())
    pa, pb = p.copy(), p.copy()
    for g in grads[3:]:
        a.step(pa, g.copy())
        b.step(pb, g.copy())
    np.testing.assert_array_equal(pa, pb)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="learning_rate=-1"):
        SGD(-1)
    with pytest.raises(ValueError, match="learning_rate=nan"):
        Adam(float("nan"))
    with pytest.raises(ValueError, match="momentum"):
        SGD(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        get_optimizer("rmsprop")
    with pytest.raises(ValueError, match="nesterov"):
        SGD(0.1, nesterov=True)


def test_step_is_whole_vector_operations(monkeypatch):
    """One step touches the flat vectors, not a Python loop over parameters."""
    model = matnet.MLP([5, 8, 8, 3], seed=0)
    opt = Adam()
    opt.setup(model.flat_params, model.n_decay)
    grads = np.ones_like(model.flat_grads)
    before = model.flat_params.copy()
    opt.step(model.flat_params, grads)
    changed = {
        key: not np.array_equal(model.params[key], before[model.slices[key]])
        for key in model.params
    }
    assert all(changed.values())


def test_schedules():
    assert StepDecay(2, 0.5).learning_rate(5, 1.0) == pytest.approx(0.25)
    assert ExponentialDecay(0.9).learning_rate(2, 1.0) == pytest.approx(0.81)
    cos = CosineDecay(10, min_lr=0.1)
    assert cos.learning_rate(0, 1.0) == pytest.approx(1.0)
    assert cos.learning_rate(10, 1.0) == pytest.approx(0.1)
    assert cos.learning_rate(5, 1.0) == pytest.approx(0.55)
    plateau = ReduceLROnPlateau(factor=0.5, patience=2)
    for value in [1.0, 0.9, 0.95, 0.95]:
        plateau.observe(value)
    assert plateau.learning_rate(4, 1.0) == pytest.approx(0.5)
    assert get_schedule(None).learning_rate(3, 0.1) == 0.1
    with pytest.raises(ValueError, match="unknown schedule"):
        get_schedule("warmup")
    with pytest.raises(ValueError, match="schedule 'cosine'.*total_epochs"):
        get_schedule("cosine")


@pytest.mark.parametrize("make", [lambda: Adam(0.1), lambda: SGD(0.1, momentum=0.9)])
def test_pickled_optimizer_keeps_its_state(make):
    import pickle

    g = np.linspace(-1, 1, 6)
    a = make()
    p = np.ones(6)
    a.setup(p, 4)
    a.step(p, g.copy())
    b = pickle.loads(pickle.dumps(a))
    q = p.copy()
    a.step(p, g.copy())
    b.step(q, g.copy())
    np.testing.assert_array_equal(p, q)
