"""One model, whatever the front end: every writer (the Python API, an estimator's save, `matnet
train`) against every reader (`matnet.load`, `matnet.sklearn.load`, `matnet predict`). Each pair gives
the writer's own predictions, or a clear error naming what the file lacks; never a silent guess."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

import matnet
from matnet.cli import main
from matnet.errors import ModelFileError

pd = pytest.importorskip("pandas")
sklearn_front = pytest.importorskip("matnet.sklearn")

COLUMNS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CENTRES = {
    "Adelie": [38.8, 18.3, 190.0, 3700.0],
    "Chinstrap": [48.8, 18.4, 196.0, 3730.0],
    "Gentoo": [47.5, 15.0, 217.0, 5080.0],
}
SPREAD = np.array([2.5, 1.1, 6.5, 450.0])


def penguins(n=150, seed=0):
    rng = np.random.default_rng(seed)
    species = np.asarray(list(CENTRES))[np.arange(n) % 3]
    X = np.asarray([CENTRES[s] for s in species]) + SPREAD * rng.standard_normal((n, 4))
    return pd.DataFrame(np.round(X, 2), columns=COLUMNS), species


def write_csv(path, frame, target=None):
    data = frame.copy()
    if target is not None:
        data["species"] = target
    data.to_csv(path, index=False)


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def cli_predictions(capsys, model_path, csv_path):
    rows = list(csv.reader(io.StringIO(cli(capsys, "predict", model_path, csv_path))))
    return np.asarray([row[0] for row in rows[1:]])


@pytest.fixture(scope="module")
def data():
    return penguins(150, seed=0), penguins(30, seed=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory, data):
    """The same table trained by the three writers; each file with the writer's own predictions."""
    folder = tmp_path_factory.mktemp("fronts")
    (X, y), (X_new, _) = data
    written = {}

    model = matnet.MLP([4, 16, 3], loss="cross_entropy", standardize=True, seed=0)
    model.fit(X, y, epochs=40, learning_rate=0.01, verbose=0)
    matnet.save(model, folder / "python.safetensors")
    written["python"] = (folder / "python.safetensors", model.predict(X_new))

    clf = sklearn_front.MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, random_state=0)
    clf.fit(X, y)
    clf.save(folder / "estimator.safetensors")
    written["estimator"] = (folder / "estimator.safetensors", clf.predict(X_new))

    write_csv(folder / "train.csv", X, y)
    code = main(
        ["train", str(folder / "train.csv"), "--target", "species", "--epochs", "20", "--quiet"]
        + ["--out", str(folder / "cli.safetensors")]
    )
    assert code == 0
    written["cli"] = (folder / "cli.safetensors", None)
    return written


WRITERS = ["python", "estimator", "cli"]


@pytest.mark.parametrize("writer", WRITERS)
def test_matnet_load_gives_the_writers_labels(files, data, capsys, tmp_path, writer):
    path, expected = files[writer]
    (_, _), (X_new, _) = data
    model = matnet.load(path)
    got = model.predict(X_new)
    assert set(got) <= set(CENTRES)  # labels, not class indices
    if expected is None:  # the command line's own answers
        write_csv(tmp_path / "new.csv", X_new)
        expected = cli_predictions(capsys, path, tmp_path / "new.csv")
    np.testing.assert_array_equal(got, expected)
    # Columns are matched by name, whichever order the table has.
    np.testing.assert_array_equal(model.predict(X_new[COLUMNS[::-1]]), got)


@pytest.mark.parametrize("writer", WRITERS)
def test_matnet_predict_gives_the_writers_labels(files, data, capsys, tmp_path, writer):
    path, _ = files[writer]
    (_, _), (X_new, _) = data
    expected = matnet.load(path).predict(X_new)
    write_csv(tmp_path / "new.csv", X_new)
    np.testing.assert_array_equal(cli_predictions(capsys, path, tmp_path / "new.csv"), expected)
    # A CSV with its columns reversed predicts the same: the file's feature names are honoured.
    write_csv(tmp_path / "reversed.csv", X_new[COLUMNS[::-1]])
    np.testing.assert_array_equal(
        cli_predictions(capsys, path, tmp_path / "reversed.csv"), expected
    )


@pytest.mark.parametrize("writer", WRITERS)
def test_sklearn_load_gives_the_writers_labels_or_names_what_is_missing(files, data, writer):
    path, _ = files[writer]
    (_, _), (X_new, _) = data
    if writer != "estimator":
        # A file from matnet.save or `matnet train` has no estimator parameters to rebuild.
        with pytest.raises(
            ModelFileError, match="not a scikit-learn estimator; read it with matnet.load"
        ):
            sklearn_front.load(path)
        return
    estimator = sklearn_front.load(path)
    np.testing.assert_array_equal(estimator.predict(X_new), matnet.load(path).predict(X_new))


def test_the_quick_start_model_evaluates_at_its_own_accuracy(tmp_path, capsys):
    """The README's quick start keeps its scaling in the model, so `matnet evaluate` on raw data
    reports what the model scores in Python."""
    from matnet.datasets import load_dataset

    train, test = load_dataset("digits:train"), load_dataset("digits:test")
    model = matnet.MLP([64, 64, 10], loss="cross_entropy", standardize=True, seed=0)
    model.fit(train.X, train.y.astype(int), epochs=15, verbose=0)
    matnet.save(model, tmp_path / "digits.safetensors")
    accuracy = model.evaluate(test.X, test.y.astype(int))["accuracy"]
    assert accuracy > 0.95
    out = cli(capsys, "evaluate", tmp_path / "digits.safetensors", "digits:test")
    assert f"accuracy {accuracy:.4f}" in out


def test_a_poisson_regressor_from_the_estimator_predicts_after_matnet_load(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1]))
    reg = sklearn_front.MLPRegressor(
        loss="poisson", hidden_layer_sizes=(8,), max_iter=50, random_state=0
    )
    reg.fit(X, y)
    reg.save(tmp_path / "poisson.safetensors")
    model = matnet.load(tmp_path / "poisson.safetensors")
    assert model.loss.name == "poisson"
    np.testing.assert_allclose(model.predict(X), reg.predict(X), rtol=1e-12)


# --- one builder: the same table, seed and settings give the same weights ---------------------


def _mixed_table(n=90, seed=4):
    rng = np.random.default_rng(seed)
    size = rng.uniform(1, 10, n).round(2)
    colour = rng.choice(["red", "green", "blue"], n)
    amount = rng.normal(5, 2, n).round(3)
    frame = pd.DataFrame({"size": size, "colour": colour, "amount": amount})
    frame.loc[[3, 17], "amount"] = np.nan  # gaps
    value = size * 2 + (colour == "red") * 3 + np.nan_to_num(amount)
    return frame, value.round(3), np.where(value > np.median(value), "high", "low")


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_cli_and_estimator_give_identical_weights(tmp_path, capsys, task):
    frame, value, label = _mixed_table()
    y = value if task == "regression" else label
    write_csv(tmp_path / "t.csv", frame.assign(y=y))
    cli(capsys, "train", tmp_path / "t.csv", "--target", "y", "--seed", "3", "--epochs", "4",
        "--quiet", "--out", tmp_path / "m.st")  # fmt: skip
    from_cli = matnet.load(tmp_path / "m.st")
    read_back = pd.read_csv(tmp_path / "t.csv")
    estimator = (
        sklearn_front.TabularRegressor(random_state=3, max_iter=4)
        if task == "regression"
        else sklearn_front.TabularClassifier(random_state=3, max_iter=4)
    )
    estimator.fit(read_back.drop(columns="y"), read_back["y"])
    assert from_cli.config() == estimator.model_.config()
    np.testing.assert_array_equal(from_cli.flat_state, estimator.model_.flat_state)
    np.testing.assert_array_equal(from_cli.flat_params, estimator.model_.flat_params)
