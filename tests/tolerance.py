"""One tolerance rule for comparing two different computations of the same numbers.

Two computations of one result (another BLAS kernel, matnet's C kernels against its NumPy path,
PyTorch or ONNX Runtime against matnet) round differently. Each entry's error is a few units of the
dtype's epsilon times the size of the terms summed into it, and those terms are as large as the
array's largest entries: an entry near zero (a logit that cancels) carries the same absolute error
as the largest one, so a relative-only tolerance (``atol=0``) fails on it on some CPUs and not on
others. ``assert_close`` therefore allows ``atol = rtol * max|expected|`` besides ``rtol``.

Typical ``rtol``: 1e-5 in float32 (eps 1.2e-7: about 100 eps), 1e-12 in float64. Results of one and
the same computation (a resumed run, a reloaded model) are compared exactly instead, with
``np.testing.assert_array_equal``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def scale_of(expected: Any) -> float:
    """max|expected| over its finite entries (0 for none)."""
    values = np.abs(np.asarray(expected, dtype=np.float64))
    values = values[np.isfinite(values)]
    return float(values.max()) if values.size else 0.0


def assert_close(actual: Any, expected: Any, rtol: float, err_msg: str = "") -> None:
    """``np.testing.assert_allclose`` with ``atol = rtol * max|expected|``; NaN and ±inf must match
    exactly, as assert_allclose has them."""
    if not rtol > 0:
        raise ValueError(
            "rtol must be positive: compare identical computations with assert_array_equal"
        )
    np.testing.assert_allclose(
        actual, expected, rtol=rtol, atol=rtol * scale_of(expected), err_msg=err_msg
    )
