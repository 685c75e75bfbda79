"""Training and inference speed of matnet beside a hand-written NumPy loop, PyTorch, scikit-learn and the
limit (the step's matrix products alone), in one process, rounds interleaved.

The workload: 784-256-128-10, ReLU, softmax cross-entropy, 60,000 synthetic samples from
``numpy.random.default_rng(0)`` (labels from a fixed random linear teacher, so every implementation's
loss visibly falls), one epoch per round after a warm-up epoch; batch 128 and 512; SGD and Adam; float32
and float64. Every figure is a median over rounds; every comparison is the median of per-round ratios.

Run ``make bench`` (it installs the ``bench`` extra and PyTorch, then runs this script), or::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_train.py --out benchmarks/RESULTS.md

``--smoke`` runs every code path on tiny data in seconds (the test suite does this); its figures mean
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import SIZES, Limit, LimitForward, Reference, Sklearn, Torch  # noqa: E402

import matnet  # noqa: E402

LR = {"sgd": 0.01, "adam": 1e-3}
PAUSE = 0.2  # seconds between implementations: OpenBLAS threads spin for ~0.1 s after a product

# (name, threshold): matnet's speed over the peer's, or a fraction, that the issue asks for.
TARGETS = {
    ("ratio", "reference", "sgd", 128): 1.10,
    ("ratio", "reference", "sgd", 512): 1.05,
    ("ratio", "torch", "sgd", 128): 1.30,
    ("ratio", "torch", "sgd", 512): 1.15,
    ("ratio", "torch", "adam", 128): 1.30,
    ("ratio", "torch", "adam", 512): 1.15,
    ("ratio", "sklearn", "sgd", 128): 2.0,
    ("ratio", "sklearn", "sgd", 512): 2.0,
    ("ratio", "sklearn", "adam", 128): 2.0,
    ("ratio", "sklearn", "adam", 512): 2.0,
    ("fraction", "limit", "sgd", 128): 0.80,
    ("fraction", "limit", "sgd", 512): 0.85,
}
INFERENCE_TARGET = 0.90
RSS_ALLOWANCE_MIB = 30


def make_data(n: int, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of standard-normal float32 features and class labels from a random linear teacher."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, SIZES[0]), dtype=np.float32)
    teacher = rng.standard_normal((SIZES[0], SIZES[-1]), dtype=np.float32)
    # In blocks: one (60000, 784) @ (784, 10) product makes OpenBLAS touch ~60 MiB of workspace.
    y = np.concatenate([np.argmax(X[i : i + 4096] @ teacher, axis=1) for i in range(0, n, 4096)])
    return X.astype(dtype, copy=False), y


class Matnet:
    """matnet through the public API a user calls: ``model.fit(..., epochs=1)`` once per round."""

    name = "matnet"

    def __init__(self, X, y, batch: int, optimizer: str, lr: float, seed: int = 0) -> None:
        self.model = matnet.MLP(list(SIZES), loss="cross_entropy", dtype=X.dtype, seed=seed)
        self.opt = matnet.SGD(lr) if optimizer == "sgd" else matnet.Adam(lr)
        self.X, self.y, self.batch = X, y, batch
        self.rng = np.random.default_rng(seed)
        self.loss = float("nan")

    def run(self) -> None:
        history = self.model.fit(
            self.X,
            self.y,
            epochs=1,
            batch_size=self.batch,
            optimizer=self.opt,
            verbose=0,
            shuffle=True,
            seed=self.rng,
        )
        self.loss = history["loss"][-1]


# --- environment -------------------------------------------------------------------------------


def blas_info() -> dict:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"note": "threadpoolctl not installed"}
    for info in threadpool_info():
        if info.get("user_api") == "blas" and "numpy" in info.get("filepath", ""):
            return info
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return blas[0] if blas else {"note": "no BLAS found by threadpoolctl"}


def versions() -> dict[str, str]:
    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "matnet": matnet.__version__,
    }
    for mod in ("torch", "sklearn", "threadpoolctl"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = "not installed"
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# --- timing ------------------------------------------------------------------------------------


def ab_arguments(doc: str, rounds: int = 9) -> argparse.Namespace:
    """The command line shared by the A/B scripts beside this one (ab_*.py)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--n", type=int, default=60000)
    return parser.parse_args()


def interleaved(impls: dict, rounds: int) -> dict[str, list[float]]:
    """Warm each implementation up once, then time ``run()`` round by round, in turn."""
    for impl in impls.values():
        impl.run()
    times: dict[str, list[float]] = {key: [] for key in impls}
    for _ in range(rounds):
        for key, impl in impls.items():
            time.sleep(PAUSE)
            start = time.perf_counter()
            impl.run()
            times[key].append(time.perf_counter() - start)
    return times


def median_ratio(slow: list[float], fast: list[float]) -> float:
    """Median over rounds of ``slow / fast`` (how many times faster ``fast`` ran)."""
    return statistics.median(s / f for s, f in zip(slow, fast, strict=True))


def training(n: int, rounds: int, dtype, batch: int, optimizer: str, torch_ok: bool, sk_ok: bool):
    X, y = make_data(n, dtype)
    lr = LR[optimizer]
    impls = {"matnet": Matnet(X, y, batch, optimizer, lr)}
    if optimizer == "sgd":
        impls["reference"] = Reference(X, y, batch, lr)
    if torch_ok and dtype == np.float32:
        impls["torch"] = Torch(X, y, batch, optimizer, lr)
    if sk_ok:
        impls["sklearn"] = Sklearn(X, y, batch, optimizer, lr)
    if optimizer == "sgd":
        impls["limit"] = Limit(n, batch, dtype)
    impls["validation"] = Validation(X, y, impls["matnet"].model)
    times = interleaved(impls, rounds)
    validation = times.pop("validation")
    del impls["validation"]
    result = {
        "dtype": np.dtype(dtype).name,
        "batch": batch,
        "optimizer": optimizer,
        "n": n,
        "rounds": rounds,
        "samples_per_s": {k: n / statistics.median(t) for k, t in times.items()},
        "loss": {k: getattr(impl, "loss", None) for k, impl in impls.items()},
        "ratio": {k: median_ratio(t, times["matnet"]) for k, t in times.items() if k != "matnet"},
        "times": times,
    }
    # fit()'s per-call cost: checking X and y before the first step (a pass over all the data).
    result["validation_ms"] = 1e3 * statistics.median(validation)
    result["validation_share"] = median_ratio(validation, times["matnet"])
    if "limit" in times:
        result["fraction"] = median_ratio(times["limit"], times["matnet"])
        steps_only = [m - v for m, v in zip(times["matnet"], validation, strict=True)]
        result["fraction_steps"] = median_ratio(times["limit"], steps_only)
        # The best ratio over each peer that any implementation of this step could reach.
        result["ceiling"] = {k: median_ratio(t, times["limit"]) for k, t in times.items()}
    return result, impls


class Validation:
    """What ``fit`` checks before its first step (finite, well-shaped X; valid labels)."""

    def __init__(self, X, y, model) -> None:
        self.X, self.y, self.model = X, y, model

    def run(self) -> None:
        from matnet.validation import check_features, check_targets

        X = check_features(self.X, self.model.n_features, self.model.dtype)
        check_targets(self.model.loss, self.y, X.shape[0], self.model.n_outputs, self.model.dtype)


def inference(n_rows: int, rounds: int, fitted: dict, repeats: int = 3) -> dict:
    """Forward pass on one batch of ``n_rows``: each implementation's public call, and the limit."""
    X, _ = make_data(n_rows)
    model = fitted["matnet"].model
    calls = {
        "matnet predict_proba": lambda: model.predict_proba(X),
        "matnet forward": lambda: model.forward(X),
        "reference": lambda: fitted["reference"].forward(X),
    }
    if "torch" in fitted:
        calls["torch"] = lambda: fitted["torch"].forward(X)
    if "sklearn" in fitted:
        calls["sklearn"] = lambda: fitted["sklearn"].forward(X)
    limit = LimitForward(n_rows, X.dtype)
    calls["limit"] = limit.run

    class Repeat:
        def __init__(self, fn):
            self.fn = fn

        def run(self):
            for _ in range(repeats):
                self.fn()

    times = interleaved({k: Repeat(fn) for k, fn in calls.items()}, rounds)
    return {
        "n": n_rows,
        "samples_per_s": {k: n_rows * repeats / statistics.median(t) for k, t in times.items()},
        "of_limit": {k: median_ratio(times["limit"], t) for k, t in times.items() if k != "limit"},
    }


# --- peak memory, each implementation in a fresh process ---------------------------------------


def proc_status_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since exec) of this process, in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_child(impl: str, n: int, batch: int) -> None:
    """Train one epoch of ``impl`` in this (fresh) process and print its memory figures as JSON."""
    if impl == "torch":
        import torch  # noqa: F401
    if impl == "sklearn":
        import sklearn.neural_network  # noqa: F401
    baseline = proc_status_kib("VmRSS")  # interpreter and libraries, before any data
    X, y = make_data(n)
    data = X.nbytes + y.nbytes
    classes = {"matnet": Matnet, "reference": Reference, "torch": Torch, "sklearn": Sklearn}
    if impl == "reference":
        model = Reference(X, y, batch, LR["sgd"])
    else:
        model = classes[impl](X, y, batch, "sgd", LR["sgd"])
    model.run()
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    peak = proc_status_kib("VmHWM")
    print(json.dumps({"baseline_kib": baseline, "peak_kib": peak, "data_bytes": data}))


def peak_rss(impls: list[str], n: int, batch: int) -> dict[str, dict]:
    out = {}
    for impl in impls:
        cmd = [sys.executable, __file__, "--rss-child", impl, "--n", str(n), "--batch", str(batch)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            out[impl] = {"error": proc.stderr.strip().splitlines()[-1:]}
            continue
        fig = json.loads(proc.stdout.strip().splitlines()[-1])
        growth = (fig["peak_kib"] - fig["baseline_kib"]) / 1024
        fig["growth_mib"] = growth
        fig["data_mib"] = fig["data_bytes"] / 2**20
        fig["over_data_mib"] = growth - fig["data_mib"]
        out[impl] = fig
    return out


# --- report ------------------------------------------------------------------------------------

LABELS = {
    "matnet": "matnet",
    "reference": "hand-written NumPy loop",
    "torch": "PyTorch CPU",
    "sklearn": "scikit-learn MLPClassifier",
    "limit": "matrix products alone (limit)",
}


def verdict(value: float, threshold: float) -> str:
    return "**met**" if value >= threshold else "not met"


def report(meta: dict, train: list[dict], infer: dict, rss: dict, smoke: bool) -> str:
    lines = ["# matnet training and inference benchmark", ""]
    if smoke:
        lines += ["**Smoke run on tiny data: these figures mean nothing.**", ""]
    lines += ["## Machine and command", ""]
    for key, value in meta.items():
        lines.append(f"- {key}: {value}")
    lines += ["", "## Training (samples/s, medians; ratio = matnet's speed / the other's)", ""]
    lines.append(
        "| dtype | batch | optimizer | implementation | samples/s | matnet / this | final loss |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for r in train:
        for key, sps in r["samples_per_s"].items():
            ratio = r["ratio"].get(key)
            loss = r["loss"].get(key)
            lines.append(
                f"| {r['dtype']} | {r['batch']} | {r['optimizer']} | {LABELS[key]} | {sps:,.0f} | "
                f"{'' if ratio is None else f'{ratio:.2f}'} | "
                f"{'' if loss is None else f'{loss:.4f}'} |"
            )
    lines += [
        "",
        "Fraction of matnet's time spent in matrix products (the limit's epoch time / matnet's), "
        "per `fit` call and for the steps alone (without `fit`'s check of X and y, timed "
        "separately); and that check's share of a one-epoch `fit` call:",
        "",
    ]
    for r in train:
        frac = ""
        if "fraction" in r:
            frac = f"fraction {r['fraction']:.3f} per fit call, {r['fraction_steps']:.3f} of the steps; "
        lines.append(
            f"- {r['dtype']}, batch {r['batch']}, {r['optimizer']}: {frac}input check "
            f"{r['validation_ms']:.1f} ms = {100 * r['validation_share']:.1f}% of the call"
        )
    lines += ["", f"## Inference (forward on one batch of {infer['n']:,} rows, float32)", ""]
    lines.append("| implementation | samples/s | fraction of the limit |")
    lines.append("|---|---|---|")
    for key, sps in infer["samples_per_s"].items():
        frac = infer["of_limit"].get(key)
        lines.append(f"| {key} | {sps:,.0f} | {'' if frac is None else f'{frac:.3f}'} |")
    lines += [
        "",
        "## Peak RSS of one training epoch (fresh process each, float32, batch 128, SGD)",
        "",
    ]
    lines.append(
        "| implementation | baseline MiB | peak MiB | growth MiB | data MiB | growth - data MiB |"
    )
    lines.append("|---|---|---|---|---|---|")
    for key, fig in rss.items():
        if "error" in fig:
            lines.append(f"| {LABELS[key]} | error: {fig['error']} | | | | |")
            continue
        lines.append(
            f"| {LABELS[key]} | {fig['baseline_kib'] / 1024:.1f} | {fig['peak_kib'] / 1024:.1f} | "
            f"{fig['growth_mib']:.1f} | {fig['data_mib']:.1f} | {fig['over_data_mib']:.1f} |"
        )
    lines += ["", "## Targets (float32 unless stated; medians of per-round ratios)", ""]
    lines.append(
        "Ceiling: the same ratio for the limit (the step's matrix products alone) over that peer, "
        "the most any implementation of this step could reach on this machine."
    )
    lines.append("")
    lines.append("| target | measured | threshold | ceiling | |")
    lines.append("|---|---|---|---|---|")
    for name, value, threshold, status, ceiling in target_rows(train, infer, rss):
        shown = "" if ceiling is None else f"{ceiling:.3f}"
        status = verdict(value, threshold) if status is None else status
        lines.append(f"| {name} | {value:.3f} | {threshold} | {shown} | {status} |")
    lines.append("")
    return "\n".join(lines)


def target_rows(train: list[dict], infer: dict, rss: dict) -> list[tuple]:
    """``(name, measured, threshold, verdict or None, ceiling or None)`` for each target."""
    rows = []
    for (kind, peer, opt, batch), threshold in TARGETS.items():
        for r in train:
            if (r["optimizer"], r["batch"]) != (opt, batch):
                continue
            if kind == "ratio" and peer in r["ratio"]:
                if r["dtype"] != "float32" and peer != "sklearn":
                    continue
                name = f"matnet / {LABELS[peer]} ({r['dtype']}, {opt}, batch {batch})"
                ceiling = r.get("ceiling", {}).get(peer)
                rows.append((name, r["ratio"][peer], threshold, None, ceiling))
            elif kind == "fraction" and "fraction" in r and r["dtype"] == "float32":
                name = f"matrix-product time / matnet time, per fit call ({opt}, batch {batch})"
                rows.append((name, r["fraction"], threshold, None, 1.0))
                name = f"matrix-product time / matnet time, steps alone ({opt}, batch {batch})"
                rows.append((name, r["fraction_steps"], threshold, None, 1.0))
    for key in ("matnet predict_proba", "matnet forward"):
        if key in infer["of_limit"]:
            name = f"{key} / forward products alone (inference)"
            rows.append((name, infer["of_limit"][key], INFERENCE_TARGET, None, 1.0))
    fig = rss.get("matnet", {})
    if "over_data_mib" in fig:
        ok = "**met**" if fig["over_data_mib"] <= RSS_ALLOWANCE_MIB else "not met"
        name = "matnet peak RSS growth minus data size, MiB (at most)"
        rows.append((name, fig["over_data_mib"], RSS_ALLOWANCE_MIB, ok, None))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds; figures mean nothing"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed rounds (default 7; smoke 1)"
    )
    parser.add_argument("--n", type=int, default=None, help="training samples (default 60000)")
    parser.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS (and PyTorch) threads; default NumPy's own (one BLAS thread is steadier)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, default=None, help="write every figure as JSON here")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = args.n or (600 if args.smoke else 60000)
    if args.rss_child:
        rss_child(args.rss_child, n, args.batch)
        return 0
    rounds = args.rounds or (1 if args.smoke else 7)
    if args.smoke:
        global PAUSE
        PAUSE = 0.0
    n_infer = 200 if args.smoke else 10000
    torch_ok, sk_ok = have("torch"), have("sklearn")
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)  # every BLAS and OpenMP pool in this process
    blas = blas_info()
    threads = blas.get("num_threads")
    if torch_ok and threads:
        import torch

        torch.set_num_threads(int(threads))
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    command = " ".join([Path(sys.executable).name, *sys.argv])
    if coretype is None and "OPENBLAS_L2_SIZE" not in os.environ:
        command = f"env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE {command}"
    meta = {
        "command": f"`{command}` (what `make bench` runs)",
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "versions": ", ".join(f"{k} {v}" for k, v in versions().items()),
        "BLAS (threadpoolctl)": ", ".join(
            f"{k}={blas[k]}"
            for k in ("internal_api", "version", "architecture", "num_threads", "threading_layer")
            if k in blas
        )
        or blas.get("note", ""),
        "PyTorch threads": (__import__("torch").get_num_threads() if torch_ok else "not installed"),
        "OPENBLAS_CORETYPE": coretype or "unset",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "samples": f"{n:,} training, {rounds} timed rounds after one warm-up epoch, {PAUSE} s pause between implementations",
    }

    train = []
    fitted = {}
    configs = [
        (np.float32, 128, "sgd"),
        (np.float32, 512, "sgd"),
        (np.float32, 128, "adam"),
        (np.float32, 512, "adam"),
        (np.float64, 128, "sgd"),
        (np.float64, 512, "sgd"),
    ]
    for dtype, batch, opt in configs:
        result, impls = training(n, rounds, dtype, batch, opt, torch_ok, sk_ok)
        train.append(result)
        print_training(result)
        if (dtype, batch, opt) == (np.float32, 128, "sgd"):
            fitted = impls
    infer = inference(n_infer, rounds, fitted)
    print("inference samples/s:", {k: round(v) for k, v in infer["samples_per_s"].items()})
    print("inference fraction of limit:", {k: round(v, 3) for k, v in infer["of_limit"].items()})
    rss_impls = (
        ["matnet", "reference"] + (["torch"] if torch_ok else []) + (["sklearn"] if sk_ok else [])
    )
    rss = peak_rss(rss_impls, n, 128)
    for key, fig in rss.items():
        print(f"peak RSS {key}: {fig}")
    meta["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(meta, train, infer, rss, args.smoke)
    print()
    print(
        "\n".join(
            line for line in text.splitlines() if line.startswith("| ") and "|---" not in line
        )[-4000:]
    )
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"meta": meta, "train": train, "inference": infer, "rss": rss},
                indent=1,
                default=str,
            )
        )
    return 0


def print_training(r: dict) -> None:
    head = f"{r['dtype']} batch {r['batch']} {r['optimizer']}:"
    parts = [f"{k} {v:,.0f}/s" for k, v in r["samples_per_s"].items()]
    ratios = [f"matnet/{k} {v:.2f}" for k, v in r["ratio"].items()]
    frac = f" fraction {r['fraction']:.3f}" if "fraction" in r else ""
    print(head, "; ".join(parts), "|", " ".join(ratios) + frac, flush=True)


if __name__ == "__main__":
    sys.exit(main())
