"""Backend selection: NumPy by default and the only library `import matnet` loads; CuPy on request.

No GPU is available in CI, so CuPy itself is not exercised here. The plumbing (weights drawn on the
host then moved, batches moved to the device, logits and files back on the host) is tested with a
stand-in ``cupy`` module whose arrays are a NumPy subclass, so every array that reaches the "device"
can be told apart from a host array.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import types

import numpy as np
import pytest

import matnet
from matnet.backend import (
    Backend,
    OptionalDependencyError,
    array_namespace,
    get_backend,
    to_host,
)


def test_import_matnet_loads_numpy_only():
    code = (
        "import sys, matnet, matnet.distributed\n"
        "m = matnet.MLP([3, 2], loss='mse')\n"
        "m.predict([[1.0, 2.0, 3.0]])\n"
        "bad = sorted(k for k in ('cupy', 'mpi4py', 'array_api_strict', 'torch') if k in sys.modules)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("backend", "device", "expected"),
    [
        (None, None, Backend("numpy", None)),
        ("numpy", None, Backend("numpy", None)),
        (None, "cpu", Backend("numpy", None)),
        ("numpy", "CPU", Backend("numpy", None)),
    ],
)
def test_host_backends(backend, device, expected):
    got = get_backend(backend, device)
    assert got == expected and got.is_host and got.xp is np and got.device == "cpu"


@pytest.mark.parametrize(
    ("backend", "device", "message"),
    [
        ("torch", None, "unknown backend 'torch'"),
        (None, "tpu", "unknown device 'tpu'"),
        (None, "cuda:x", "unknown device 'cuda:x'"),
        (None, "cpu:0", "unknown device 'cpu:0'"),
        ("numpy", "cuda:0", "backend='numpy' cannot run on device='cuda:0'"),
        ("cupy", "cpu", "backend='cupy' cannot run on device='cpu'"),
    ],
)
def test_bad_backend_or_device(backend, device, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        get_backend(backend, device)


def test_device_must_be_a_string():
    with pytest.raises(TypeError, match="device must be a string"):
        get_backend(device=0)


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail, installed or not


@pytest.mark.parametrize(
    "kwargs", [{"backend": "cupy"}, {"device": "cuda"}, {"device": "gpu"}, {"device": "cuda:1"}]
)
def test_missing_cupy_names_the_gpu_extra(no_cupy, kwargs):
    with pytest.raises(OptionalDependencyError, match=r"pip install 'matnet\[gpu\]'"):
        get_backend(**kwargs)
    with pytest.raises(ImportError, match=r"matnet\[gpu\]"):
        matnet.MLP([4, 3], **kwargs)


def test_missing_cupy_when_moving_a_model(no_cupy):
    model = matnet.MLP([4, 3], dtype="float64")
    before = model.flat_params.copy()
    with pytest.raises(OptionalDependencyError, match=r"matnet\[gpu\]"):
        model.to("cuda:0")
    assert model.device == "cpu"
    np.testing.assert_array_equal(model.flat_params, before)


def test_to_host_and_namespace_of_host_and_array_api_arrays():
    a = np.arange(6.0).reshape(2, 3)
    assert to_host(a) is a
    assert array_namespace(a) is np and array_namespace([1, 2]) is np
    xps = pytest.importorskip("array_api_strict")
    s = xps.asarray(a)
    assert array_namespace(a, s) is np
    assert array_namespace(s, a) is xps
    host = to_host(s)
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, a)


# --- a stand-in for CuPy: NumPy arrays of a subclass that marks "device" memory ----------------


class DeviceArray(np.ndarray):
    """Marks arrays in "device" memory; ufuncs and NumPy functions keep the subclass."""

    def get(self):
        return np.array(self.view(np.ndarray), copy=True)


DeviceArray.__module__ = "cupy._core.core"


@pytest.fixture
def fake_cupy(monkeypatch):
    module = types.ModuleType("cupy")
    module.ndarray = DeviceArray
    module.asarray = lambda a, dtype=None: np.array(to_host(a), dtype=dtype).view(DeviceArray)
    module.zeros_like = lambda a: np.zeros_like(a).view(DeviceArray)
    module.empty = lambda shape, dtype=None: np.empty(shape, dtype=dtype).view(DeviceArray)
    module.ones = lambda shape, dtype=None: np.ones(shape, dtype=dtype).view(DeviceArray)
    module.zeros = lambda shape, dtype=None: np.zeros(shape, dtype=dtype).view(DeviceArray)
    devices = []

    @contextlib.contextmanager
    def device(index):
        devices.append(index)
        yield

    module.cuda = types.SimpleNamespace(
        Device=device, runtime=types.SimpleNamespace(getDeviceCount=lambda: 2)
    )
    module.devices = devices
    monkeypatch.setitem(sys.modules, "cupy", module)
    return module


def test_device_backend_resolution(fake_cupy):
    assert get_backend("cupy") == Backend("cupy", 0) == get_backend(device="cuda")
    assert get_backend(device="cuda:1").device == "cuda:1"
    with pytest.raises(ValueError, match="'cuda:2' does not exist: this machine has 2"):
        get_backend(device="cuda:2")
    assert array_namespace(fake_cupy.asarray(np.ones(2))) is fake_cupy


def test_gpu_model_starts_from_the_cpu_models_weights(fake_cupy):
    cpu = matnet.MLP([5, 7, 3], dropout=0.2, dtype="float64", seed=3)
    gpu = matnet.MLP([5, 7, 3], dropout=0.2, dtype="float64", seed=3, device="cuda:1")
    assert gpu.device == "cuda:1" and fake_cupy.devices[-1] == 1
    assert type(gpu.flat_params) is DeviceArray and type(gpu.flat_grads) is DeviceArray
    for key, value in gpu.params.items():
        assert type(value) is DeviceArray, key
        assert np.shares_memory(value, gpu.flat_params), key
    np.testing.assert_array_equal(to_host(gpu.flat_params), cpu.flat_params)
    gpu.initialize(11)
    cpu.initialize(11)
    np.testing.assert_array_equal(to_host(gpu.flat_params), cpu.flat_params)
    assert type(gpu.flat_params) is DeviceArray


def test_gpu_training_and_inference_cross_the_boundary_explicitly(fake_cupy, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    options = dict(optimizer="adam", epochs=3, batch_size=16, validation_fraction=0.25, verbose=0)
    cpu = matnet.MLP([5, 7, 3], loss="cross_entropy", dropout=0.2, dtype="float64", seed=3)
    gpu = matnet.MLP(
        [5, 7, 3], loss="cross_entropy", dropout=0.2, dtype="float64", seed=3, backend="cupy"
    )
    h_cpu, h_gpu = matnet.fit(cpu, X, y, **options), matnet.fit(gpu, X, y, **options)
    # the same numbers: same initial weights, same batches, same dropout masks (drawn on the host)
    np.testing.assert_allclose(to_host(gpu.flat_params), cpu.flat_params, rtol=1e-12)
    assert h_gpu["val_loss"] == pytest.approx(h_cpu["val_loss"], rel=1e-12)
    assert type(gpu.flat_params) is DeviceArray  # still on the device after training
    for layer in gpu.layers:
        for name, buffer in layer._buffers.items():
            if name == "workspace":  # (batch size, dtype, (Z, ones, dA_prev or None))
                buffers = [b for b in buffer[2] if b is not None]
            else:
                buffers = [buffer]
            for b in buffers:
                assert type(b) is DeviceArray, (layer, name)
        for layer in gpu.layers:
            zeros = getattr(getattr(layer, "fn", None), "_zeros", None)
            assert zeros is None or type(zeros) is DeviceArray, layer
    # results come back as host arrays
    for result in (
        gpu.predict(X),
        gpu.predict_proba(X),
        gpu.logits(X),
        *gpu.get_weights().values(),
    ):
        assert type(result) is np.ndarray
    Z, backward = gpu.forward(X[:4])
    assert type(Z) is np.ndarray
    # files are written from host arrays and load on the host
    path = tmp_path / "gpu.safetensors"
    matnet.save(gpu, path)
    loaded = matnet.load(path)
    assert loaded.device == "cpu"
    np.testing.assert_array_equal(loaded.flat_params, to_host(gpu.flat_params))
    # and a model moves back
    gpu.to("cpu")
    assert type(gpu.flat_params) is np.ndarray and gpu.device == "cpu"
    np.testing.assert_array_equal(gpu.flat_params, loaded.flat_params)


def test_gpu_gradients_cross_to_the_host_for_the_allreduce(fake_cupy):
    from matnet.distributed import simulate

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    cpu = matnet.MLP([5, 6, 3], loss="cross_entropy", dtype="float64", seed=1)
    matnet.fit(cpu, X, y, optimizer="sgd", epochs=2, batch_size=8, verbose=0)

    def rank_main(comm):
        model = matnet.MLP([5, 6, 3], loss="cross_entropy", dtype="float64", seed=1, device="cuda")
        matnet.fit(model, X, y, optimizer="sgd", epochs=2, batch_size=8, verbose=0, comm=comm)
        return model.flat_params

    for params in simulate(2, rank_main):
        assert type(params) is DeviceArray
        np.testing.assert_allclose(to_host(params), cpu.flat_params, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_gpu_resume_puts_the_optimizer_state_back_on_the_device(fake_cupy, tmp_path, optimizer):
    """A checkpoint's moments are host arrays; resuming a GPU model moves them to the device, and the
    resumed run equals an uninterrupted one."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(48, 5))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)

    def make_opt():
        return matnet.Adam(0.01) if optimizer == "adam" else matnet.SGD(0.05, momentum=0.9)

    def make_gpu():
        return matnet.MLP([5, 7, 3], loss="cross_entropy", dtype="float64", seed=3, backend="cupy")

    options = dict(batch_size=16, verbose=0, seed=0)
    whole = make_gpu()
    matnet.fit(whole, X, y, epochs=4, optimizer=make_opt(), **options)
    path = tmp_path / "run.ckpt"
    first = make_gpu()
    matnet.fit(first, X, y, epochs=2, optimizer=make_opt(), checkpoint=path, **options)
    resumed, opt = make_gpu(), make_opt()
    matnet.fit(resumed, X, y, epochs=4, optimizer=opt, checkpoint=path, resume=True, **options)
    state = {k: v for k, v in opt.state_dict().items() if hasattr(v, "shape")}
    assert state and all(type(v) is DeviceArray for v in state.values()), state.keys()
    np.testing.assert_array_equal(to_host(resumed.flat_params), to_host(whole.flat_params))


def test_gpu_state_lives_on_the_device_and_trains_like_the_cpu(fake_cupy, tmp_path):
    """Non-trainable state (a Standardize layer's mean and scale) moves with the model, is fitted
    from host rows into device memory, and saves from the host."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 4)) * [1, 10, 100, 1000]
    y = (X[:, 0] > 0).astype(int)
    options = dict(epochs=3, batch_size=16, verbose=0, validation_fraction=0.2)
    cpu = matnet.MLP([4, 6, 2], loss="cross_entropy", standardize=True, dtype="float64", seed=2)
    gpu = matnet.MLP(
        [4, 6, 2], loss="cross_entropy", standardize=True, dtype="float64", seed=2, device="cuda"
    )
    assert type(gpu.flat_state) is DeviceArray
    assert all(np.shares_memory(v, gpu.flat_state) for v in gpu.state.values())
    matnet.fit(cpu, X, y, **options)
    matnet.fit(gpu, X, y, **options)
    assert type(gpu.flat_state) is DeviceArray
    np.testing.assert_array_equal(to_host(gpu.flat_state), cpu.flat_state)
    np.testing.assert_allclose(to_host(gpu.flat_params), cpu.flat_params, rtol=1e-12)
    matnet.save(gpu, tmp_path / "gpu.safetensors")
    loaded = matnet.load(tmp_path / "gpu.safetensors")
    np.testing.assert_array_equal(loaded.flat_state, cpu.flat_state)
    gpu.to("cpu")
    assert type(gpu.flat_state) is np.ndarray
    np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))
