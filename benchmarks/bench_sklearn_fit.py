"""Fit time: matnet.sklearn.MLPClassifier against scikit-learn's MLPClassifier, same data and
hyperparameters, interleaved rounds in one process, ratios as medians of per-round ratios.

Datasets: scikit-learn's digits (1797x64, float64, standardized) and a synthetic 60000x784 float32
set from ``numpy.random.default_rng(0)`` with 10 classes given by a random linear teacher. Both
estimators get the same parameters, with ``tol=0`` and ``n_iter_no_change=max_iter`` so that each
runs exactly ``max_iter`` epochs (same work; no early stop on either side).

Usage::

    python benchmarks/bench_sklearn_fit.py                 # 1 BLAS thread, 3 rounds
    python benchmarks/bench_sklearn_fit.py --threads 2 --rounds 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import numpy as np


def synthetic(n: int = 60000, d: int = 784, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d), dtype=np.float32)
    teacher = rng.standard_normal((d, k), dtype=np.float32)
    y = np.argmax(X @ teacher, axis=1)
    return X, y


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X), y


CASES = {
    "digits": (digits, {"hidden_layer_sizes": (64,), "max_iter": 50, "batch_size": "auto"}),
    "synthetic-60000x784": (
        synthetic,
        {"hidden_layer_sizes": (256, 128), "max_iter": 2, "batch_size": 128},
    ),
}


def time_fit(cls, X, y, params) -> tuple[float, float]:
    estimator = cls(
        random_state=0, tol=0.0, n_iter_no_change=params["max_iter"], shuffle=True, **params
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        estimator.fit(X, y)
        seconds = time.perf_counter() - started
    assert estimator.n_iter_ == params["max_iter"]
    return seconds, float(estimator.score(X, y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (threadpoolctl)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()

    import sklearn
    from sklearn.neural_network import MLPClassifier as SkMLP
    from threadpoolctl import threadpool_info, threadpool_limits

    import matnet
    from matnet.sklearn import MLPClassifier as MnMLP

    blas = {(i["internal_api"], i.get("version")) for i in threadpool_info()}
    print(
        f"# python {platform.python_version()}, numpy {np.__version__}, scikit-learn "
        f"{sklearn.__version__}, matnet {matnet.__version__}; {platform.machine()} "
        f"{platform.processor() or ''}; BLAS {sorted(blas)}; threads={args.threads}"
    )
    with threadpool_limits(args.threads):
        for name in args.cases:
            make, params = CASES[name]
            X, y = make()
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            print(f"\n## {name}: X {X.shape} {X.dtype}; {shown}")
            times: dict[str, list[float]] = {"matnet": [], "sklearn": []}
            ratios = []
            for r in range(args.rounds):
                # Alternate who goes first, so drift on a shared machine hits both sides.
                order = [("matnet", MnMLP), ("sklearn", SkMLP)]
                if r % 2:
                    order.reverse()
                scores = {}
                for label, cls in order:
                    seconds, scores[label] = time_fit(cls, X, y, params)
                    times[label].append(seconds)
                    time.sleep(0.3)
                ratios.append(times["sklearn"][-1] / times["matnet"][-1])
                print(
                    f"round {r + 1}: matnet {times['matnet'][-1]:.3f}s (train acc "
                    f"{scores['matnet']:.4f}), scikit-learn {times['sklearn'][-1]:.3f}s (train acc "
                    f"{scores['sklearn']:.4f}), speedup x{ratios[-1]:.2f}"
                )
            epochs = params["max_iter"]
            for label in ("matnet", "sklearn"):
                best = min(times[label])
                print(
                    f"{label:8s} median {statistics.median(times[label]):.3f}s, best {best:.3f}s, "
                    f"{epochs * X.shape[0] / best:,.0f} samples/s"
                )
            print(
                f"speedup of matnet over scikit-learn (median of rounds): x{statistics.median(ratios):.2f}"
            )


if __name__ == "__main__":
    main()
