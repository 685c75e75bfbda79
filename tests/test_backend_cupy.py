"""The CuPy backend on a real GPU: skipped (with the reason) where CuPy or a CUDA device is missing.

This project's CI has no GPU, so these tests have not run there; they are the check to run on a
machine that has one (`pip install -e '.[dev,gpu]'`, then `pytest tests/test_backend_cupy.py`).
"""

from __future__ import annotations

import numpy as np
import pytest

import matnet
from matnet import functional as F
from matnet.backend import to_host

cp = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'matnet[gpu]')")
try:
    N_DEVICES = cp.cuda.runtime.getDeviceCount()
except Exception as exc:  # no driver or no device: CuPy raises its own error types
    pytest.skip(f"CuPy finds no CUDA device: {exc}", allow_module_level=True)
if N_DEVICES == 0:
    pytest.skip("CuPy finds no CUDA device", allow_module_level=True)

# cuBLAS may sum in another order than OpenBLAS: equal to rounding, not bit for bit.
RTOL = 1e-10


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    return X, y


@pytest.mark.parametrize("name", [n for n in F.__all__ if n != "ACTIVATIONS"])
def test_functional_ops_on_cupy(name):
    rng = np.random.default_rng(0)
    A_prev, W, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 3)), rng.normal(size=(1, 3))
    Z, dZ = rng.normal(scale=3, size=(5, 3)), rng.normal(size=(5, 3))
    fn = getattr(F, name)
    if name == "linear_forward":
        args = (A_prev, W, b)
    elif name == "linear_backward":
        args = (dZ, A_prev, W)
    elif name == "linear_activation_forward":
        args = (A_prev, W, b, "gelu")
    elif name == "softmax_backward":
        args = (dZ, F.softmax(Z))
    else:
        args = (Z,)
    expected = fn(*args)
    got = fn(*(cp.asarray(a) if isinstance(a, np.ndarray) else a for a in args))
    for g, e in zip(
        got if isinstance(got, tuple) else (got,),
        expected if isinstance(expected, tuple) else (expected,),
        strict=True,
    ):
        assert isinstance(g, cp.ndarray)
        np.testing.assert_allclose(cp.asnumpy(g), e, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_gpu_training_matches_cpu_float64(optimizer):
    X, y = data()
    options = dict(
        optimizer=optimizer,
        epochs=3,
        batch_size=16,
        validation_fraction=0.25,
        early_stopping=True,
        clip_norm=5.0,
        verbose=0,
    )
    cpu = matnet.MLP([6, 16, 3], dropout=0.2, loss="cross_entropy", dtype="float64", seed=0)
    gpu = matnet.MLP(
        [6, 16, 3], dropout=0.2, loss="cross_entropy", dtype="float64", seed=0, device="cuda:0"
    )
    np.testing.assert_array_equal(to_host(gpu.flat_params), cpu.flat_params)  # same start
    matnet.fit(cpu, X, y, **options)
    matnet.fit(gpu, X, y, **options)
    assert isinstance(gpu.flat_params, cp.ndarray)
    np.testing.assert_allclose(to_host(gpu.flat_params), cpu.flat_params, rtol=1e-8, atol=1e-10)
    assert isinstance(gpu.predict(X), np.ndarray)
    np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))


def test_gpu_float32_training_and_files(tmp_path):
    X, y = data()
    gpu = matnet.MLP([6, 16, 3], loss="cross_entropy", seed=0, backend="cupy")
    matnet.fit(gpu, X, y, epochs=2, batch_size=32, verbose=0)
    assert gpu.flat_params.dtype == np.float32
    matnet.save(gpu, tmp_path / "gpu.safetensors")
    loaded = matnet.load(tmp_path / "gpu.safetensors")
    np.testing.assert_array_equal(loaded.flat_params, to_host(gpu.flat_params))


def test_gpu_models_train_data_parallel():
    from matnet.distributed import simulate

    X, y = data()
    cpu = matnet.MLP([6, 16, 3], loss="cross_entropy", dtype="float64", seed=0)
    matnet.fit(cpu, X, y, optimizer="adam", epochs=2, batch_size=16, verbose=0)

    def rank_main(comm):
        model = matnet.MLP(
            [6, 16, 3], loss="cross_entropy", dtype="float64", seed=comm.rank, device="cuda"
        )
        matnet.fit(model, X, y, optimizer="adam", epochs=2, batch_size=16, verbose=0, comm=comm)
        return to_host(model.flat_params)

    for params in simulate(2, rank_main):
        np.testing.assert_allclose(params, cpu.flat_params, rtol=1e-8, atol=1e-10)
