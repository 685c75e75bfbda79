"""A/B of the SGD step through NumPy's own OpenBLAS axpy (matnet._blas) against the two NumPy passes.

Both variants are ``matnet`` through ``fit`` (one epoch per round, as in bench_train.py), in one
process, rounds interleaved with the hand-written NumPy loop and the limit::

    .venv/bin/python benchmarks/ab_sgd_axpy.py --batch 128 --threads 2 --rounds 5
"""

from __future__ import annotations

import statistics

import bench_train as bt
import numpy as np
from threadpoolctl import threadpool_limits

from matnet import _blas


class Toggled:
    """matnet's ``fit`` with the BLAS routines on (``funcs`` loaded) or off (``{}``)."""

    def __init__(self, X, y, batch: int, funcs: dict) -> None:
        self.matnet = bt.Matnet(X, y, batch, "sgd", bt.LR["sgd"])
        self.funcs = funcs

    def run(self) -> None:
        _blas._FUNCS = self.funcs
        self.matnet.run()


def main() -> None:
    args = bt.ab_arguments(__doc__, rounds=5)
    X, y = bt.make_data(args.n)
    impls = {
        "axpy": Toggled(X, y, args.batch, _blas._load()),
        "numpy": Toggled(X, y, args.batch, {}),
        "reference": bt.Reference(X, y, args.batch, bt.LR["sgd"]),
        "limit": bt.Limit(args.n, args.batch, np.float32),
    }
    with threadpool_limits(args.threads):
        times = bt.interleaved(impls, args.rounds)
    steps = -(-args.n // args.batch)
    for key in ("axpy", "numpy"):
        print(
            f"batch {args.batch}, {args.threads} threads, {key:5s}: "
            f"/ NumPy loop {bt.median_ratio(times['reference'], times[key]):.3f}, "
            f"fraction {bt.median_ratio(times['limit'], times[key]):.3f}, "
            f"{statistics.median(times[key]) / steps * 1e6:.0f} us per step"
        )
    print(f"axpy speed-up over numpy: {bt.median_ratio(times['numpy'], times['axpy']):.3f}")


if __name__ == "__main__":
    main()
