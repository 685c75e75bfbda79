"""matnet's optional compiled kernels (``matnet/_kernels.c``), or None.

They fuse passes that NumPy makes separately: the batch gather with prefetching, bias + ReLU, the
ReLU backward with the bias gradient's column sums, and Adam's update. A training step then computes
the same numbers (to the rounding of ``db``'s sums) in less time (the figures are in
benchmarks/README.md). They are built with the package where a
C compiler exists; without them, or with ``MATNET_NO_KERNELS=1``, matnet runs its NumPy path.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

kernels: Any = None
if os.environ.get("MATNET_NO_KERNELS") != "1":
    try:
        from matnet import _kernels as kernels  # type: ignore[attr-defined, no-redef]
    except ImportError:  # built without a C compiler
        kernels = None


def usable(*arrays: Any) -> bool:
    """True when the kernels are built and every array is a C-contiguous float32/64 host array of
    one dtype."""
    if kernels is None:
        return False
    dtype = arrays[0].dtype if type(arrays[0]) is np.ndarray else None
    return dtype in (np.float32, np.float64) and all(
        type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous for a in arrays
    )


def take_rows(X: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``np.take(X, idx, axis=0, out=out[:len(idx)], mode="clip")``: the batch gather of every
    training loop, through the prefetching kernel when it can take these arrays."""
    out = out[: idx.shape[0]]
    if (
        kernels is not None
        and type(X) is np.ndarray
        and X.ndim == 2
        and X.shape[0]
        and X.flags.c_contiguous
        and X.dtype == out.dtype
        and idx.dtype == np.int64
    ):
        kernels.gather_rows(X, idx, out)
        return out
    return np.take(X, idx, axis=0, out=out, mode="clip")
