"""The one module that knows which array library is in use.

Every public function in :mod:`matnet.functional` asks :func:`array_namespace` for the namespace of
its inputs, so the article's formulas run unchanged on NumPy (the default), CuPy or any library that
implements the Python array API standard (``array-api-strict`` in the tests).

A model lives on a :class:`Backend`: NumPy on the host (the default, and the only array library that
``import matnet`` loads) or CuPy on a GPU, chosen with ``backend="cupy"`` or ``device="cuda:0"``. CuPy
is imported only when such a backend is asked for. Whatever the backend, weights are drawn on the host
and data crosses the boundary through :meth:`Backend.asarray` (host to device) and :func:`to_host`
(device to host), so model files and predictions are always NumPy arrays.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from matnet.errors import OptionalDependencyError

__all__ = [
    "array_namespace",
    "resolve_dtype",
    "DTYPES",
    "BACKEND_NAMES",
    "Backend",
    "get_backend",
    "to_host",
    "OptionalDependencyError",
    "import_optional",
    "blas_threads",
    "in_joblib_worker",
]

DTYPES = {"float32": np.float32, "float64": np.float64}
BACKEND_NAMES = ("numpy", "cupy")


def import_optional(module: str, extra: str, feature: str) -> Any:
    """Import ``module`` or raise :class:`OptionalDependencyError` naming ``pip install 'matnet[extra]'``."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise OptionalDependencyError(
            f"{feature} needs {module}, which is not installed (or failed to load: {exc}); "
            f"install it with: pip install 'matnet[{extra}]'"
        ) from exc


def in_joblib_worker() -> bool:
    """Whether this code runs inside a joblib worker of a parallel call (``GridSearchCV(n_jobs=2)``,
    say), where each worker's BLAS should not start a thread per core of its own.

    joblib runs each task inside ``parallel_config(backend=<the nested backend>)``, whose
    ``nesting_level`` is at least 1 in a worker of the threading, loky or multiprocessing backends
    and 0 outside (and in ``n_jobs=1`` runs); this is how scikit-learn's own nested calls find it.
    joblib is not imported here: a process that never loaded it is not a joblib worker.
    """
    if "joblib" not in sys.modules:
        return False
    try:
        from joblib.parallel import get_active_backend
    except ImportError:  # a joblib too old to say
        return False
    backend, _ = get_active_backend()
    return (getattr(backend, "nesting_level", 0) or 0) > 0


@contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Limit the BLAS (and OpenMP) thread pools to ``threads`` for the duration, through
    threadpoolctl, and put them back after.

    ``None`` leaves them alone, except inside a joblib worker (:func:`in_joblib_worker`), where it
    means 1: each of ``n_jobs`` workers running a BLAS thread per core makes training many times
    slower. An explicit number needs threadpoolctl (``pip install 'matnet[threads]'``; scikit-learn
    installs it too); the joblib default applies only where threadpoolctl is installed.

    Raises
    ------
    OptionalDependencyError
        When ``threads`` is a number and threadpoolctl is not installed.
    """
    if threads is None:
        if not in_joblib_worker():
            yield
            return
        try:
            import threadpoolctl
        except ImportError:
            yield
            return
        threads = 1
    else:
        threadpoolctl = import_optional("threadpoolctl", "threads", "threads=")
    # threadpoolctl's own context: the counts are put back when this run ends. They are the BLAS
    # library's, not this thread's: runs in threads of one process with different counts overlap.
    with threadpoolctl.threadpool_limits(limits=threads):
        yield


def _is_cupy(array: Any) -> bool:
    return type(array).__module__.split(".")[0] == "cupy"


def array_namespace(*arrays: Any) -> Any:
    """Return the array-API namespace of the first array that declares one (NumPy otherwise).

    CuPy arrays map to the ``cupy`` module (already imported, since the array exists), whether or
    not the installed CuPy declares ``__array_namespace__``.
    """
    for array in arrays:
        if _is_cupy(array):
            return sys.modules["cupy"]
        get_namespace = getattr(array, "__array_namespace__", None)
        if get_namespace is not None:
            return get_namespace()
    return np


def to_host(array: Any) -> np.ndarray:
    """``array`` as a NumPy array in host memory (no copy when it already is one).

    Parameters
    ----------
    array : numpy.ndarray, cupy.ndarray or any array-API array of any shape

    Returns
    -------
    numpy.ndarray of the same shape and dtype
    """
    if _is_cupy(array):
        return array.get()  # explicit device-to-host copy; CuPy refuses implicit conversion
    return np.asarray(array)


def all_finite(X: np.ndarray) -> bool:
    """True when every entry of the contiguous float array ``X`` is finite, without a temporary of
    X's size: a sum of squares is finite exactly when every entry is, unless it overflows, which the
    exact check (in blocks of rows) then settles. One BLAS pass, twice as fast as ``np.isfinite``."""
    flat = X.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.dot(flat, flat)):
            return True
    rows = max(1, 2**20 // max(1, X.shape[1]))
    return all(np.isfinite(X[i : i + rows]).all() for i in range(0, X.shape[0], rows))


def resolve_dtype(dtype: Any) -> type[np.floating]:
    """Map ``"float32"``/``"float64"`` (or the NumPy types) to a NumPy floating type.

    Raises
    ------
    ValueError
        For any other dtype: matnet computes in float32 or float64 only.
    """
    try:
        resolved = np.dtype(dtype).type
    except TypeError as exc:
        raise ValueError(f"dtype {dtype!r} is not understood; use 'float32' or 'float64'") from exc
    if resolved not in (np.float32, np.float64):
        raise ValueError(f"dtype {dtype!r} is not supported; use 'float32' or 'float64'")
    return resolved


@dataclass(frozen=True)
class Backend:
    """Where a model's arrays live: ``name`` is "numpy" (host) or "cupy" (GPU ``device_id``)."""

    name: str = "numpy"
    device_id: int | None = None

    @property
    def is_host(self) -> bool:
        return self.name == "numpy"

    @property
    def xp(self) -> Any:
        """The array module: ``numpy`` or ``cupy`` (imported on first use)."""
        if self.is_host:
            return np
        return import_optional("cupy", "gpu", f"backend={self.name!r}")

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:<id>"``."""
        return "cpu" if self.is_host else f"cuda:{self.device_id}"

    def asarray(self, array: Any) -> Any:
        """Copy a host array to this backend's device (a no-op for NumPy arrays on the host)."""
        if self.is_host:
            return to_host(array)
        cp = self.xp
        with cp.cuda.Device(self.device_id):
            return cp.asarray(array)

    def check_available(self) -> Backend:
        """Raise :class:`OptionalDependencyError` unless this backend's library and device work."""
        if not self.is_host:
            cp = self.xp
            try:
                count = cp.cuda.runtime.getDeviceCount()
            except Exception as exc:  # CUDA driver missing or broken: CuPy raises its own types
                raise OptionalDependencyError(
                    f"CuPy is installed but found no usable CUDA device ({exc}); use "
                    "backend='numpy' on this machine"
                ) from exc
            if self.device_id >= count:
                raise ValueError(
                    f"device {self.device!r} does not exist: this machine has {count} CUDA "
                    f"device(s), cuda:0 to cuda:{count - 1}"
                )
        return self

    def __str__(self) -> str:
        return self.device


def get_backend(backend: str | Backend | None = None, device: str | None = None) -> Backend:
    """Resolve a ``backend`` name and/or a ``device`` string to a :class:`Backend`.

    Parameters
    ----------
    backend : {"numpy", "cupy"} or Backend, optional
        The array library. Default: NumPy, unless ``device`` names a GPU.
    device : str, optional
        ``"cpu"``, or ``"cuda"``, ``"gpu"``, ``"cuda:<id>"`` for a GPU (which implies CuPy).

    Raises
    ------
    ValueError
        For an unknown name, a malformed device, or a backend and device that contradict each other.
    OptionalDependencyError
        For CuPy when it is not installed (``pip install 'matnet[gpu]'``) or finds no GPU.
    """
    if isinstance(backend, Backend):
        if device is not None and get_backend(device=device) != backend:
            raise ValueError(f"backend {backend} and device={device!r} disagree; give one of them")
        return backend
    if backend is not None and backend not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_NAMES)}")
    device_id: int | None = None
    if device is not None:
        if not isinstance(device, str):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
        kind, _, index = device.lower().partition(":")
        if kind == "cpu" and not index:
            from_device = "numpy"
        elif kind in ("cuda", "gpu") and (not index or index.isdigit()):
            from_device, device_id = "cupy", int(index) if index else 0
        else:
            raise ValueError(
                f"unknown device {device!r}; use 'cpu', 'cuda', 'gpu' or 'cuda:<index>'"
            )
        if backend is not None and backend != from_device:
            raise ValueError(
                f"backend={backend!r} cannot run on device={device!r}; "
                f"{'numpy runs on the cpu' if backend == 'numpy' else 'cupy needs a cuda device'}"
            )
        backend = from_device
    name = backend or "numpy"
    return Backend(name, (device_id or 0) if name == "cupy" else None).check_available()
