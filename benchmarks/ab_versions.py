"""Two checkouts of matnet, interleaved: one epoch of fit (784-256-128-10, 30,000 float32 rows, one
BLAS thread) and predict_proba on 10,000 rows, each run in a fresh process, rounds alternating.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/ab_versions.py BEFORE AFTER

BEFORE and AFTER are folders that hold a ``matnet`` package (a clone with its C kernels built in place:
``python setup.py build_ext --inplace``). Prints each run and the median of the per-round ratios
after/before (below 1: AFTER is faster). Used for the redesign's before/after
(benchmarks/RESULTS-redesign.md).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

CHILD = r"""
import sys, time, numpy as np
from threadpoolctl import threadpool_limits
import matnet
rng = np.random.default_rng(0)
X = rng.standard_normal((30000, 784)).astype(np.float32)
y = rng.integers(0, 10, 30000)
batch, opt = int(sys.argv[1]), sys.argv[2]
with threadpool_limits(1):
    model = matnet.MLP([784, 256, 128, 10], "relu", loss="cross_entropy", seed=0)
    model.fit(X[:2000], y[:2000], epochs=1, batch_size=batch, optimizer=opt, verbose=0)
    fits = []
    for _ in range(3):
        t = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, verbose=0)
        fits.append(time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(5):
        model.predict_proba(X[:10000])
print(min(fits), (time.perf_counter() - t) / 5)
"""

CONFIGS = (("128", "sgd"), ("512", "sgd"), ("128", "adam"))


def run(path: str, batch: str, opt: str) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=path)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, batch, opt], env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(out.stderr)
    fit, predict = out.stdout.split()
    return float(fit), float(predict)


def main() -> None:
    before, after, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5
    ratios: dict[str, list[float]] = {}
    for r in range(rounds):
        for batch, opt in CONFIGS:
            b, a = run(before, batch, opt), run(after, batch, opt)
            print(f"round {r + 1} batch {batch} {opt}: fit {b[0]:.3f} -> {a[0]:.3f} s, "
                  f"predict {b[1] * 1e3:.1f} -> {a[1] * 1e3:.1f} ms", flush=True)  # fmt: skip
            ratios.setdefault(f"fit batch {batch} {opt}", []).append(a[0] / b[0])
            ratios.setdefault("predict_proba", []).append(a[1] / b[1])
    for name, values in ratios.items():
        print(f"{name}: after/before median {statistics.median(values):.3f} over {len(values)}")


if __name__ == "__main__":
    main()
