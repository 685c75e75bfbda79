"""One BLAS level-1 call NumPy does not expose: ``axpy`` (``y += a * x`` in one pass).

NumPy has no fused multiply-add over arrays, so the SGD step ``p -= lr * g`` costs two passes over the
parameter vector; OpenBLAS's ``saxpy`` does it in one pass and on every BLAS thread (the figures are in
benchmarks/README.md). The function is taken from the very OpenBLAS library that NumPy's wheel bundles
and has already loaded (``scipy-openblas64``, 64-bit integers), so it shares NumPy's thread pool: a
second OpenBLAS (SciPy's, tried first) made whole epochs many times slower through two pools of
spinning threads.

Anything else (another BLAS build, a GPU array, a strided or non-float array) gets ``False`` back and
the caller does the two NumPy passes. ``MATNET_NUMPY_AXPY=1`` forces that path. The result may differ
from the two passes in the last bit (the product and the sum are fused).
"""

from __future__ import annotations

import ctypes
import glob
import os
from typing import Any

import numpy as np

__all__ = ["axpy"]

_FUNCS: dict[Any, Any] | None = None


def _load() -> dict[Any, Any]:
    """``{float32: saxpy, float64: daxpy}`` from NumPy's bundled OpenBLAS, or ``{}``."""
    if os.environ.get("MATNET_NUMPY_AXPY") == "1":
        return {}
    root = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    patterns = ("numpy.libs/libscipy_openblas64_*", "numpy/.dylibs/libscipy_openblas64_*")
    paths = sorted(p for pattern in patterns for p in glob.glob(os.path.join(root, pattern)))
    funcs: dict[np.dtype, Any] = {}
    if len(paths) != 1:  # not the layout of NumPy's own wheels: leave it alone
        return funcs
    try:
        lib = ctypes.CDLL(paths[0])  # the handle NumPy already holds, not a second copy
        for dtype, name, scalar in (
            (np.float32, "scipy_cblas_saxpy64_", ctypes.c_float),
            (np.float64, "scipy_cblas_daxpy64_", ctypes.c_double),
        ):
            func = getattr(lib, name)
            func.restype = None
            # void cblas_?axpy(blasint n, alpha, const x*, blasint incx, y*, blasint incy)
            func.argtypes = [
                ctypes.c_int64,
                scalar,
                ctypes.c_void_p,
                ctypes.c_int64,
                ctypes.c_void_p,
                ctypes.c_int64,
            ]
            funcs[np.dtype(dtype)] = func
    except (OSError, AttributeError):
        return {}
    return funcs


def axpy(alpha: float, x: Any, y: Any) -> bool:
    """``y += alpha * x`` in place through BLAS; False (and nothing done) when BLAS cannot do it.

    Parameters
    ----------
    alpha : float
    x, y : arrays of the same shape and dtype (float32 or float64), C-contiguous, on the host
    """
    global _FUNCS
    if _FUNCS is None:
        _FUNCS = _load()
    func = _FUNCS.get(getattr(y, "dtype", None))
    if (
        func is None
        or type(x) is not np.ndarray
        or type(y) is not np.ndarray
        or x.dtype != y.dtype
        or x.shape != y.shape
        or not (x.flags.c_contiguous and y.flags.c_contiguous and y.flags.writeable)
        or np.may_share_memory(x, y)
    ):
        return False
    func(y.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1)
    return True
