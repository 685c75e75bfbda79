"""What numba would give as an optional accelerator, and what it costs in memory (not shipped).

Fused kernels against matnet's NumPy passes at batch 512, one thread, and the RSS that ``import numba``
and three compiled kernels add. Needs numba (``pip install numba``)::

    .venv/bin/python benchmarks/numba_probe.py
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

import numpy as np


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    before = rss_mib()
    try:
        import numba
    except ImportError:
        sys.exit("numba is not installed: pip install numba")
    imported = rss_mib()

    @numba.njit(cache=True)
    def relu_backward(dA, A):  # dA *= (A > 0)
        n, k = dA.shape
        for i in range(n):
            for j in range(k):
                if A[i, j] <= 0:
                    dA[i, j] = 0

    @numba.njit(cache=True)
    def bias_relu(Z, b):  # Z = max(Z + b, 0) in one pass
        n, k = Z.shape
        for i in range(n):
            for j in range(k):
                v = Z[i, j] + b[0, j]
                Z[i, j] = v if v > 0 else 0

    @numba.njit(cache=True)
    def sgd(p, g, lr):  # p -= lr * g in one pass
        for i in range(p.shape[0]):
            p[i] -= lr * g[i]

    rng = np.random.default_rng(0)
    A = np.maximum(rng.standard_normal((512, 256)), 0).astype(np.float32)
    dA = rng.standard_normal((512, 256)).astype(np.float32)
    Z = rng.standard_normal((512, 256)).astype(np.float32)
    b = rng.standard_normal((1, 256)).astype(np.float32)
    zeros = np.zeros((1, 256), np.float32)
    p, g = np.zeros(235146, np.float32), np.ones(235146, np.float32)
    lr = np.float32(0.01)
    relu_backward(dA, A)
    bias_relu(Z, b)
    sgd(p, g, lr)
    compiled = rss_mib()
    print(
        f"RSS {before:.1f} MiB; +{imported - before:.1f} after import numba; "
        f"+{compiled - before:.1f} after three kernels"
    )

    def numpy_bias_relu():
        Z.__iadd__(b)
        np.maximum(Z, zeros, out=Z)

    def numpy_sgd():
        g.__imul__(-0.01)
        p.__iadd__(g)

    pairs = [
        ("ReLU backward", lambda: np.multiply(dA, A > 0, out=dA), lambda: relu_backward(dA, A)),
        ("bias + ReLU", numpy_bias_relu, lambda: bias_relu(Z, b)),
        ("SGD step", numpy_sgd, lambda: sgd(p, g, lr)),
    ]
    for name, numpy_fn, numba_fn in pairs:
        t_np, t_nb = (
            min(timeit.repeat(f, number=500, repeat=7)) / 500 * 1e6 for f in (numpy_fn, numba_fn)
        )
        print(f"{name:14s} NumPy {t_np:6.1f} us  numba {t_nb:6.1f} us")


if __name__ == "__main__":
    main()
