"""matnet's optional C kernels (matnet/_kernels.c) give NumPy's numbers, refuse what they cannot do,
and a model computes the same through them as through its NumPy path."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from tolerance import assert_close

import matnet
from matnet import _accel

kernels = _accel.kernels
needs_kernels = pytest.mark.skipif(kernels is None, reason="matnet's C kernels are not built")
SHAPES = [(1, 1), (7, 3), (130, 257)]
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0]


def test_kernels_are_built_in_ci():
    """CI installs with a C compiler: losing the kernels there would be a silent 5-8% slowdown."""
    if not os.environ.get("CI"):
        pytest.skip("only CI promises a C compiler")
    assert kernels is not None


def with_specials(rng, shape, dtype):
    a = rng.standard_normal(shape).astype(dtype)
    flat = a.reshape(-1)
    flat[rng.choice(flat.size, size=min(len(SPECIALS), flat.size), replace=False)] = SPECIALS[
        : min(len(SPECIALS), flat.size)
    ]
    return a


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_bias_relu_is_numpys_bit_for_bit(dtype, shape, rng):
    Z = with_specials(rng, shape, dtype)
    b = with_specials(rng, (1, shape[1]), dtype)
    with np.errstate(invalid="ignore"):
        expected = np.maximum(Z + b, 0)  # NaN stays NaN, -0.0 + 0.0 = 0.0
    kernels.bias_relu(Z, b)
    np.testing.assert_array_equal(Z, expected)
    assert np.array_equal(np.signbit(Z), np.signbit(expected))


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_relu_reports_a_nan_or_infinity_only_when_asked(dtype, rng):
    Z, b = rng.standard_normal((9, 5)).astype(dtype), rng.standard_normal((1, 5)).astype(dtype)
    assert kernels.bias_relu(Z.copy(), b) is None
    assert kernels.bias_relu(Z.copy(), b, True) is True
    for value in (np.nan, np.inf, -np.inf):
        for where in ("Z", "b"):
            Z2, b2 = Z.copy(), b.copy()
            (Z2 if where == "Z" else b2)[0, 3] = value
            expected = np.maximum(Z2 + b2, 0)
            assert kernels.bias_relu(Z2, b2, True) is False  # also for -inf, which ReLU maps to 0
            np.testing.assert_array_equal(Z2, expected)


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_relu_backward_sum_is_numpys(dtype, shape, rng):
    dA = with_specials(rng, shape, dtype)
    A = np.maximum(with_specials(rng, shape, dtype), 0)
    with np.errstate(invalid="ignore"):
        expected = dA * (A > 0)  # 0 * inf is NaN here too
    db = np.full((1, shape[1]), 7.0, dtype=dtype)  # overwritten, not added to
    kernels.relu_backward_sum(dA, A, db)
    np.testing.assert_array_equal(dA, expected)
    assert np.array_equal(np.signbit(dA), np.signbit(expected))
    finite = rng.standard_normal(shape).astype(dtype)
    mask = np.maximum(rng.standard_normal(shape), 0).astype(dtype)
    expected_sum = (finite.astype(np.float64) * (mask > 0)).sum(axis=0, keepdims=True)
    kernels.relu_backward_sum(finite, mask, db)
    # Summed row after row instead of BLAS's order: equal up to rounding.
    assert_close(db, expected_sum, rtol=1e-5 if dtype == np.float32 else 1e-12)


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8])
def test_gather_rows_is_np_take_with_clip(dtype, rng):
    X = (rng.standard_normal((50, 13)) * 100).astype(dtype)
    for idx in [
        rng.permutation(50),
        rng.integers(0, 50, 7),
        np.array([-3, 0, 49, 50, 1000], dtype=np.int64),  # clipped, as mode="clip" does
        np.array([], dtype=np.int64),
    ]:
        out = np.empty((len(idx), 13), dtype=dtype)
        kernels.gather_rows(X, idx, out)
        np.testing.assert_array_equal(out, np.take(X, idx, axis=0, mode="clip"))


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_step_is_the_numpy_passes_bit_for_bit(dtype, optimizer, monkeypatch):
    """Five steps, one gradient with an inf and one with a NaN: parameters and both moments equal."""
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal(1001).astype(dtype)
    grads = [rng.standard_normal(1001).astype(dtype) for _ in range(5)]
    grads[2][7], grads[3][11] = np.inf, np.nan
    results = {}
    for path in ("kernels", "numpy"):
        monkeypatch.setattr(_accel, "kernels", kernels if path == "kernels" else None)
        opt = matnet.Adam(0.01) if optimizer == "adam" else matnet.AdamW(0.01, weight_decay=0.1)
        p = p0.copy()
        opt.prepare(p, 500)
        with np.errstate(invalid="ignore"):
            for g in grads:
                opt.step(p, g.copy())
        results[path] = (p, opt.m, opt.v)
    for a, b in zip(results["kernels"], results["numpy"], strict=True):
        np.testing.assert_array_equal(a, b)


@needs_kernels
def test_kernels_refuse_what_they_cannot_do():
    Z = np.zeros((4, 3), np.float32)
    bad = [
        (kernels.bias_relu, (Z, np.zeros((1, 3), np.float64))),  # mixed dtypes
        (kernels.bias_relu, (Z, np.zeros((1, 4), np.float32))),  # widths differ
        (kernels.bias_relu, (Z.astype(np.float16), np.zeros((1, 3), np.float16))),
        (kernels.bias_relu, (np.zeros((4, 6), np.float32)[:, ::2], np.zeros((1, 3), np.float32))),
        (kernels.bias_relu, (Z.reshape(-1), np.zeros((1, 3), np.float32))),
        (kernels.relu_backward_sum, (Z, Z, np.zeros((1, 2), np.float32))),
        (kernels.relu_backward_sum, (Z, Z[:2], np.zeros((1, 3), np.float32))),
        (kernels.gather_rows, (Z, np.array([0, 1], np.int32), np.zeros((2, 3), np.float32))),
        (kernels.gather_rows, (Z, np.array([0, 1]), np.zeros((3, 3), np.float32))),
        (kernels.gather_rows, (Z[:0], np.array([0]), np.zeros((1, 3), np.float32))),
        (kernels.gather_rows, (Z, np.array([0]), np.zeros((1, 3), np.float64))),
        (kernels.gather_rows, (Z, np.array([0]), np.zeros((1, 3), np.int32))),  # same item size
        (kernels.bias_relu, (Z,)),
        (kernels.adam_step, (Z[0], Z[0], Z[0], Z[0].astype(np.float64), 0.9, 0.99, 0.1, 1e-8)),
        (kernels.adam_step, (Z[0], Z[0], Z[0], Z[0, :2], 0.9, 0.99, 0.1, 1e-8)),
        (kernels.adam_step, (Z[0], Z[0], Z[0], Z[0], 0.9, 0.99, "0.1", 1e-8)),
    ]
    for func, args in bad:
        before = [np.array(a, copy=True) for a in args]
        with pytest.raises((ValueError, TypeError)):
            func(*args)
        for a, b in zip(args, before, strict=True):
            np.testing.assert_array_equal(a, b)
    read_only = Z.copy()
    read_only.flags.writeable = False
    with pytest.raises(TypeError, match="writable"):
        kernels.bias_relu(read_only, np.zeros((1, 3), np.float32))


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 33, 5000])  # 5000: the row-blocked forward pass
def test_model_through_kernels_equals_its_numpy_path(dtype, n, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 9)).astype(dtype)
    y = rng.integers(0, 4, n)
    results = {}
    for path in ("kernels", "numpy"):
        monkeypatch.setattr(_accel, "kernels", kernels if path == "kernels" else None)
        model = matnet.MLP([9, 16, 8, 4], loss="cross_entropy", dtype=dtype, seed=3)
        Z, backward = model.forward(X, training=True)
        Z = Z.copy()
        _, dZ = model.loss(Z, y)
        backward(dZ)
        results[path] = (Z, model.flat_grads.copy())
    np.testing.assert_array_equal(results["kernels"][0], results["numpy"][0])
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert_close(results["kernels"][1], results["numpy"][1], rtol=rtol)


@needs_kernels
def test_fused_only_where_the_relu_runs_in_place():
    model = matnet.MLP([5, 4, 4, 3], ["relu", "tanh"], dropout=[0.5, 0.0], loss="cross_entropy")
    plan = [(repr(layer), fused) for layer, fused in model._fused_plan]
    # Dense+ReLU fused; the Dropout after the ReLU and the tanh layer stay on their own.
    assert plan == [
        ("Dense(5 -> 4)", True),
        ("Dropout(0.5)", False),
        ("Dense(4 -> 4)", False),
        ("Activation(tanh)", False),
        ("Dense(4 -> 3)", False),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_and_gradcheck_through_both_paths(compute_path, dtype):
    """fit() gathers with the kernel and steps through the fused layers; gradcheck proves the fused
    backward in float64."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 6)).astype(dtype)
    y = rng.integers(0, 3, 64)
    model = matnet.MLP([6, 10, 3], loss="cross_entropy", dtype=dtype, seed=0)
    history = model.fit(X, y, epochs=3, batch_size=16, optimizer=matnet.SGD(0.1), verbose=0, seed=0)
    assert history["loss"][-1] < history["loss"][0]
    model64 = matnet.MLP([6, 10, 3], loss="cross_entropy", dtype="float64", seed=0)
    X64 = rng.uniform(0.1, 1.0, (5, 6)) * rng.choice([-1, 1], (5, 6))
    assert matnet.gradcheck(model64, X64, rng.integers(0, 3, 5)) < 1e-6


def test_matnet_no_kernels_switches_them_off():
    code = "import matnet._accel as a, matnet; print(a.kernels is None)"
    env = {**os.environ, "MATNET_NO_KERNELS": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "True", result.stderr
