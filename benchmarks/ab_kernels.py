"""A/B of matnet's optional C kernels (matnet/_kernels.c) against its NumPy path.

Both variants are ``matnet`` through ``fit`` (one epoch per round, as in bench_train.py), in one
process, rounds interleaved with the hand-written NumPy loop and the limit; then inference::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        .venv/bin/python benchmarks/ab_kernels.py --batch 128 --threads 2 --rounds 9
"""

from __future__ import annotations

import statistics

import bench_train as bt
import numpy as np
from threadpoolctl import threadpool_limits

from matnet import _accel

BUILT = _accel.kernels


class Toggled:
    """Run ``impl`` with the kernels on (``kernels`` the module) or off (None)."""

    def __init__(self, impl, kernels) -> None:
        self.impl, self.kernels = impl, kernels

    def run(self) -> None:
        _accel.kernels = self.kernels
        try:
            self.impl.run()
        finally:
            _accel.kernels = BUILT


class Forward:
    def __init__(self, model, X, kernels) -> None:
        self.model, self.X, self.kernels = model, X, kernels

    def run(self) -> None:
        _accel.kernels = self.kernels
        try:
            for _ in range(3):
                self.model.forward(self.X)
        finally:
            _accel.kernels = BUILT


def main() -> None:
    args = bt.ab_arguments(__doc__, rounds=9)
    if BUILT is None:
        raise SystemExit("matnet's C kernels are not built (pip install -e . with a C compiler)")
    X, y = bt.make_data(args.n)
    lr = bt.LR["sgd"]
    impls = {
        "kernels": Toggled(bt.Matnet(X, y, args.batch, "sgd", lr), BUILT),
        "numpy": Toggled(bt.Matnet(X, y, args.batch, "sgd", lr), None),
        "reference": bt.Reference(X, y, args.batch, lr),
        "limit": bt.Limit(args.n, args.batch, np.float32),
    }
    with threadpool_limits(args.threads):
        times = bt.interleaved(impls, args.rounds)
        X_inf, _ = bt.make_data(10000)
        model = impls["kernels"].impl.model
        inference = {
            "kernels": Forward(model, X_inf, BUILT),
            "numpy": Forward(model, X_inf, None),
            "limit": _Repeat(bt.LimitForward(10000, np.float32)),
        }
        inf_times = bt.interleaved(inference, args.rounds)
    steps = -(-args.n // args.batch)
    for key in ("kernels", "numpy"):
        print(
            f"batch {args.batch}, {args.threads} threads, {key:7s}: "
            f"/ NumPy loop {bt.median_ratio(times['reference'], times[key]):.3f}, "
            f"fraction {bt.median_ratio(times['limit'], times[key]):.3f}, "
            f"{statistics.median(times[key]) / steps * 1e6:.0f} us per step; "
            f"forward on 10,000 rows {bt.median_ratio(inf_times['limit'], inf_times[key]):.3f} "
            "of the products"
        )
    print(f"kernels speed-up over numpy: {bt.median_ratio(times['numpy'], times['kernels']):.3f}")


class _Repeat:
    def __init__(self, impl) -> None:
        self.impl = impl

    def run(self) -> None:
        for _ in range(3):
            self.impl.run()


if __name__ == "__main__":
    main()
