"""The one module that knows which array library is in use.

Every public function in :mod:`matnet.functional` asks :func:`array_namespace` for the namespace of
its inputs, so the article's formulas run unchanged on NumPy (the default), CuPy or any library that
implements the Python array API standard (``array-api-strict`` in the tests).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["array_namespace", "resolve_dtype", "DTYPES"]

DTYPES = {"float32": np.float32, "float64": np.float64}


def array_namespace(*arrays: Any) -> Any:
    """Return the array-API namespace of the first array that declares one (NumPy otherwise)."""
    for array in arrays:
        get_namespace = getattr(array, "__array_namespace__", None)
        if get_namespace is not None:
            return get_namespace()
    return np


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
