"""Raw tables in, answers out: the table layers (gradients, state, files), column inference, the
behaviour for bad categorical values (docs/errors.md), and tables the way they come (CSV dialects,
encodings, gzip, stdin, Parquet, pandas and polars)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tolerance import assert_close

import matnet
from matnet.cli import main
from matnet.datasets import read_csv
from matnet.layers import Dense, Embedding, OneHot, RobustScale
from matnet.layers.tabular import UNKNOWN_SLOT, smooth_clip
from matnet.tabular import infer_columns, output_width, preprocessor

PENGUINS = Path(__file__).parent / "data" / "penguins.csv"

pd = pytest.importorskip("pandas")


def penguins() -> tuple[object, np.ndarray]:
    frame = pd.read_csv(PENGUINS)
    return frame.drop(columns="species"), frame["species"].to_numpy()


def table_model(frame, n_out=3, loss="cross_entropy", dtype="float64", **options):
    layers = preprocessor(frame, **options)
    width = output_width(layers)
    network = matnet.MLP([width, 8, n_out], seed=0, dtype=dtype)
    return matnet.Sequential([*layers, *network.layers], loss=loss, dtype=dtype, seed=0)


def raw_rows(path: Path) -> tuple[list[str], np.ndarray]:
    """The CSV's header and its rows as a 2-D object array of cells, as a user would read them."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.asarray(rows[1:], dtype=object)


# --- the layers ----------------------------------------------------------------------------------


def test_preprocessor_layers_for_the_raw_penguins():
    frame, _ = penguins()
    report = infer_columns(frame)
    kinds = {c.name: c.kind for c in report.columns}
    assert kinds == {
        "island": "categorical", "bill_length_mm": "numeric", "bill_depth_mm": "numeric",
        "flipper_length_mm": "numeric", "body_mass_g": "numeric", "sex": "categorical",
        "year": "numeric",
    }  # fmt: skip
    layers = preprocessor(frame, report=report)
    assert [type(layer).__name__ for layer in layers] == ["TableInput", "RobustScale", "OneHot"]
    # 2 categorical codes become 5 + 4 one-hot columns; 5 numeric + 4 missing indicators.
    assert output_width(layers) == 5 + 4 + 5 + 4
    assert "sex" in report.text() and "11 missing" in report.text()


def test_robust_scale_follows_the_paper():
    layer = RobustScale(1, [0], [0])
    model = matnet.Sequential([layer], dtype="float64")
    x = np.array([[1.0], [2.0], [3.0], [4.0], [100.0], [np.nan]])
    model.adapt(x)
    q1, q2, q3 = np.quantile(x[:5, 0], [0.25, 0.5, 0.75])
    S, _ = layer.forward(x)
    u = (x[:5, 0] - q2) / (q3 - q1)
    np.testing.assert_allclose(S[:5, 0], u / np.sqrt(1 + (u / 3) ** 2))
    assert S[5, 0] == 0.0 and list(S[:, 1]) == [0, 0, 0, 0, 0, 1]  # imputed, flagged
    assert abs(smooth_clip(np.array([1e6]))[0]) < 3  # outliers end below 3
    # Equal quartiles: 2 / (max - min); a constant column: scale 0.
    layer = RobustScale(2, [0, 1])
    model = matnet.Sequential([layer], dtype="float64")
    model.adapt(np.array([[0.0, 5], [0, 5], [0, 5], [0, 5], [8, 5]]))
    assert layer.inv_scale[0, 0] == 2 / 8 and layer.inv_scale[0, 1] == 0


def _input_gradient_error(layer, A, columns, seed=0):
    """Backpropagated against central differences of <S, G> for the given input columns."""
    G = np.random.default_rng(seed).standard_normal((A.shape[0], layer.output_width(A.shape[1])))
    S, backward = layer.forward(A)
    dA = backward(G.copy())
    eps, worst = 1e-6, 0.0
    for i in range(A.shape[0]):
        for j in columns:
            if np.isnan(A[i, j]):
                continue
            plus, minus = A.copy(), A.copy()
            plus[i, j] += eps
            minus[i, j] -= eps
            numeric = (np.sum(layer.forward(plus)[0] * G) - np.sum(layer.forward(minus)[0] * G)) / (
                2 * eps
            )
            worst = max(worst, abs(numeric - dA[i, j]) / max(abs(numeric) + abs(dA[i, j]), 1e-9))
    return worst


def test_every_table_layer_passes_the_gradient_check():
    rng = np.random.default_rng(0)
    # RobustScale's input gradient, in a model (Dense before it) and on its own with gaps.
    model = matnet.Sequential(
        [Dense(3, 4), RobustScale(4, [0, 1, 3]), Dense(4, 2)], loss="mse", dtype="float64"
    )
    X = rng.standard_normal((12, 3)) * 5
    model.adapt(X)
    assert matnet.gradcheck(model, X, rng.standard_normal((12, 2))) < 1e-6
    layer = RobustScale(3, [0, 2], [2])
    matnet.Sequential([layer], dtype="float64").adapt(rng.standard_normal((20, 3)))
    A = rng.standard_normal((6, 3)) * 3
    A[1, 2] = np.nan
    layer.needs_input_grad = True
    assert _input_gradient_error(layer, A, [0, 1, 2]) < 1e-6
    # OneHot and Embedding: the pass-through columns' gradient, and E's through gradcheck.
    codes = np.column_stack([rng.integers(0, 5, 6), rng.standard_normal(6), rng.integers(0, 4, 6)])
    for layer in (OneHot(3, [0, 2], [5, 4]), Embedding(3, [0, 2], [5, 4], [2, 3])):
        matnet.Sequential([Dense(3, 3), layer], dtype="float64")  # binds E
        layer.needs_input_grad = True
        assert _input_gradient_error(layer, codes, [1]) < 1e-6
    frame, y = penguins()
    model = table_model(frame, embedding_dims=2, one_hot_max=2)  # island embedded, sex one-hot
    assert [type(layer).__name__ for layer in model.layers[:4]] == [
        "TableInput", "RobustScale", "OneHot", "Embedding",
    ]  # fmt: skip
    model.adapt(model.input_matrix(frame))
    classes = np.unique(y, return_inverse=True)[1]  # gradcheck takes class indices
    assert matnet.gradcheck(model, frame.iloc[::9], classes[::9]) < 1e-6


def test_embedding_gradient_is_onehot_transpose_times_dz():
    layer = Embedding(1, [0], [4], [3])
    matnet.Sequential([layer], dtype="float64", seed=1)
    codes = np.array([[2.0], [3.0], [2.0], [0.0]])
    dZ = np.arange(12, dtype=np.float64).reshape(4, 3)
    S, backward = layer.forward(codes)
    np.testing.assert_array_equal(S, layer.E[0][[2, 3, 2, 0]])
    backward(dZ.copy())
    onehot = np.eye(4)[[2, 3, 2, 0]]
    np.testing.assert_array_equal(layer.dE[0], onehot.T @ dZ)


def test_table_model_trains_and_its_file_holds_vocabulary_and_state(tmp_path):
    frame, y = penguins()
    model = table_model(frame, dtype="float32")
    model.fit(frame, y, epochs=40, batch_size=16, learning_rate=0.01, verbose=0)
    assert model.evaluate(frame, y)["accuracy"] > 0.95
    path = tmp_path / "penguins.safetensors"
    matnet.save(model, path)
    loaded = matnet.load(path)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame))
    assert loaded.layers[0].columns[0] == {
        "name": "island", "kind": "categorical", "categories": ["Biscoe", "Dream", "Torgersen"],
    }  # fmt: skip
    np.testing.assert_array_equal(loaded.flat_state, model.flat_state)


def test_a_category_seen_only_outside_the_training_rows_reads_as_unknown():
    frame = {"c": np.array(["a", "b", "a", "b", "z"], dtype=object), "x": np.arange(5.0)}
    model = table_model(frame, n_out=1, loss="mse")
    model.adapt(model.input_matrix({k: v[:4] for k, v in frame.items()}))  # "z" never trained
    C, _ = model.layers[0].forward(model.input_matrix(frame))
    assert C[4, 0] == UNKNOWN_SLOT and C[0, 0] == 2


# --- the raw penguins through every front end ------------------------------------------------


@pytest.fixture(scope="module")
def penguin_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("penguins")
    model = folder / "penguins.safetensors"
    code = main(["train", str(PENGUINS), "--target", "species", "--epochs", "20", "--quiet",
                 "--hidden", "16", "--out", str(model)])  # fmt: skip
    assert code == 0
    return model


def test_cli_trains_on_raw_penguins_and_python_gives_its_answers(penguin_model, capsys):
    code = main(["predict", str(penguin_model), str(PENGUINS), "--proba"])
    out = capsys.readouterr().out
    assert code == 0
    cli = list(csv.reader(io.StringIO(out)))[1:]
    header, rows = raw_rows(PENGUINS)
    features = np.delete(rows, header.index("species"), axis=1)
    model = matnet.load(penguin_model)
    assert model.feature_names == [h for h in header if h != "species"]
    answers = model.predict(features)
    assert [r[0] for r in cli] == list(answers)
    assert_close(np.array([r[1:] for r in cli], float), model.predict_proba(features), rtol=1e-5)
    frame, y = penguins()
    assert list(model.predict(frame)) == list(answers)  # a DataFrame, matched by name
    assert np.mean(answers == y) > 0.9


def test_cli_shows_the_column_types_before_training(tmp_path, capsys):
    out_path = tmp_path / "m.safetensors"
    code = main(["train", str(PENGUINS), "--target", "species", "--epochs", "1", "--quiet",
                 "--drop", "year", "--categorical", "island", "--out", str(out_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.index("island") < out.index("trained 1 epochs")
    assert "sex                categorical (text, 11 missing)" in out
    assert "year" not in out.split("preprocessing")[0].split("rows, 6 columns")[1]
    assert matnet.load(out_path).feature_names[-1] == "sex"


def test_a_model_file_loads_in_a_process_that_never_saw_the_data(penguin_model):
    header, rows = raw_rows(PENGUINS)
    features = np.delete(rows, header.index("species"), axis=1)[:30]
    expected = matnet.load(penguin_model).predict_proba(features)
    code = (
        "import json, sys, numpy as np, matnet\n"
        "rows = np.asarray(json.loads(sys.stdin.read()), dtype=object)\n"
        f"model = matnet.load({str(penguin_model)!r})\n"
        "print(json.dumps(model.predict_proba(rows).tolist()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(features.tolist()), capture_output=True,
        text=True, timeout=120, check=True,
    )  # fmt: skip
    assert_close(np.array(json.loads(result.stdout)), expected, rtol=1e-6)


# --- bad values in categorical columns (docs/errors.md) ---------------------------------------


@pytest.fixture(scope="module")
def fitted():
    frame, y = penguins()
    model = table_model(frame, dtype="float64")
    model.fit(frame, y, epochs=3, verbose=0)
    return model, frame


def test_unseen_category_goes_to_the_unknown_slot(fitted):
    model, frame = fitted
    rows = frame.iloc[[0, 0, 0]].copy()
    rows["island"] = ["Atlantis", "Biscoe", "Mars"]
    codes = model.input_matrix(rows)
    assert list(codes[:, 0]) == [UNKNOWN_SLOT, 2, UNKNOWN_SLOT]
    P = model.predict_proba(rows)
    assert np.all(np.isfinite(P))
    np.testing.assert_array_equal(P[0], P[2])  # every unseen category is the one unknown slot
    assert not np.array_equal(P[0], P[1])


def test_wrong_type_in_a_categorical_column(fitted):
    model, frame = fitted
    rows = frame.iloc[:2].copy().astype(object)
    rows["island"] = [3.5, True]  # numbers and booleans are read as their text: unknown here
    assert list(model.input_matrix(rows)[:, 0]) == [UNKNOWN_SLOT, UNKNOWN_SLOT]
    rows["island"] = [["Dream"], "Dream"]  # no scalar: an error naming the column and row
    with pytest.raises(TypeError, match=r"column 'island', row 0: a list cannot be a category"):
        model.predict(rows)
    rows["island"] = ["Dream", "Dream"]
    rows["bill_length_mm"] = ["long", 40.0]  # text in a numeric column: an error
    with pytest.raises(ValueError, match=r"column 'bill_length_mm', row 0: 'long' is not a number"):
        model.predict(rows)


def test_all_missing_column_is_dropped_with_a_note(fitted):
    model, frame = fitted
    frame_gap = frame.copy()
    frame_gap["sex"] = None
    report = infer_columns(frame_gap)
    assert "sex" not in report.names
    assert [(c.name, c.reason) for c in report.dropped] == [("sex", "empty: every cell is missing")]
    assert re.search(r"sex +dropped \(empty: every cell is missing", report.text())
    # At prediction every cell goes to the missing slot; the answers stay finite.
    codes = model.input_matrix(frame_gap.iloc[:5])
    assert list(codes[:, 5]) == [0] * 5
    assert np.all(np.isfinite(model.predict_proba(frame_gap.iloc[:5])))


def test_cli_all_missing_column_is_dropped_with_a_note(tmp_path, capsys):
    (tmp_path / "gap.csv").write_text("a,b,y\n1,,p\n2,NA,q\n3,,p\n4,,q\n")
    code = main(["train", str(tmp_path / "gap.csv"), "--target", "y", "--out",
                 str(tmp_path / "m.st"), "--validation-fraction", "0", "--epochs", "1",
                 "--quiet"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "b  dropped (empty: every cell is missing; keep it with --keep)" in out
    assert matnet.load(tmp_path / "m.st").feature_names == ["a"]


def test_numeric_models_stay_strict():
    model = matnet.MLP([2, 3, 2], loss="cross_entropy")
    with pytest.raises(TypeError, match="numeric features"):
        model.predict(np.array([["a", 1]], dtype=object))
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.predict(np.array([[np.nan, 1.0]]))


# --- tables the way they come -------------------------------------------------------------------


def _penguin_text() -> str:
    return PENGUINS.read_text()


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiter_is_sniffed(tmp_path, delimiter):
    path = tmp_path / "p.csv"
    path.write_text(_penguin_text().replace(",", delimiter))
    table = read_csv(path, "species", raw=True)
    assert table.X.shape == (344, 7) and table.feature_names[0] == "island"


def test_gzip_latin1_and_stdin(tmp_path, monkeypatch, capsys):
    text = "ville,x,y\nZürich,1,a\nGenève,2,b\nZürich,3,a\nGenève,4,b\n"
    (tmp_path / "l1.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(matnet.errors.DataError, match="not UTF-8 text.*--encoding latin-1"):
        read_csv(tmp_path / "l1.csv", "y", raw=True)
    table = read_csv(tmp_path / "l1.csv", "y", raw=True, encoding="latin-1")
    assert list(table.X[:2, 0]) == ["Zürich", "Genève"]
    with gzip.open(tmp_path / "p.csv.gz", "wt") as f:
        f.write(_penguin_text())
    assert read_csv(tmp_path / "p.csv.gz", "species", raw=True).X.shape == (344, 7)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(_penguin_text().encode())))
    code = main(["train", "-", "--target", "species", "--epochs", "2", "--quiet",
                 "--out", str(tmp_path / "stdin.st")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    code = main(["train", str(tmp_path / "l1.csv"), "--target", "y", "--epochs", "1", "--quiet",
                 "--validation-fraction", "0", "--encoding", "latin-1",
                 "--out", str(tmp_path / "l1.st")])  # fmt: skip
    assert code == 0
    assert matnet.load(tmp_path / "l1.st").layers[0].columns[0]["categories"] == [
        "Genève",
        "Zürich",
    ]


def test_parquet_through_pyarrow(tmp_path, penguin_model, capsys):
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(PENGUINS)
    frame.to_parquet(tmp_path / "p.parquet")
    table = read_csv(tmp_path / "p.parquet", "species", raw=True)
    assert table.X.shape == (344, 7)
    assert main(["predict", str(penguin_model), str(tmp_path / "p.parquet")]) == 0
    from_parquet = capsys.readouterr().out
    assert main(["predict", str(penguin_model), str(PENGUINS)]) == 0
    assert capsys.readouterr().out == from_parquet


def test_dataframes_with_their_column_types():
    frame = pd.DataFrame({
        "grade": pd.Categorical(["a", "b", None, "a", "b", "a"]),
        "flag": [True, False, True, True, False, False],
        "count": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
        "value": [0.5, 1.5, np.nan, 2.0, 3.0, 1.0],
    })  # fmt: skip
    report = infer_columns(frame)
    # A boolean column is one binary column (1/0), not categories.
    assert [c.kind for c in report.columns] == ["categorical", "numeric", "numeric", "numeric"]
    assert [c.n_missing for c in report.columns] == [1, 0, 1, 1]
    y = np.array([0.0, 1, 0, 1, 0, 1])
    model = table_model(frame, n_out=1, loss="mse")
    model.fit(frame, y, epochs=2, verbose=0)
    pandas_answers = model.predict(frame)
    polars = pytest.importorskip("polars")
    pl_frame = polars.DataFrame({
        "grade": ["a", "b", None, "a", "b", "a"],
        "flag": [True, False, True, True, False, False],
        "count": [1, None, 3, 4, 5, 6],
        "value": [0.5, 1.5, None, 2.0, 3.0, 1.0],
    })  # fmt: skip
    assert [c.kind for c in infer_columns(pl_frame).columns] == [
        "categorical", "numeric", "numeric", "numeric",
    ]  # fmt: skip
    np.testing.assert_allclose(model.predict(pl_frame), pandas_answers)


def test_a_dataframe_column_typed_as_text_or_categories_is_categorical():
    """Codes stored as strings or as a category dtype are labels, even when they read as numbers:
    the frame's type says so (a CSV, whose cells are all text, is judged by its cells). A plain
    object column is judged by its cells; categorical= / numeric= still win."""
    codes = ["1", "2", "3", "2", "1", "3"]
    frame = pd.DataFrame({
        "text": pd.Series(codes, dtype="string"),
        "category": pd.Categorical([1, 2, 3, 2, 1, 3]),
        "objects": pd.Series(codes, dtype=object),
        "number": [1.0, 2.0, 3.0, 2.0, 1.0, 3.0],
    })  # fmt: skip
    kinds = {c.name: (c.kind, c.reason) for c in infer_columns(frame).columns}
    assert kinds["text"] == ("categorical", "string dtype")
    assert kinds["category"] == ("categorical", "category dtype")
    assert kinds["number"] == ("numeric", "numbers")
    if frame["objects"].dtype == object:  # pandas 3 may store it as its string dtype anyway
        assert kinds["objects"] == ("numeric", "numbers")
    forced = infer_columns(frame, numeric=["text"]).columns[0]
    assert (forced.kind, forced.reason) == ("numeric", "numeric=...")
    polars = pytest.importorskip("polars")
    pl_frame = polars.DataFrame({
        "text": codes,
        "category": polars.Series(codes, dtype=polars.Categorical),
        "number": [1, 2, 3, 2, 1, 3],
    })  # fmt: skip
    assert [c.kind for c in infer_columns(pl_frame).columns] == [
        "categorical", "categorical", "numeric",
    ]  # fmt: skip


@pytest.mark.parametrize("split", ["validation_data", "validation_fraction"])
def test_validation_during_training_reads_the_categories(split):
    """fit encodes the raw table once; the validation loss it records must come from those codes,
    not from encoding them again (which read every category as unknown, and so picked the best
    epoch by a model that saw no categories). The recorded value equals the loss of the trained
    model on the raw validation rows."""
    frame, species = penguins()
    frame = frame[["island", "sex"]]  # categories only: without them nothing can be learned
    model = table_model(frame)
    if split == "validation_data":
        train, val = np.arange(0, len(frame), 2), np.arange(1, len(frame), 2)
        history = model.fit(
            frame.iloc[train], species[train], epochs=3, seed=0, verbose=0,
            validation_data=(frame.iloc[val], species[val]),
        )  # fmt: skip
    else:
        history = model.fit(frame, species, epochs=3, seed=0, verbose=0, validation_fraction=0.5)
        val = history.trainer.val_idx
    targets = model.encode_targets(species[val], len(val))
    expected = model.loss(model.logits(frame.iloc[val]), targets)[0]
    assert history.records[-1]["val_loss"] == pytest.approx(expected, rel=1e-12)
    codes = model.input_matrix(frame.iloc[val], finite=False)
    np.testing.assert_array_equal(model.logits_from_matrix(codes), model.logits(frame.iloc[val]))
