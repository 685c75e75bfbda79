"""One model concept between the command line and Python: a model file written by `matnet train`
holds its scaler, class labels, column names and target scaling, so `matnet.load(path).predict(raw)`
and `matnet predict` give the same answers; files written by matnet 0.1's command line (format 1)
read the same way; the task comes from the loss's registry entry (Poisson and registered losses);
and a model without an input scaling layer is reported, not silently scored."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from tolerance import assert_close

import matnet
from matnet.cli import build_parser, main
from matnet.datasets import load_dataset
from matnet.io import encode_tensors
from matnet.losses import MeanSquaredError

SPECIES = ("Adelie", "Chinstrap", "Gentoo")
COLUMNS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
# Per species: the mean of each column (a made-up penguin table with overlapping clusters, on
# scales from tens to thousands, so the input scaling matters).
CENTRES = {
    "Adelie": [38.8, 18.3, 190.0, 3700.0],
    "Chinstrap": [48.8, 18.4, 196.0, 3730.0],
    "Gentoo": [47.5, 15.0, 217.0, 5080.0],
}
SPREAD = np.array([2.5, 1.1, 6.5, 450.0])


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def penguins(n: int = 180, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    species = np.asarray(SPECIES)[np.arange(n) % 3]
    X = np.asarray([CENTRES[s] for s in species]) + SPREAD * rng.standard_normal((n, 4))
    return np.round(X, 2), species


def write_csv(path, header, rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def penguin_model(tmp_path_factory):
    """A classifier trained by `matnet train` on a CSV whose classes are species names."""
    folder = tmp_path_factory.mktemp("penguins")
    X, species = penguins()
    write_csv(
        folder / "penguins.csv",
        [*COLUMNS, "species"],
        [[*x, s] for x, s in zip(X.tolist(), species, strict=True)],
    )
    code = main(
        ["train", str(folder / "penguins.csv"), "--target", "species", "--hidden", "16",
         "--epochs", "40", "--lr", "0.01", "--quiet", "--out", str(folder / "p.safetensors")]
    )  # fmt: skip
    assert code == 0
    return folder, X, species


def predicted_column(out: str) -> list[str]:
    return [row[0] for row in csv.reader(out.splitlines()[1:])]


# --- the CLI's model file, read by Python and by the CLI ------------------------------------------


def test_load_predict_on_raw_rows_gives_the_cli_labels(penguin_model, capsys):
    folder, X, species = penguin_model
    model = matnet.load(folder / "p.safetensors")
    assert model.classes == list(SPECIES) and model.feature_names == COLUMNS
    python = model.predict(X)  # raw rows: body mass in grams, not standardized
    assert python.dtype.kind == "U" and set(python.tolist()) <= set(SPECIES)
    assert np.mean(python == species) > 0.9
    code, out, err = run(capsys, "predict", folder / "p.safetensors", folder / "penguins.csv")
    assert code == 0, err
    assert out.splitlines()[0] == "species"
    assert predicted_column(out) == python.tolist()
    assert err == ""  # the model scales its own inputs: no note
    # The probabilities too: the CLI's columns are predict_proba's, in the order of the classes.
    code, out, err = run(
        capsys, "predict", folder / "p.safetensors", folder / "penguins.csv", "--proba"
    )
    rows = list(csv.reader(out.splitlines()))
    assert rows[0] == ["species", *(f"proba_{s}" for s in SPECIES)]
    P = np.array([[float(v) for v in row[1:]] for row in rows[1:]])
    assert_close(P, model.predict_proba(X), rtol=1e-5)


def test_columns_are_matched_by_name(penguin_model, tmp_path, capsys):
    folder, X, _ = penguin_model
    reference = matnet.load(folder / "p.safetensors").predict(X).tolist()
    write_csv(tmp_path / "reversed.csv", COLUMNS[::-1], X[:, ::-1].tolist())
    code, out, err = run(capsys, "predict", folder / "p.safetensors", tmp_path / "reversed.csv")
    assert code == 0, err
    assert predicted_column(out) == reference
    # Python matches a DataFrame by name the same way.
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X[:, ::-1], columns=COLUMNS[::-1])
    assert matnet.load(folder / "p.safetensors").predict(frame).tolist() == reference


def test_a_missing_column_is_one_line_naming_it(penguin_model, tmp_path, capsys):
    folder, X, _ = penguin_model
    write_csv(tmp_path / "short.csv", COLUMNS[:3], X[:, :3].tolist())
    code, out, err = run(capsys, "predict", folder / "p.safetensors", tmp_path / "short.csv")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "no column 'body_mass_g', a feature the model was trained on" in err


def test_evaluate_scores_the_answers_that_predict_gives(penguin_model, capsys):
    folder, X, species = penguin_model
    code, out, err = run(capsys, "evaluate", folder / "p.safetensors", folder / "penguins.csv")
    assert code == 0, err
    accuracy = float(out.splitlines()[1].split()[1])
    python = matnet.load(folder / "p.safetensors").predict(X)
    assert accuracy == pytest.approx(np.mean(python == species), abs=1e-4)


# --- model files of matnet 0.1's command line (format 1) ----------------------------------------


def format_1_file(path, network, user: dict) -> None:
    """The bytes matnet 0.1's `matnet train` wrote: the bare network's tensors, and its scaler,
    labels, columns and target scaling as user metadata that only the command line applied."""
    metadata = {
        "format": "matnet",
        "format_version": "1",
        "matnet_version": "0.1.0",
        "model": json.dumps(network.config()),
        "user": json.dumps(user),
    }
    path.write_bytes(encode_tensors(network.get_weights(), metadata))


def test_a_format_1_classifier_predicts_as_the_old_command_line_did(tmp_path, capsys):
    X, species = penguins(60, seed=1)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    network = matnet.MLP([4, 8, 3], loss="cross_entropy", seed=3)
    user = {
        "task": "classification",
        "target": "species",
        "features": COLUMNS,
        "labels": list(SPECIES),
        "scaler": {"mean": mean.tolist(), "scale": scale.tolist()},
    }
    format_1_file(tmp_path / "old.safetensors", network, user)
    # What the 0.1 command line computed: standardize with the stored scaler, argmax, label.
    expected = np.asarray(SPECIES)[network.predict((X - mean) / scale)]
    loaded = matnet.load(tmp_path / "old.safetensors")
    np.testing.assert_array_equal(loaded.predict(X), expected)
    write_csv(tmp_path / "p.csv", COLUMNS, X.tolist())
    code, out, err = run(capsys, "predict", tmp_path / "old.safetensors", tmp_path / "p.csv")
    assert code == 0, err
    assert out.splitlines()[0] == "species" and predicted_column(out) == expected.tolist()
    code, out, err = run(capsys, "info", tmp_path / "old.safetensors")
    assert code == 0, err
    assert "format 1" in out and "into 3 classes: Adelie, Chinstrap, Gentoo" in out
    assert "standardized with the stored training mean and scale" in out


def test_a_format_1_regressor_predicts_in_the_targets_units(tmp_path, capsys):
    X, _ = penguins(40, seed=2)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    network = matnet.MLP([4, 8, 1], loss="mse", seed=4, dtype="float64")
    user = {
        "task": "regression",
        "target": "body_mass_g",
        "features": COLUMNS,
        "scaler": {"mean": mean.tolist(), "scale": scale.tolist()},
        "target_scaler": {"mean": 4200.0, "scale": 800.0},
    }
    format_1_file(tmp_path / "old.safetensors", network, user)
    expected = network.predict((X - mean) / scale) * 800.0 + 4200.0
    np.testing.assert_allclose(matnet.load(tmp_path / "old.safetensors").predict(X), expected)
    write_csv(tmp_path / "p.csv", COLUMNS, X.tolist())
    code, out, err = run(capsys, "predict", tmp_path / "old.safetensors", tmp_path / "p.csv")
    assert code == 0, err
    values = np.array([float(v) for v in predicted_column(out)])
    np.testing.assert_allclose(values, expected, rtol=1e-7)


# --- the task comes from the loss ----------------------------------------------------------------


def counts_csv(path, n: int = 300, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    """Counts y ~ Poisson(exp(0.8 a - 0.5 b + 1)): whole numbers with few distinct values, which the
    command line would take for classes without --loss poisson."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, 2))
    y = rng.poisson(np.exp(0.8 * A[:, 0] - 0.5 * A[:, 1] + 1.0)) + shift
    write_csv(path, ["a", "b", "visits"], [[*a, v] for a, v in zip(A.tolist(), y, strict=True)])
    return y


def test_poisson_regression_trains_and_predicts(tmp_path, capsys):
    y = counts_csv(tmp_path / "counts.csv")
    code, out, err = run(
        capsys, "train", tmp_path / "counts.csv", "--target", "visits", "--loss", "poisson",
        "--hidden", "8", "--epochs", "60", "--lr", "0.01", "--quiet",
        "--out", tmp_path / "poisson.safetensors",
    )  # fmt: skip
    assert code == 0, err
    assert "(regression, values)" in out and "loss poisson" in out
    model = matnet.load(tmp_path / "poisson.safetensors")
    # exp(Z) is a rate in the counts' own units; a shifted target would break the link.
    assert model.loss.task == "regression" and model.target_scaling is None
    code, out, err = run(
        capsys, "predict", tmp_path / "poisson.safetensors", tmp_path / "counts.csv"
    )
    assert code == 0, err
    values = np.array([float(v) for v in predicted_column(out)])
    assert np.all(values > 0) and values.mean() == pytest.approx(y.mean(), rel=0.15)
    A = np.loadtxt(tmp_path / "counts.csv", delimiter=",", skiprows=1)[:, :2]
    assert_close(values, model.predict(A), rtol=1e-6)
    code, out, err = run(
        capsys, "evaluate", tmp_path / "poisson.safetensors", tmp_path / "counts.csv"
    )
    assert code == 0, err
    r2 = float(out.splitlines()[1].split()[5])
    assert r2 > 0.3


def test_poisson_needs_non_negative_targets(tmp_path, capsys):
    counts_csv(tmp_path / "shifted.csv", n=40, shift=-3.0)
    code, out, err = run(
        capsys, "train", tmp_path / "shifted.csv", "--target", "visits", "--loss", "poisson",
        "--epochs", "1", "--out", tmp_path / "m.st",
    )  # fmt: skip
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "column 'visits'" in err and "non-negative" in err
    assert not (tmp_path / "m.st").exists()


class HalfSquaredError(MeanSquaredError):
    """A regression loss known only to this file: the CLI must take its task from the registry."""

    name = "half_squared_error_cli_test"

    def __call__(self, Z, Y, sample_weight=None):
        value, dZ = super().__call__(Z, Y, sample_weight)
        dZ *= 0.5
        return 0.5 * value, dZ


class Softsign(matnet.activations.Activation):
    name = "softsign_cli_test"
    overwrites_input = False

    def forward(self, Z, out):
        return np.divide(Z, 1 + np.abs(Z), out=out)

    def backward(self, dA, Z, A):
        dA /= (1 + np.abs(Z)) ** 2
        return dA


def test_registered_losses_and_activations_are_command_line_choices(tmp_path, capsys):
    matnet.register_loss(HalfSquaredError)
    matnet.register_activation(Softsign)
    # The parser reads the registries when it is built: both names are valid choices now.
    args = build_parser().parse_args(
        ["train", "diabetes", "--loss", HalfSquaredError.name, "--activation", Softsign.name]
    )
    assert (args.loss, args.activation) == (HalfSquaredError.name, Softsign.name)
    code, out, err = run(
        capsys, "train", "diabetes", "--loss", "half_squared_error_cli_test", "--activation",
        "softsign_cli_test", "--hidden", "8", "--epochs", "3", "--quiet",
        "--out", tmp_path / "h.st",
    )  # fmt: skip
    assert code == 0, err
    assert "(regression, values)" in out and "loss half_squared_error_cli_test" in out
    code, out, err = run(capsys, "predict", tmp_path / "h.st", "diabetes:test")
    assert code == 0 and len(out.splitlines()) == 1 + len(load_dataset("diabetes:test")), err
    # A regression loss on a classification dataset names the losses that would fit.
    code, out, err = run(capsys, "train", "iris", "--loss", "poisson", "--out", tmp_path / "x.st")
    assert code == 2 and "--loss poisson does not fit iris, a classification task" in err
    assert "softmax_cross_entropy" in err and "binary_cross_entropy" in err


# --- a model file without preprocessing ------------------------------------------------------------


def test_a_model_without_an_input_scaling_layer_is_noted(tmp_path, capsys):
    X, species = penguins(90, seed=5)
    classes, y = np.unique(species, return_inverse=True)
    # The Python API on standardized X: the file knows nothing of the scaling.
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    model = matnet.MLP([4, 8, 3], loss="cross_entropy", seed=0)
    model.fit(Xs, y, epochs=30, learning_rate=0.01, verbose=0)
    matnet.save(model, tmp_path / "bare.safetensors")
    write_csv(
        tmp_path / "raw.csv",
        [*COLUMNS, "label"],
        [[*x, c] for x, c in zip(X.tolist(), y, strict=True)],
    )
    write_csv(tmp_path / "rows.csv", COLUMNS, X.tolist())
    note = "note: " + str(tmp_path / "bare.safetensors") + " has no input scaling layer"
    for argv in (
        ["evaluate", tmp_path / "bare.safetensors", tmp_path / "raw.csv", "--target", "label"],
        ["predict", tmp_path / "bare.safetensors", tmp_path / "rows.csv"],
        ["info", tmp_path / "bare.safetensors"],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert err.splitlines() == [
            f"{note}; the data's columns go into the network as they are"
        ], argv[0]
    # The same network behind a fitted Standardize layer takes the raw rows: no note.
    scaled = matnet.Sequential([matnet.Standardize(4), *model.copy().layers], loss="cross_entropy")
    shifted = {}
    for key, value in model.get_weights().items():
        index, name = key.split(".")
        shifted[f"{int(index) + 1}.{name}"] = value
    scaled.set_weights(shifted)
    scaled.adapt(X)
    matnet.save(scaled, tmp_path / "scaled.safetensors")
    code, out, err = run(capsys, "evaluate", tmp_path / "scaled.safetensors", tmp_path / "raw.csv",
                         "--target", "label")  # fmt: skip
    assert code == 0 and err == ""
    np.testing.assert_array_equal(scaled.predict(X), model.predict(Xs))
