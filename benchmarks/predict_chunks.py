"""Inference on 10,000 rows: ``model.forward``, ``predict_proba`` and ``logits`` at several chunk
sizes, as fractions of the forward products alone (rounds interleaved)::

    .venv/bin/python benchmarks/predict_chunks.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import bench_train as bt
import numpy as np
from threadpoolctl import threadpool_limits

import matnet.plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rows", type=int, default=10000)
    args = parser.parse_args()
    X, _ = bt.make_data(args.rows)
    model = matnet.MLP(list(bt.SIZES), loss="cross_entropy")
    limit = bt.LimitForward(args.rows, np.float32)
    default_chunk = matnet.plan.PREDICT_CHUNK

    def logits(chunk):
        def call():
            matnet.plan.PREDICT_CHUNK = chunk
            model.logits(X)
            matnet.plan.PREDICT_CHUNK = default_chunk

        return call

    calls = {"limit": limit.run, "forward": lambda: model.forward(X)}
    calls["predict_proba"] = lambda: model.predict_proba(X)
    for chunk in (16384, 4096, 2048, 1024):
        calls[f"logits, chunks of {chunk}"] = logits(chunk)
    times: dict[str, list[float]] = {key: [] for key in calls}
    with threadpool_limits(args.threads):
        for call in calls.values():
            call()
        for _ in range(args.rounds):
            for key, call in calls.items():
                time.sleep(0.05)
                start = time.perf_counter()
                for _ in range(3):
                    call()
                times[key].append((time.perf_counter() - start) / 3)
    for key, t in times.items():
        fraction = bt.median_ratio(times["limit"], t)
        print(
            f"{args.threads} threads {key:26s} {statistics.median(t) * 1e3:7.2f} ms  {fraction:.3f}"
        )


if __name__ == "__main__":
    main()
