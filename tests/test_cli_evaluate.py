"""matnet evaluate's report (per class, ROC-AUC, log-loss, MAE/RMSE/R²), --json and --plot, and
matnet train --history; the numbers are held to scikit-learn on the model's own outputs. In-process."""

from __future__ import annotations

import csv
import inspect
import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

import matnet
from matnet.cli import main
from matnet.datasets import load_data

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOL = 1e-12


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _sk_log_loss(y, P, labels):
    # float32 probabilities sum to 1 within float32's rounding, coarser than scikit-learn's check
    # (it warns and uses them as they are, as matnet does)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The y_prob values do not sum to one")
        if "y_proba" in inspect.signature(skm.log_loss).parameters:
            return skm.log_loss(y, y_proba=P, labels=labels)
        return skm.log_loss(y, P, labels=labels)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A 3-class, a binary and a regression model trained through the CLI (small and quick)."""
    folder = tmp_path_factory.mktemp("evaluate_models")
    paths = {}
    for name, data in (("iris", "iris:train"), ("cancer", "breast_cancer:train"),
                       ("diabetes", "diabetes:train")):  # fmt: skip
        paths[name] = folder / f"{name}.safetensors"
        argv = ["train", data, "--hidden", "16", "--epochs", "30", "--lr", "0.01", "--quiet"]
        assert main([*argv, "--out", str(paths[name])]) == 0
    return paths


def _write_csv(path, table, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*table.feature_names, table.target_name])
        for i in rows:
            writer.writerow([*(repr(v) for v in table.X[i].tolist()), table.y[i]])


def _indices(model, labels) -> np.ndarray:
    lookup = {label: i for i, label in enumerate(model.classes)}
    return np.asarray([lookup[v] for v in np.asarray(labels).tolist()])


def _json(out: str) -> dict:
    assert out.count("\n") == 1 and out.endswith("\n")  # one JSON object on one line
    return json.loads(out)


@pytest.mark.parametrize(
    ("name", "data"), [("iris", "iris:test"), ("cancer", "breast_cancer:test")]
)
def test_json_report_matches_scikit_learn_on_the_models_outputs(models, capsys, name, data):
    code, out, err = run(capsys, "evaluate", models[name], data, "--json")
    assert code == 0, err
    report = _json(out)
    model = matnet.load(models[name])
    table = load_data(data)
    y = _indices(model, table.y)
    P = model.predict_proba(table.X).astype(np.float64)
    if P.shape[1] == 1:
        P = np.column_stack([1 - P[:, 0], P[:, 0]])
    pred = _indices(model, model.predict(table.X))
    labels = list(range(P.shape[1]))
    assert report["task"] == "classification" and report["rows"] == len(table)
    assert report["labels"] == model.classes
    sk = skm.classification_report(y, pred, labels=labels, output_dict=True, zero_division=0.0)
    for j, row in enumerate(report["classes"]):
        assert row["support"] == sk[str(j)]["support"]
        for ours, theirs in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert abs(row[ours] - sk[str(j)][theirs]) <= TOL
    for ours, theirs in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        assert abs(report[ours]["f1"] - sk[theirs]["f1-score"]) <= TOL
    assert abs(report["accuracy"] - skm.accuracy_score(y, pred)) <= TOL
    assert abs(report["log_loss"] - _sk_log_loss(y, P, labels)) <= TOL
    # The reliability diagram's numbers, against the definition on the same probabilities.
    top, right = P.max(axis=1), (np.argmax(P, axis=1) == y)
    which = np.clip(np.ceil(top * 10).astype(int) - 1, 0, 9)
    ece = sum(
        (which == b).mean() * abs(right[which == b].mean() - top[which == b].mean())
        for b in range(10)
        if (which == b).any()
    )
    assert abs(report["calibration"]["ece"] - ece) <= TOL
    if len(labels) == 2:
        expected_auc = skm.roc_auc_score(y, P[:, 1])
        assert report["roc_auc"]["average"] == "binary"
    else:
        expected_auc = skm.roc_auc_score(y, P, multi_class="ovr", average="macro")
        assert report["roc_auc"]["average"] == "ovr-macro"
    assert abs(report["roc_auc"]["value"] - expected_auc) <= TOL
    assert report["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=labels).tolist()


def test_text_report_has_the_per_class_table_and_roc_auc(models, capsys):
    code, out, err = run(capsys, "evaluate", models["iris"], "iris:test")
    assert code == 0, err
    lines = out.splitlines()
    first = lines[1].split()
    assert first[0] == "accuracy" and first[2] == "log-loss" and first[4] == "ROC-AUC"
    report = json.loads(run(capsys, "evaluate", models["iris"], "iris:test", "--json")[1])
    assert float(first[5]) == pytest.approx(report["roc_auc"]["value"], abs=5e-5)
    assert "one-vs-rest, macro average over 3 of 3 classes" in out
    assert "eps = 2.22e-16, as scikit-learn does" in out
    head = lines.index("per-class report") + 1
    assert lines[head].split() == ["class", "precision", "recall", "F1", "support"]
    for row, line in zip(report["classes"], lines[head + 1 : head + 4], strict=True):
        cells = line.split()
        assert cells[0] == row["label"] and int(cells[4]) == row["support"]
        assert [float(c) for c in cells[1:4]] == pytest.approx(
            [row["precision"], row["recall"], row["f1"]], abs=5e-5
        )
    assert any(line.startswith("   macro avg") for line in lines)
    assert lines[-5] == "confusion matrix (rows: true class, columns: predicted class)"


def test_a_class_without_rows_and_a_single_class(models, tmp_path, capsys):
    """Rows of two of iris's classes: the third has support 0 and is named; the ROC-AUC is over the
    two present. Rows of one class: ROC-AUC is undefined, said so, and nothing crashes."""
    table = load_data("iris:test")
    y = _indices(matnet.load(models["iris"]), table.y)
    two = tmp_path / "two.csv"
    _write_csv(two, table, np.flatnonzero(y != 2))
    code, out, err = run(capsys, "evaluate", models["iris"], two, "--target", "target", "--json")
    assert code == 0, err
    report = _json(out)
    assert report["classes"][2]["support"] == 0
    assert report["roc_auc"]["classes"] == ["setosa", "versicolor"]
    assert "over the other 2" in report["roc_auc"]["reason"]
    assert any("has no rows" in text for text in report["undefined"])
    P = matnet.load(models["iris"]).predict_proba(table.X[y != 2]).astype(np.float64)
    expected = np.mean([skm.roc_auc_score(y[y != 2] == c, P[:, c]) for c in (0, 1)])
    assert abs(report["roc_auc"]["value"] - expected) <= TOL

    one = tmp_path / "one.csv"
    _write_csv(one, table, np.flatnonzero(y == 1))
    code, out, err = run(capsys, "evaluate", models["iris"], one, "--target", "target")
    assert code == 0, err
    assert "ROC-AUC undefined" in out.splitlines()[1]
    assert "every row is of class" in out and "needs rows of two classes" in out
    code, out, err = run(capsys, "evaluate", models["iris"], one, "--target", "target", "--json")
    assert code == 0, err
    assert _json(out)["roc_auc"]["value"] is None


def test_regression_report_and_json_match_scikit_learn(models, capsys):
    code, out, err = run(capsys, "evaluate", models["diabetes"], "diabetes:test", "--json")
    assert code == 0, err
    report = _json(out)
    table = load_data("diabetes:test")
    y = np.asarray(table.y, dtype=np.float64)
    pred = np.asarray(matnet.load(models["diabetes"]).predict(table.X), np.float64).reshape(-1)
    assert report["task"] == "regression"
    for key, sk in (("mae", skm.mean_absolute_error), ("mse", skm.mean_squared_error),
                    ("rmse", skm.root_mean_squared_error), ("r2", skm.r2_score)):  # fmt: skip
        assert report[key] == pytest.approx(sk(y, pred), rel=TOL, abs=TOL)
    code, out, err = run(capsys, "evaluate", models["diabetes"], "diabetes:test")
    assert code == 0, err
    assert out.splitlines()[1].split()[::2] == ["MAE", "RMSE", "R²", "MSE"]


@pytest.mark.parametrize("name", ["iris", "diabetes"])
def test_plot_for_classifiers_and_regressors(models, tmp_path, capsys, name):
    png = tmp_path / f"{name}.png"
    data = "iris:test" if name == "iris" else "diabetes:test"
    code, out, err = run(capsys, "evaluate", models[name], data, "--plot", png, "--json")
    assert code == 0, err
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    _json(out)  # with --json, stdout stays one JSON object; "wrote" goes to stderr
    assert f"wrote {png}" in err


def test_evaluate_plot_without_matplotlib_is_one_line(models, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(capsys, "evaluate", models["diabetes"], "diabetes:test", "--plot",
                         tmp_path / "r.png")  # fmt: skip
    assert code == 2 and out == "" and "pip install 'matnet[plot]'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r.png").exists()


# --- train --history ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_train_history_writes_every_epoch(tmp_path, monkeypatch, capsys, suffix):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "iris", "--hidden", "8", "--epochs", "7", "--quiet", "--out", "m.st"]
    code, out, err = run(capsys, *argv, "--history", f"run{suffix}")
    assert code == 0, err
    assert f"wrote run{suffix} (7 epochs)" in out
    text = (tmp_path / f"run{suffix}").read_text()
    if suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        epochs = [{k: float(v) for k, v in row.items()} for row in rows]
    else:
        document = json.loads(text)
        epochs = document["epochs"]
        assert document["stopped_early"] is False and document["best_epoch"] is not None
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5, 6, 7]
    assert set(epochs[0]) == {
        "epoch",
        "loss",
        "val_loss",
        "val_accuracy",
        "learning_rate",
        "seconds",
    }
    # a second run with the same seed writes the same losses (only the seconds differ)
    code, _, _ = run(capsys, *argv, "--history", f"again{suffix}")
    again = (tmp_path / f"again{suffix}").read_text()
    if suffix == ".csv":
        again_epochs = [
            {k: float(v) for k, v in r.items()} for r in csv.DictReader(again.splitlines())
        ]
    else:
        again_epochs = json.loads(again)["epochs"]
    assert [e["loss"] for e in epochs] == [e["loss"] for e in again_epochs]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--history", "run.txt"], "must end in .csv or .json"),
        (["--history", "m.st.csv", "--out", "m.st.csv"], "--history and --out name the same file"),
        (["--history", "nowhere/run.csv"], "folder nowhere does not exist"),
    ],
)
def test_train_history_bad_paths_are_refused_before_training(tmp_path, monkeypatch, capsys, extra,
                                                             needle):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, out, err = run(capsys, "train", "iris", "--epochs", "1", "--quiet", *extra)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "model.safetensors").exists() and not (tmp_path / "m.st.csv").exists()
