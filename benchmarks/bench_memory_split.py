"""Peak memory of training on a memory-mapped X of 2 GiB, with and without a validation split.

Each case runs in a fresh process on the same float32 ``.npy`` file opened with ``mmap_mode="r"``
(file-backed pages, which the kernel drops under pressure and which are not the process's own
memory). Two numbers per case, both measured from just before the training call (after X is mapped
and y is in memory):

- ``anon``: the peak of the process's anonymous resident memory (``RssAnon`` of
  ``/proc/self/status``, sampled every 2 ms by a thread) minus its value before: the memory the
  training itself took, whatever allocated it;
- ``traced``: the peak that ``tracemalloc`` saw (every NumPy and Python allocation).

The issue's bound (issue 15, item 16): under 100 MiB beyond the data for ``fit`` with
``validation_fraction=0.1`` and for the estimators with ``early_stopping=True``.

Run (the results file names the command that wrote it)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_memory_split.py \\
        --out benchmarks/RESULTS-memory-split.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

CASES = {
    "fit": "matnet.fit(model, X, y, epochs=1, batch_size=256, verbose=0)",
    "fit, validation_fraction=0.1": (
        "matnet.fit(model, X, y, epochs=1, batch_size=256, validation_fraction=0.1, verbose=0)"
    ),
    "MLPClassifier": "MLPClassifier((16,), max_iter=1, batch_size=256, random_state=0).fit(X, y)",
    "MLPClassifier, early_stopping": (
        "MLPClassifier((16,), max_iter=1, batch_size=256, early_stopping=True, random_state=0)"
        ".fit(X, y)"
    ),
    "MLPRegressor, early_stopping": (
        "MLPRegressor(hidden_layer_sizes=(16,), max_iter=1, batch_size=256, early_stopping=True, "
        "random_state=0)"
        ".fit(X, y.astype(np.float32))"
    ),
}

CHILD = textwrap.dedent(
    """
    import json, sys, threading, time, tracemalloc, warnings
    import numpy as np
    import matnet
    from matnet.sklearn import MLPClassifier, MLPRegressor

    def anon_kib():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])

    X = np.load(sys.argv[1], mmap_mode="r")
    y = (np.asarray(X[:, 0]) > 0).astype(np.int64)
    model = matnet.MLP([X.shape[1], 16, 2], loss="cross_entropy", seed=0)
    warnings.simplefilter("ignore")  # max_iter=1 warns that it did not converge
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], anon_kib())
            time.sleep(0.002)

    base = anon_kib()
    sampler = threading.Thread(target=sample)
    tracemalloc.start()
    sampler.start()
    started = time.perf_counter()
    try:
        CASE
    finally:  # a failing case must not leave the sampler running (the process would never exit)
        done.set()
    seconds = time.perf_counter() - started
    sampler.join()
    traced = tracemalloc.get_traced_memory()[1]
    peak[0] = max(peak[0], anon_kib())
    print(json.dumps({"anon": (peak[0] - base) * 1024, "traced": traced, "seconds": seconds}))
    """
)


def make_data(path: Path, gib: float, n_features: int) -> None:
    n = int(gib * 2**30) // (4 * n_features)
    if path.exists() and np.load(path, mmap_mode="r").shape == (n, n_features):
        return
    X = np.lib.format.open_memmap(path, "w+", np.float32, (n, n_features))
    rng = np.random.default_rng(0)
    for start in range(0, n, 65536):
        stop = min(start + 65536, n)
        X[start:stop] = rng.standard_normal((stop - start, n_features), dtype=np.float32)
    X.flush()
    del X


def run_case(path: Path, code: str) -> dict:
    child = CHILD.replace("CASE", code)
    proc = subprocess.run(
        [sys.executable, "-c", child, str(path)], capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="size of X (default: 2 GiB)")
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where X.npy is written")
    parser.add_argument("--out", help="write a Markdown table here")
    args = parser.parse_args()
    path = Path(args.dir) / f"matnet-bench-X-{args.gib:g}gib-{args.features}.npy"
    make_data(path, args.gib, args.features)
    shape = np.load(path, mmap_mode="r").shape
    rows = []
    for name, code in CASES.items():
        result = run_case(path, code)
        line = (
            f"| {name} | {result['anon'] / 2**20:.1f} | {result['traced'] / 2**20:.1f} | "
            f"{result['seconds']:.1f} |"
        )
        print(line, flush=True)
        rows.append(line)
    command = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python " + " ".join(
        ["benchmarks/bench_memory_split.py", *sys.argv[1:]]
    )
    text = "\n".join(
        [
            "# Peak memory of training on a memory-mapped X",
            "",
            f"X: float32 `.npy` of shape {shape} ({os.path.getsize(path) / 2**30:.2f} GiB), "
            "opened with `mmap_mode='r'`; y: int64 labels in memory; one epoch, batch 256, "
            f"network [{shape[1]}, 16, 2]. Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, NumPy {np.__version__}.",
            "",
            "`anon`: peak anonymous resident memory during the call minus before it (sampled "
            "every 2 ms); `traced`: tracemalloc's peak. Bound (issue 15, item 16): < 100 MiB. "
            "The seconds are not a speed figure: they depend on which pages of X the page cache "
            "holds and on the other work of a shared machine.",
            "",
            "| case | anon MiB | traced MiB | seconds |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"Command: `{command}`",
            "",
        ]
    )
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
