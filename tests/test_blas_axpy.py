"""The SGD step through NumPy's own OpenBLAS axpy, and the two-pass NumPy fallback, give the same
numbers (to the last bit or two: BLAS fuses the product and the sum)."""

import numpy as np
import pytest
from tolerance import assert_close

import matnet
from matnet import _blas
from matnet.optim import SGD


@pytest.fixture
def numpy_only(monkeypatch):
    """Force the two-pass NumPy path, as on a NumPy without the bundled OpenBLAS."""
    monkeypatch.setattr(_blas, "_FUNCS", {})


def _blas_available() -> bool:
    return bool(_blas._load())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpy_matches_numpy(dtype):
    if not _blas_available():
        pytest.skip("NumPy's bundled OpenBLAS (scipy-openblas64) is not present")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10_001).astype(dtype)
    y = rng.standard_normal(10_001).astype(dtype)
    expected = y - dtype(0.01) * x
    scale = np.abs(y) + np.abs(dtype(0.01) * x)  # the rounding error is relative to the terms
    assert _blas.axpy(-0.01, x, y)
    assert np.all(np.abs(y - expected) <= 2 * np.finfo(dtype).eps * scale)


@pytest.mark.parametrize(
    "x, y",
    [
        (np.ones(8, np.float16), np.ones(8, np.float16)),  # no BLAS routine
        (np.ones(8, np.float32), np.ones(8, np.float64)),  # mixed dtypes
        (np.ones(16, np.float32)[::2], np.ones(8, np.float32)),  # strided
        (np.ones(8, np.float32), np.ones(9, np.float32)),  # shapes differ
        ([1.0] * 8, np.ones(8, np.float64)),  # not an ndarray
    ],
)
def test_axpy_declines_what_it_cannot_do(x, y):
    before = np.array(y, copy=True)
    assert not _blas.axpy(-0.5, x, y)
    np.testing.assert_array_equal(y, before)


def test_axpy_declines_overlapping_arrays():
    buf = np.ones(10, np.float32)
    assert not _blas.axpy(1.0, buf[:5], buf[:5])


def _train(dtype, momentum=0.0, nesterov=False):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 12)).astype(dtype)
    y = rng.integers(0, 3, 300)
    model = matnet.MLP([12, 16, 3], loss="cross_entropy", dtype=dtype, seed=0)
    model.fit(
        X, y, epochs=2, batch_size=32, optimizer=SGD(0.05, momentum, nesterov), verbose=0, seed=0
    )
    return model.flat_params.copy()


def _train_start(dtype):
    return matnet.MLP([12, 16, 3], loss="cross_entropy", dtype=dtype, seed=0).flat_params.copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_blas_and_numpy_paths_agree(dtype, momentum, nesterov, monkeypatch):
    fast = _train(dtype, momentum, nesterov)
    monkeypatch.setattr(_blas, "_FUNCS", {})
    slow = _train(dtype, momentum, nesterov)
    assert not np.array_equal(slow, _train_start(dtype))  # it trained
    assert_close(fast, slow, rtol=1e-4 if dtype == np.float32 else 1e-12)


def test_sgd_step_equals_the_article_update(numpy_only):
    rng = np.random.default_rng(2)
    params = rng.standard_normal(50)
    grads = rng.standard_normal(50)
    expected = params - 0.1 * grads
    opt = SGD(0.1)
    opt.setup(params, 0)
    opt.step(params, grads.copy())
    np.testing.assert_allclose(params, expected, rtol=1e-15, atol=1e-15)


def test_sgd_step_through_blas_equals_the_article_update():
    if not _blas_available():
        pytest.skip("NumPy's bundled OpenBLAS (scipy-openblas64) is not present")
    rng = np.random.default_rng(2)
    params = rng.standard_normal(50)
    grads = rng.standard_normal(50)
    expected = params - 0.1 * grads
    opt = SGD(0.1)
    opt.setup(params, 0)
    opt.step(params, grads)
    np.testing.assert_allclose(params, expected, rtol=1e-15, atol=1e-15)
