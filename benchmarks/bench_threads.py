"""One or two BLAS threads for the tabular recipe's fit: wall and CPU time per epoch on tables of
344 to 40,000 rows (the recipe's batch of 256 rows, 4 members of 128 units).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_threads.py

Results and the rule they chose: benchmarks/RESULTS-threads.md.
"""

from __future__ import annotations

import time

import numpy as np

from matnet.tabular import prepare_tabular

SHAPES = ((344, 7), (2000, 10), (10000, 12), (40000, 11))
EPOCHS = 3


def per_epoch(X: np.ndarray, y: np.ndarray, threads: int) -> tuple[float, float]:
    """(wall, CPU) seconds per epoch of the recipe's fit with ``threads`` BLAS threads."""
    run = prepare_tabular(X, y, task="classification", seed=0)
    wall, cpu = time.perf_counter(), time.process_time()
    run.fit(epochs=EPOCHS, verbose=0, threads=threads)
    return (time.perf_counter() - wall) / EPOCHS, (time.process_time() - cpu) / EPOCHS


def main() -> None:
    rng = np.random.default_rng(0)
    print("| rows | columns | wall, 1 thread | wall, 2 threads | 2 / 1 | CPU, 1 | CPU, 2 |")
    print("|---|---|---|---|---|---|---|")
    for n, d in SHAPES:
        X = rng.normal(size=(n, d))
        y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
        runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
        for threads in (1, 2, 1, 2):  # interleaved, the best of two each
            runs[threads].append(per_epoch(X, y, threads))
            time.sleep(0.3)  # OpenBLAS threads spin for ~0.1 s after a product
        (w1, c1), (w2, c2) = (min(runs[t]) for t in (1, 2))
        print(
            f"| {n:,} | {d} | {w1 * 1e3:.0f} ms | {w2 * 1e3:.0f} ms | {w2 / w1:.2f} | "
            f"{c1 * 1e3:.0f} ms | {c2 * 1e3:.0f} ms |",
            flush=True,
        )


if __name__ == "__main__":
    main()
