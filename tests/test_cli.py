"""The matnet command, run in-process with main([...]): train, predict, evaluate, info, explain,
gradcheck, and every user error as one line on stderr with exit status 2 and no output file."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from tolerance import assert_close

import matnet
from matnet.cli import main
from matnet.datasets import load_dataset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _write_table(path, name: str, target: str) -> None:
    table = load_dataset(name)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*table.feature_names, target])
        for x, y in zip(table.X, table.y, strict=True):
            writer.writerow([*(repr(v) for v in x.tolist()), y])


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working folder with iris.csv (string labels) and diabetes.csv (a numeric target)."""
    monkeypatch.chdir(tmp_path)
    _write_table(tmp_path / "iris.csv", "iris", "species")
    _write_table(tmp_path / "diabetes.csv", "diabetes", "progression")
    return tmp_path


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory):
    """One model trained through the CLI on a CSV with string labels, shared by the tests below."""
    folder = tmp_path_factory.mktemp("iris_model")
    _write_table(folder / "iris.csv", "iris", "species")
    model = folder / "iris.safetensors"
    code = main(
        ["train", str(folder / "iris.csv"), "--recipe", "mlp", "--target", "species", "--hidden", "16",
         "--epochs", "60", "--lr", "0.01", "--quiet", "--out", str(model)]
    )  # fmt: skip
    assert code == 0
    return model, folder / "iris.csv"


# --- the happy paths -------------------------------------------------------------------------


def test_train_on_csv_with_string_labels(work, capsys):
    code, out, err = run(
        capsys, "train", "iris.csv", "--recipe", "mlp", "--target", "species", "--hidden", "16", "--epochs", "40",
        "--lr", "0.01", "--out", "iris.safetensors", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "iris.csv: 150 rows, 4 features, target 'species' (classification, 3 classes)" in out
    assert "model 4 → 16 → 3 (relu), 131 parameters" in out
    assert "training on 135 rows, validating on 15" in out
    assert "wrote iris.safetensors" in out
    validation = next(line for line in out.splitlines() if line.startswith("validation"))
    assert float(validation.split()[2]) >= 0.8  # "validation  accuracy 0.9333  log-loss ..."
    model = matnet.load(work / "iris.safetensors")
    assert model.classes == ["setosa", "versicolor", "virginica"]
    assert model.loss.task == "classification" and model.metadata["target"] == "species"
    assert model.feature_names == load_dataset("iris").feature_names
    # A CSV file makes a table model: its first layer reads raw rows, and the robust scaling
    # behind it is fitted on the 135 training rows only.
    assert isinstance(model.layers[0], matnet.layers.TableInput)
    assert model.state["1.median"].shape == (1, 4) and float(model.state["1.n_seen"][0]) == 135
    meta = model.metadata
    assert not {"labels", "scaler", "features", "target_scaler", "task"} & set(meta)
    assert meta["training"]["epochs"] == 40 and meta["training"]["learning_rate"] == 0.01
    assert set(meta["metrics"]) == {"train", "validation"}


def test_predict_matches_the_python_api(iris_model, tmp_path, capsys):
    model_path, data = iris_model
    out_csv = tmp_path / "pred.csv"
    code, out, err = run(capsys, "predict", model_path, data, "--out", out_csv)
    assert code == 0, err
    assert out == "" and "wrote 150 predictions" in err
    rows = list(csv.reader(open(out_csv)))
    assert rows[0] == ["species"]
    model = matnet.load(model_path)
    table = load_dataset("iris")
    expected = model.predict(table.X)  # raw rows: the model scales them and names the classes
    assert [r[0] for r in rows[1:]] == expected.tolist()
    assert np.mean(expected == table.y) > 0.85


def test_predict_probabilities_to_stdout(iris_model, capsys):
    model_path, data = iris_model
    code, out, err = run(capsys, "predict", model_path, data, "--proba")
    assert code == 0, err
    rows = list(csv.reader(out.splitlines()))
    assert rows[0] == ["species", "proba_setosa", "proba_versicolor", "proba_virginica"]
    P = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert P.shape == (150, 3)
    assert_close(P.sum(axis=1), 1.0, rtol=1e-5)
    labels = np.array(["setosa", "versicolor", "virginica"])
    assert [r[0] for r in rows[1:]] == labels[P.argmax(axis=1)].tolist()


def test_predict_ignores_the_target_and_extra_columns_and_reorders(iris_model, tmp_path, capsys):
    model_path, _ = iris_model
    table = load_dataset("iris")
    path = tmp_path / "shuffled.csv"
    names = list(reversed(table.feature_names))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["comment", *names])
        for x in table.X[:5]:
            w.writerow(["free text, ignored", *(repr(v) for v in x[::-1].tolist())])
    code, out, err = run(capsys, "predict", model_path, path)
    assert code == 0, err
    assert out.splitlines()[1] == "setosa"


def test_evaluate_prints_accuracy_log_loss_and_confusion_matrix(iris_model, capsys):
    model_path, data = iris_model
    code, out, err = run(capsys, "evaluate", model_path, data)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith("150 rows")
    metrics = lines[1].split()
    assert metrics[0] == "accuracy" and float(metrics[1]) > 0.85
    assert metrics[2] == "log-loss" and 0 < float(metrics[3]) < 1
    assert "confusion matrix (rows: true class, columns: predicted class)" in out
    counts = [[int(c) for c in line.split()[1:]] for line in lines[-3:]]
    assert [line.split()[0] for line in lines[-3:]] == ["setosa", "versicolor", "virginica"]
    assert np.sum(counts) == 150 and [sum(r) for r in counts] == [50, 50, 50]
    accuracy = np.trace(np.array(counts)) / 150
    assert float(metrics[1]) == pytest.approx(accuracy, abs=1e-4)


def test_info_shows_architecture_and_training(iris_model, capsys):
    model_path, _ = iris_model
    code, out, err = run(capsys, "info", model_path)
    assert code == 0, err
    assert "matnet model file, format 2" in out
    assert "classification of 'species' into 3 classes: setosa, versicolor, virginica" in out
    assert "Dense(4 -> 16)" in out and "(4, 16)" in out and "131 parameters" in out
    assert '"optimizer": "adam"' not in out and 'optimizer="adam"' in out
    assert "validation metrics at save: accuracy" in out


def test_regression_is_chosen_for_a_many_valued_numeric_target(work, capsys):
    code, out, err = run(
        capsys, "train", "diabetes.csv", "--target", "progression", "--hidden", "16",
        "--epochs", "30", "--out", "d.safetensors", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "(regression, values)" in out and "loss mse" in out
    model = matnet.load(work / "d.safetensors")
    assert model.loss.task == "regression" and model.target_scaling is not None
    code, out, err = run(capsys, "evaluate", "d.safetensors", "diabetes.csv")
    assert code == 0, err
    parts = out.splitlines()[1].split()
    assert parts[0::2] == ["MAE", "RMSE", "R²", "MSE"]
    mae, rmse, r2, mse = map(float, parts[1::2])
    assert 0 < mae <= rmse and rmse**2 == pytest.approx(mse, rel=1e-3)
    assert 0.3 < r2 < 1  # in the target's own units
    code, out, err = run(capsys, "predict", "d.safetensors", "diabetes.csv")
    values = np.array([float(v) for v in out.splitlines()[1:]])
    assert out.splitlines()[0] == "progression" and values.shape == (442,)
    assert 25 < values.mean() < 350  # original units, not standardized


def test_small_integer_target_is_classification_and_task_overrides(work, capsys):
    (work / "ints.csv").write_text("x,y\n" + "".join(f"{i / 10},{i % 3}\n" for i in range(30)))
    code, out, _ = run(capsys, "train", "ints.csv", "--target", "y", "--epochs", "1", "--quiet")
    assert code == 0 and "(classification, 3 classes)" in out
    assert matnet.load(work / "model.safetensors").classes == ["0", "1", "2"]
    code, out, _ = run(
        capsys, "train", "ints.csv", "--target", "y", "--task", "regression", "--epochs", "1",
        "--quiet",
    )  # fmt: skip
    assert code == 0 and "(regression, values)" in out


def test_binary_cross_entropy_on_breast_cancer(work, capsys):
    code, out, err = run(
        capsys, "train", "breast_cancer:train", "--loss", "binary_cross_entropy", "--hidden", "8",
        "--epochs", "10", "--out", "bc.safetensors", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "4 → 8 → 1" not in out and "30 → 8 → 1" in out
    code, out, err = run(capsys, "evaluate", "bc.safetensors", "breast_cancer:test")
    assert code == 0, err
    assert float(out.splitlines()[1].split()[1]) > 0.85
    code, out, _ = run(capsys, "predict", "bc.safetensors", "breast_cancer:test", "--proba")
    assert out.splitlines()[0] == "target,proba_benign,proba_malignant"


def test_bundled_dataset_needs_no_target(work, capsys):
    code, out, err = run(capsys, "train", "wine", "--epochs", "2", "--quiet", "--out", "w.st")
    assert code == 0, err
    assert "wine: 178 rows, 13 features, target 'target' (classification, 3 classes)" in out
    code, out, err = run(capsys, "evaluate", "w.st", "wine:test")
    assert code == 0, err


def test_early_stopping_restores_the_best_epoch(work, capsys):
    code, out, err = run(
        capsys, "train", "iris", "--epochs", "300", "--lr", "0.05", "--early-stopping",
        "--patience", "3", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "stopped early after" in out
    training = matnet.load(work / "model.safetensors").metadata["training"]
    assert training["stopped_early"] and training["epochs_run"] < 300
    assert training["best_epoch"] == training["epochs_run"] - 4


def test_same_seed_gives_the_same_model_file_data(work, capsys):
    for out in ("a.st", "b.st"):
        assert run(capsys, "train", "iris", "--epochs", "3", "--seed", "7", "--quiet",
                   "--out", out)[0] == 0  # fmt: skip
    a, b = matnet.load(work / "a.st"), matnet.load(work / "b.st")
    assert a.flat_params.tobytes() == b.flat_params.tobytes()


def test_float64_training(work, capsys):
    code, _, err = run(capsys, "train", "iris", "--epochs", "2", "--dtype", "float64", "--quiet")
    assert code == 0, err
    assert matnet.load(work / "model.safetensors").dtype == np.float64


def test_progress_bar_with_tqdm(work, capsys):
    pytest.importorskip("tqdm")
    code, _, err = run(capsys, "train", "iris", "--epochs", "3")
    assert code == 0
    assert "3/3" in err and "val_loss" in err


def test_progress_lines_without_tqdm(work, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    code, _, err = run(capsys, "train", "iris", "--epochs", "3")
    assert code == 0
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3 and "val_accuracy=" in lines[-1]


def test_plot_writes_a_readable_png(work, capsys):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    code, out, err = run(capsys, "train", "iris", "--epochs", "5", "--quiet", "--plot", "c.png")
    assert code == 0, err
    assert "wrote c.png" in out
    assert (work / "c.png").read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(work / "c.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    code, out, err = run(capsys, "evaluate", "model.safetensors", "iris", "--plot", "cm.png")
    assert code == 0, err
    assert matplotlib.image.imread(work / "cm.png").shape[0] > 100


def test_explain_for_sizes(capsys):
    code, out, err = run(capsys, "explain", "--sizes", "64,32,10", "--batch", "8")
    assert code == 0, err
    assert "Z1 = A0 · W1 + b1" in out and "(8×64)·(64×32) + (1×32) → (8×32)" in out
    assert "dW1 = A0ᵀ · dZ1" in out and "(64×8)·(8×32) → (64×32)" in out
    assert "Parameters: 2,410" in out


def test_explain_a_model_file_on_real_rows(iris_model, capsys):
    model_path, data = iris_model
    code, out, err = run(capsys, "explain", model_path, "--data", data, "--batch", "3", "--values")
    assert code == 0, err
    assert "batch of n = 3 rows" in out and "(3×4)·(4×16) + (1×16) → (3×16)" in out
    assert "on the given batch and targets" in out
    Y = out.split("Y = ")[1].split("Forward")[0]
    assert Y.count("1.") == 3  # one-hot rows of the first three irises (all setosa)


def test_gradcheck_command(iris_model, capsys):
    code, out, err = run(capsys, "gradcheck")
    assert code == 0, err
    assert "largest relative error" in out and "OK" in out
    error = float(out.split("largest relative error ")[1].split(":")[0])
    assert error < 1e-6
    model_path, _ = iris_model
    code, out, err = run(capsys, "gradcheck", model_path, "--batch", "4")
    assert code == 0, err
    code, out, err = run(
        capsys, "gradcheck", "--sizes", "3,4,2", "--loss", "mse", "--tolerance", "1e-30"
    )
    assert code == 1 and "FAILED" in out  # an impossible tolerance is reported, not hidden


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert matnet.__version__ in capsys.readouterr().out
    assert main(["datasets"]) == 0
    assert "breast_cancer" in capsys.readouterr().out


# --- user errors: one line on stderr, exit status 2, nothing written ---------------------------


def _assert_user_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


# Malformed files: refused by every command. Text, NaN and empty feature cells are not malformed:
# `matnet train` preprocesses such a table (tests/test_tabular.py); a numeric model refuses them
# (test_numeric_model_refuses_cells_it_cannot_read).
BAD_CSV = {
    "ragged.csv": ("a,b,y\n1,2,x\n3,4\n", ["line 3", "2 fields", "3 columns"]),
    "empty.csv": ("", ["empty.csv", "empty"]),
    "headeronly.csv": ("a,b,y\n", ["no data rows"]),
    "notarget.csv": ("a,b,y\n1,2,x\n3,4,\n", ["line 3", "column 'y'", "target cell is empty"]),
}

NOT_NUMBERS = {
    "nonnumeric.csv": ("oops", ["line 3", "column 'sepal width (cm)'", "'oops' is not a number"]),
    "inf.csv": ("inf", ["line 3", "column 'sepal width (cm)'", "finite numbers"]),
}


@pytest.mark.parametrize("name", sorted(NOT_NUMBERS))
def test_table_model_refuses_cells_it_cannot_read_naming_the_line(work, capsys, iris_model, name):
    cell, needles = NOT_NUMBERS[name]
    lines = (work / "iris.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = lines[2].split(",")
    row[header.index("sepal width (cm)")] = cell
    (work / name).write_text("\n".join([lines[0], lines[1], ",".join(row)]) + "\n")
    code, out, err = run(capsys, "predict", iris_model[0], name)
    _assert_user_error(code, out, err, name, *needles)
    assert "--categorical" not in err  # advice for training, not for predicting


@pytest.mark.parametrize("cell", ["", "NaN", "NA"])
def test_a_model_trained_without_gaps_answers_a_row_with_one(work, capsys, iris_model, cell):
    lines = (work / "iris.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = lines[2].split(",")
    row[header.index("sepal width (cm)")] = cell
    (work / "gap.csv").write_text("\n".join([lines[0], lines[1], ",".join(row)]) + "\n")
    code, out, err = run(capsys, "predict", iris_model[0], "gap.csv")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 3  # the header and two answers


@pytest.mark.parametrize("name", sorted(BAD_CSV))
def test_train_on_a_bad_csv(work, capsys, name):
    text, needles = BAD_CSV[name]
    (work / name).write_text(text)
    code, out, err = run(capsys, "train", name, "--target", "y", "--out", "m.st")
    _assert_user_error(code, out, err, name, *needles)
    assert not (work / "m.st").exists()


def test_missing_data_file(work, capsys):
    code, out, err = run(capsys, "train", "nope.csv", "--target", "y", "--out", "m.st")
    _assert_user_error(code, out, err, "nope.csv: no such file")
    assert not (work / "m.st").exists()


def test_missing_target_column(work, capsys):
    code, out, err = run(capsys, "train", "iris.csv", "--target", "Species", "--out", "m.st")
    _assert_user_error(code, out, err, "no column named 'Species'", "species")
    assert not (work / "m.st").exists()


def test_missing_target_option(work, capsys):
    code, out, err = run(capsys, "train", "iris.csv")
    _assert_user_error(code, out, err, "--target")


@pytest.mark.parametrize(
    ("out_path", "needle"),
    [
        ("no_such_folder/m.st", "does not exist"),
        (".", "is a directory"),
        ("iris.csv/m.st", "is not a folder"),
    ],
)
def test_unwritable_output_is_refused_before_training(work, capsys, out_path, needle):
    code, out, err = run(capsys, "train", "iris", "--epochs", "500", "--out", out_path)
    _assert_user_error(code, out, err, needle)
    assert out == ""  # refused before training began: nothing was printed
    code, out, err = run(capsys, "train", "iris", "--epochs", "500", "--plot", out_path)
    _assert_user_error(code, out, err, needle)
    assert not (work / "model.safetensors").exists()


def test_unwritable_predictions_output(iris_model, capsys, tmp_path):
    model_path, data = iris_model
    code, out, err = run(capsys, "predict", model_path, data, "--out", tmp_path / "x" / "p.csv")
    _assert_user_error(code, out, err, "does not exist")


def test_failed_training_leaves_the_old_model_file_intact(work, capsys):
    assert run(capsys, "train", "iris", "--epochs", "1", "--quiet", "--out", "m.st")[0] == 0
    before = (work / "m.st").read_bytes()
    (work / "bad.csv").write_text("a,y\n1,x\n2,y\n3\n")  # a ragged row
    code, out, err = run(capsys, "train", "bad.csv", "--target", "y", "--out", "m.st")
    _assert_user_error(code, out, err, "line 4")
    assert (work / "m.st").read_bytes() == before
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("kind", ["plain safetensors", "random bytes", "text", "missing"])
@pytest.mark.parametrize("command", ["predict", "evaluate", "info", "explain"])
def test_a_model_file_of_another_kind(work, capsys, kind, command):
    path = work / "other.safetensors"
    if kind == "plain safetensors":
        safetensors_numpy = pytest.importorskip("safetensors.numpy")
        safetensors_numpy.save_file({"weight": np.ones((3, 3), np.float32)}, str(path))
        needle = "not a matnet model file"
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes())
        needle = "other.safetensors"
    elif kind == "text":
        path.write_text("species,petal\nsetosa,1\n")
        needle = "other.safetensors"
    else:
        path = work / "gone.safetensors"
        needle = "no such file"
    extra = {"predict": ["iris.csv", "--out", "p.csv"], "evaluate": ["iris.csv"]}.get(command, [])
    code, out, err = run(capsys, command, path, *extra)
    _assert_user_error(code, out, err, needle)
    assert out == ""
    assert not (work / "p.csv").exists()


def test_evaluate_with_unknown_labels(iris_model, tmp_path, capsys):
    model_path, _ = iris_model
    path = tmp_path / "new.csv"
    path.write_text(
        "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm),species\n"
        "5.1,3.5,1.4,0.2,setosa\n6.0,3.0,4.0,1.0,daisy\n"
    )
    code, out, err = run(capsys, "evaluate", model_path, path)
    _assert_user_error(code, out, err, "line 3", "'daisy' is not one of the model's classes")


def test_data_without_the_model_features(iris_model, work, capsys):
    model_path, _ = iris_model
    code, out, err = run(capsys, "predict", model_path, "diabetes.csv")
    _assert_user_error(code, out, err, "sepal length (cm)", "trained on")


def test_missing_matplotlib_is_one_line_naming_the_extra(work, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(capsys, "train", "iris", "--plot", "c.png", "--out", "m.st")
    _assert_user_error(code, out, err, "pip install 'matnet[plot]'")
    assert not (work / "m.st").exists() and not (work / "c.png").exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "iris", "--epochs", "0"], "--epochs"),
        (["train", "iris", "--lr", "-1"], "--lr"),
        (["train", "iris", "--hidden", "3,x"], "--hidden"),
        (["train", "iris", "--validation-fraction", "1.5"], "--validation-fraction"),
        (["train", "iris", "--seed", "-3"], "--seed"),
        (["train", "iris", "--activation", "swish"], "--activation"),
        (["train", "iris", "--loss", "mse"], "--loss mse does not fit iris, a classification"),
        (["train", "iris.csv", "--target", "species", "--task", "regression"], "'setosa' is not"),
        (["train", "diabetes", "--loss", "binary_cross_entropy"], "a regression task"),
        (["train", "iris", "--loss", "binary_cross_entropy"], "needs two classes"),
        (["train", "iris", "--target", "species"], "needs no --target"),
        (["train", "iris:valid"], "unknown split"),
        (["frobnicate"], "invalid choice"),
        (["train"], "DATA"),
        (["explain", "--sizes", "7"], "--sizes"),
        (["explain", "--data", "iris"], "--data needs a MODEL"),
    ],
)
def test_bad_options(work, capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    _assert_user_error(code, out, err, needle)
    assert not (work / "model.safetensors").exists()


def test_proba_for_a_regressor(work, capsys):
    assert run(capsys, "train", "diabetes", "--epochs", "1", "--quiet", "--out", "d.st")[0] == 0
    code, out, err = run(capsys, "predict", "d.st", "diabetes", "--proba")
    _assert_user_error(code, out, err, "--proba")


def test_metadata_is_json_in_the_file(iris_model):
    from matnet.io import load_tensors

    tensors, metadata = load_tensors(iris_model[0])
    assert json.loads(metadata["classes"]) == ["setosa", "versicolor", "virginica"]
    assert json.loads(metadata["feature_names"])[0] == "sepal length (cm)"
    assert json.loads(metadata["user"])["target"] == "species"
    assert metadata["format"] == "matnet" and "1.median" in tensors and "1.inv_scale" in tensors


def test_a_model_saved_from_python_works_with_the_cli(work, capsys):
    # No scaler, label names or feature names in the file: columns are taken in order, labels 0..k-1.
    table = load_dataset("iris")
    y = np.unique(table.y, return_inverse=True)[1]
    model = matnet.MLP([4, 16, 3], loss="cross_entropy", seed=0)
    model.fit(table.X, y, epochs=150, learning_rate=0.01, verbose=0)
    matnet.save(model, work / "py.safetensors")
    with open(work / "numbers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d", "label"])
        w.writerows([*x.tolist(), label] for x, label in zip(table.X, y, strict=True))
    code, out, err = run(capsys, "evaluate", "py.safetensors", "numbers.csv", "--target", "label")
    assert code == 0, err
    accuracy = float(out.splitlines()[1].split()[1])
    assert accuracy == pytest.approx(np.mean(model.predict(table.X) == y), abs=1e-4)
    code, out, err = run(capsys, "predict", "py.safetensors", "numbers.csv")
    _assert_user_error(code, out, err, "5 feature columns", "expects 4", "no feature names")
    code, out, err = run(capsys, "evaluate", "py.safetensors", "numbers.csv")
    _assert_user_error(code, out, err, "--target")


def _format_1_file(path, user: dict) -> None:
    """A model file as matnet 0.1's `matnet train` wrote it: its scaler, labels, columns and target
    scaling in the user metadata, applied by the command line alone."""
    from matnet.io import encode_tensors

    model = matnet.MLP([4, 5, 3], loss="cross_entropy")
    metadata = {
        "format": "matnet",
        "format_version": "1",
        "matnet_version": "0.1.0",
        "model": json.dumps(model.config()),
        "user": json.dumps(user),
    }
    path.write_bytes(encode_tensors(model.get_weights(), metadata))


@pytest.mark.parametrize(
    ("metadata", "needle"),
    [
        ({"scaler": {"mean": [0.0] * 4}}, "cannot be built"),
        ({"scaler": {"mean": [0.0] * 3, "scale": [1.0] * 3}}, "cannot be built"),
        ({"scaler": {"mean": [0.0] * 4, "scale": [0.0] * 4}}, "non-zero"),
        ({"labels": ["a", "b"]}, "'classes' must list 3 distinct labels"),
        ({"features": "abcd"}, "'feature_names' must list 4 distinct names"),
        ({"target_scaler": {"mean": "x", "scale": 1}}, "'target_scaling'"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "info"])
def test_format_1_file_with_inconsistent_cli_metadata(work, capsys, metadata, needle, command):
    # The old command line's keys are read (and checked) when the file is loaded, by every reader.
    _format_1_file(work / "odd.safetensors", metadata)
    with pytest.raises(matnet.errors.ModelFileError, match=needle):
        matnet.load(work / "odd.safetensors")
    extra = ["iris"] if command == "predict" else []
    code, out, err = run(capsys, command, "odd.safetensors", *extra)
    _assert_user_error(code, out, err, "odd.safetensors", needle)


def test_ctrl_c_outside_fit_is_one_line_and_writes_nothing(work, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("matnet.cli.commands.prepare_tabular", interrupted)
    code, out, err = run(capsys, "train", "iris", "--out", "m.st")
    assert code == 130
    assert err.strip() == "matnet train: interrupted; nothing written"
    assert not (work / "m.st").exists()


def test_the_written_model_predicts_bit_identically_to_the_trained_one(work, capsys, monkeypatch):
    import matnet.cli.commands

    trained = []
    real_model_bytes = matnet.cli.commands.model_bytes

    def capture(model, **kwargs):
        trained.append(model)
        return real_model_bytes(model, **kwargs)

    monkeypatch.setattr(matnet.cli.commands, "model_bytes", capture)
    code, _, err = run(capsys, "train", "wine", "--epochs", "3", "--quiet", "--out", "w.st")
    assert code == 0, err
    loaded = matnet.load(work / "w.st")
    X = np.random.default_rng(0).standard_normal((50, 13))
    assert loaded.predict_proba(X).tobytes() == trained[0].predict_proba(X).tobytes()
    assert loaded.metadata == trained[0].metadata


def test_train_checkpoint_and_resume_match_an_uninterrupted_run(work, capsys):
    # The plain MLP: the tabular recipe's cos-log schedule depends on --epochs, so a 3-epoch run
    # resumed to 6 follows another rate curve than an uninterrupted 6-epoch run.
    common = ["--recipe", "mlp", "--hidden", "8", "--batch-size", "16", "--quiet", "--seed", "3"]
    assert run(capsys, "train", "iris", "--epochs", "6", "--out", "a.st", *common)[0] == 0
    code, out, err = run(
        capsys,
        "train",
        "iris",
        "--epochs",
        "3",
        "--out",
        "b.st",
        "--checkpoint",
        "b.ckpt",
        "--checkpoint-every",
        "5",
        *common,
    )
    assert code == 0 and (work / "b.ckpt").exists()
    code, out, err = run(
        capsys,
        "train",
        "iris",
        "--epochs",
        "6",
        "--out",
        "b.st",
        "--checkpoint",
        "b.ckpt",
        "--resume",
        *common,
    )
    assert code == 0, err
    assert "resumed from b.ckpt at epoch 4" in out
    a, b = matnet.load(work / "a.st"), matnet.load(work / "b.st")
    np.testing.assert_array_equal(a.flat_params, b.flat_params)


def test_checkpoint_options_are_checked_before_training(work, capsys):
    code, out, err = run(capsys, "train", "iris", "--resume")
    _assert_user_error(code, out, err, "--resume")
    code, out, err = run(capsys, "train", "iris", "--checkpoint", "missing/dir/run.ckpt")
    assert code == 2 and "missing" in err and not (work / "model.safetensors").exists()
