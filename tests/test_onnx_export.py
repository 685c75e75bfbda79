"""ONNX export: every layer, activation and loss, run in ONNX Runtime and compared with matnet.

Tolerances: 1e-5 in float32 and 1e-12 in float64, relative to each entry and to the output's
largest entry (tests/tolerance.py); labels identical."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import tolerance

import matnet
from matnet.activations import Activation as ActivationFunction
from matnet.cli import main
from matnet.errors import ConversionError, NotFittedError, OptionalDependencyError
from matnet.layers import (
    Activation,
    BatchEnsemble,
    Dense,
    Dropout,
    Embedding,
    EnsembleMean,
    Layer,
    OneHot,
    Periodic,
    PeriodicLinear,
    RobustScale,
    Scale,
    Standardize,
)
from matnet.losses import MeanSquaredError, SoftmaxCrossEntropy
from matnet.tabular import output_width, preprocessor
from matnet.tabular.recipe import TabularRecipe, tabular_loss, tabular_model

onnx = pytest.importorskip("onnx", reason="the ONNX export tests need matnet[onnx] (onnx)")
ort = pytest.importorskip("onnxruntime", reason="the parity tests run the graph in ONNX Runtime")

RTOL = {"float32": 1e-5, "float64": 1e-12}
DTYPES = ["float32", "float64"]
ACTIVATIONS = [
    "identity",
    "relu",
    {"name": "leaky_relu", "alpha": 0.2},
    "sigmoid",
    "tanh",
    "gelu",
    "softmax",
]


def session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def run(proto, X):
    """ONNX Runtime's outputs by name."""
    s = session(proto)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, {"X": X}), strict=True))


def assert_close(actual, expected, dtype):
    assert actual.dtype == np.dtype(dtype)
    tolerance.assert_close(actual, expected, rtol=RTOL[dtype])


def data(n=60, d=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(2.0, 3.0, size=(n, d))  # raw scale: the Standardize layer matters


def classifier(activation, dtype, loss="cross_entropy", n_out=3, classes=None, seed=1):
    """An untrained MLP with preprocessing, dropout and random biases (so every term counts)."""
    model = matnet.MLP(
        [4, 7, 5, n_out],
        activation,
        standardize=True,
        dropout=0.25,
        loss=loss,
        dtype=dtype,
        seed=seed,
    )
    model.adapt(data())
    rng = np.random.default_rng(seed)
    for layer in model.dense_layers:
        layer.b[...] = rng.normal(0, 0.5, size=layer.b.shape)
    model.classes = classes
    return model


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "activation", ACTIVATIONS, ids=lambda a: a if isinstance(a, str) else a["name"]
)
def test_every_activation_and_layer_matches_matnet(activation, dtype):
    model = classifier(activation, dtype, classes=[10, 20, 30])
    X = data(seed=3).astype(dtype)
    out = run(matnet.to_onnx(model), X)
    assert_close(out["probabilities"], model.predict_proba(X), dtype)
    assert out["label"].dtype == np.int64
    np.testing.assert_array_equal(out["label"], model.predict(X))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_classifier_without_classes_gives_class_indices(dtype):
    model = classifier("relu", dtype, classes=None)
    X = data(seed=4).astype(dtype)
    out = run(matnet.to_onnx(model), X)
    assert out["label"].dtype == np.int64
    np.testing.assert_array_equal(out["label"], model.predict(X))
    assert_close(out["probabilities"], model.predict_proba(X), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_string_classes_come_back_as_strings(dtype):
    model = classifier("tanh", dtype, classes=["setosa", "versicolor", "virginica"])
    X = data(seed=5).astype(dtype)
    out = run(matnet.to_onnx(model), X)
    expected = model.predict(X)
    assert len(set(expected)) > 1  # the test sees more than one class
    assert out["label"].tolist() == expected.tolist()


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_model_gives_both_columns_as_skl2onnx(dtype):
    model = classifier("relu", dtype, loss="binary_cross_entropy", n_out=1, classes=["no", "yes"])
    X = data(seed=6).astype(dtype)
    out = run(matnet.to_onnx(model), X)
    p = model.predict_proba(X)  # (n, 1): the probability of the second class
    assert out["probabilities"].shape == (len(X), 2)
    assert_close(out["probabilities"], np.column_stack([1 - p[:, 0], p[:, 0]]), dtype)
    expected = model.predict(X)
    assert set(expected) == {"no", "yes"}
    assert out["label"].tolist() == expected.tolist()


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_label_model_gives_a_label_per_output(dtype):
    model = classifier("sigmoid", dtype, loss="binary_cross_entropy", n_out=3)
    X = data(seed=7).astype(dtype)
    out = run(matnet.to_onnx(model), X)
    assert_close(out["probabilities"], model.predict_proba(X), dtype)
    assert out["label"].shape == (len(X), 3)
    np.testing.assert_array_equal(out["label"], model.predict(X))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["mse", "poisson"])
def test_regressor_values_in_target_units(loss, dtype):
    model = classifier("gelu", dtype, loss=loss, n_out=2)
    model.target_scaling = (np.array([100.0, -3.0]), np.array([15.0, 0.5]))
    X = data(seed=8).astype(dtype)
    out = run(matnet.to_onnx(model), X)
    assert list(out) == ["variable"]
    assert_close(out["variable"], model.predict(X), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_output_regressor_is_a_column(dtype):
    model = classifier("relu", dtype, loss="mse", n_out=1)
    X = data(seed=9).astype(dtype)
    out = run(matnet.to_onnx(model), X)
    assert out["variable"].shape == (len(X), 1)  # skl2onnx's shape; predict gives (n,)
    assert_close(out["variable"][:, 0], model.predict(X), dtype)


def test_trained_model_matches_after_fit():
    """A model trained by fit (its scaler, labels and weights set by training) exports exactly."""
    X = data(200, seed=10)
    y = np.where(X[:, 0] + X[:, 1] > 4, "high", "low")
    model = matnet.MLP([4, 8, 2], "relu", standardize=True, loss="cross_entropy", dtype="float64")
    model.fit(X, y, epochs=3, verbose=0)
    out = run(matnet.to_onnx(model), X)
    assert_close(out["probabilities"], model.predict_proba(X), "float64")
    assert out["label"].tolist() == model.predict(X).tolist()


def test_dynamic_batch_one_row_and_a_hundred():
    model = classifier("relu", "float32", classes=[1, 2, 3])
    proto = matnet.to_onnx(model)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    s = session(proto)
    for n in (1, 100):
        X = data(n, seed=n).astype(np.float32)
        label, proba = s.run(None, {"X": X})
        assert proba.shape == (n, 3) and label.shape == (n,)
        np.testing.assert_array_equal(label, model.predict(X))


def test_dtype_override_and_checker(tmp_path):
    model = classifier("relu", "float64", classes=[0, 1, 2])
    path = tmp_path / "m.onnx"
    matnet.to_onnx(model, path, dtype="float32")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    X = data(seed=11).astype(np.float32)
    out = run(proto, X)
    assert_close(out["probabilities"], model.astype("float32").predict_proba(X), "float32")
    assert proto.opset_import[0].version == matnet.export.DEFAULT_OPSET
    assert proto.producer_name == "matnet"


@pytest.mark.parametrize("opset", [13, 17])
def test_opsets_that_runtimes_read(opset):
    model = classifier("gelu", "float64", classes=[0, 1, 2])
    proto = matnet.to_onnx(model, opset=opset)
    assert proto.opset_import[0].version == opset
    X = data(seed=12)
    assert_close(run(proto, X)["probabilities"], model.predict_proba(X), "float64")


def test_metadata_names_features_and_classes():
    model = classifier("relu", "float32", classes=["a", "b", "c"])
    model.feature_names = ["w", "x", "y", "z"]
    props = {p.key: p.value for p in matnet.to_onnx(model).metadata_props}
    assert json.loads(props["classes"]) == ["a", "b", "c"]
    assert json.loads(props["feature_names"]) == ["w", "x", "y", "z"]


# --- the tabular recipe's layers --------------------------------------------------------------


def randomize(model, seed=0):
    """Move every parameter and adapter off its initial value (scales of 1, biases of 0), so each
    term of every layer's formula shows in the output."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for name in ("s", "R", "S", "b"):
            value = getattr(layer, name, None)
            if value is not None and not isinstance(layer, Dense):
                value[...] = rng.normal(1.0 if name != "b" else 0.0, 0.3, size=value.shape)
    return model


def check_parity(model, X, dtype, opset=matnet.export.DEFAULT_OPSET):
    """Export, check, run with one row and with them all, and compare with predict/predict_proba."""
    proto = matnet.to_onnx(model, opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    for rows in (X[:1], X):
        out = run(proto, rows)
        if "variable" in out:
            expected = model.predict(rows).reshape(len(rows), -1)
            assert_close(out["variable"], expected, dtype)
        else:
            assert_close(out["probabilities"], model.predict_proba(rows), dtype)
            assert out["label"].tolist() == model.predict(rows).tolist()
    return proto


def check_recipe_layers(front: list, width: int, dtype: str, activation: str = "gelu") -> None:
    """``front`` (input scaling and an embedding of width ``width``) before BatchEnsemble blocks
    (shared and per-member input) and EnsembleMean: the graph gives matnet's answers."""
    k, d = 3, 4
    model = matnet.Sequential(
        [
            Standardize(d),
            *front,
            BatchEnsemble(width, 6, k, shared_input=True),
            Activation(activation),
            Dropout(0.2),
            BatchEnsemble(6, 5, k),
            Activation("relu"),
            BatchEnsemble(5, 3, k, init="glorot_normal"),
            EnsembleMean(k),
        ],
        loss="cross_entropy",
        dtype=dtype,
        seed=2,
    )
    model.adapt(data(d=d))
    randomize(model, seed=3)
    model.classes = ["a", "b", "c"]
    X = data(100, d=d, seed=4).astype(dtype)
    assert len(set(model.predict(X))) > 1  # the test sees more than one class
    check_parity(model, X, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("include_input", [True, False], ids=["with-input", "embedding-only"])
def test_recipe_layers_match_matnet(include_input, dtype):
    """Scale, Periodic, BatchEnsemble (shared and per-member input) and EnsembleMean."""
    periodic = Periodic(4, n_frequencies=5, sigma=0.5, include_input=include_input)
    check_recipe_layers([Scale(4), periodic], periodic.output_width(4), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_periodic_linear_and_scale_gain_match_matnet(dtype):
    """PeriodicLinear (RealMLP's PBLD) and a Scale with a gain: the graph applies gain · s."""
    embedding = PeriodicLinear(4, n_frequencies=5, n_out=3, sigma=0.5)
    check_recipe_layers([Scale(4, gain=6.0), embedding], embedding.output_width(4), dtype, "relu")


@pytest.mark.parametrize("dtype", DTYPES)
def test_periodic_linear_of_some_columns_matches_matnet(dtype):
    """PeriodicLinear embedding the first 2 of 4 columns: the other two pass through after the
    embedded blocks in the graph too."""
    embedding = PeriodicLinear(4, n_frequencies=5, n_out=3, sigma=0.5, n_embedded=2)
    check_recipe_layers([Scale(4), embedding], embedding.output_width(4), dtype, "relu")


@pytest.mark.parametrize("opset", [13, 17])
def test_recipe_layers_at_every_opset(opset):
    model = tabular_model(4, 3, SoftmaxCrossEntropy(), dtype="float64", seed=5)
    model.adapt(data())
    check_parity(randomize(model, seed=6), data(100, seed=7), "float64", opset=opset)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_tabular_model_on_numeric_data_matches(task, dtype):
    n_out = 3 if task == "classification" else 2
    recipe = TabularRecipe(hidden=(16, 8), k=4)
    model = tabular_model(5, n_out, tabular_loss(task, recipe), recipe=recipe, dtype=dtype)
    model.adapt(data(d=5))
    randomize(model, seed=8)
    if task == "regression":
        model.target_scaling = (np.array([10.0, -2.0]), np.array([3.0, 0.25]))
    check_parity(model, data(100, d=5, seed=9).astype(dtype), dtype)


@pytest.mark.parametrize("gap", [False, True])
def test_matnet_train_on_a_numeric_csv_exports_one_input_per_column(
    tmp_path, monkeypatch, capsys, gap
):
    """``matnet train``'s default model (the tabular recipe) leaves by ``matnet export`` with one
    graph input per column, whether or not the training file had an empty cell: one interface."""
    monkeypatch.chdir(tmp_path)
    X = data(120, d=3, seed=10)
    kind = np.where(X[:, 0] > 2, "big", "small")
    rows = [
        "u,v,w,kind",
        *(f"{a:.6f},{b:.6f},{c:.6f},{t}" for (a, b, c), t in zip(X, kind, strict=True)),
    ]
    if gap:
        rows[5] = "," + rows[5].split(",", 1)[1]  # u empty in one training row
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    argv = ["train", "t.csv", "--target", "kind", "--epochs", "3", "--quiet", "--out", "m.st"]
    assert main(argv) == 0
    model = matnet.load(tmp_path / "m.st")
    assert type(model.layers[-1]).__name__ == "EnsembleMean"
    assert main(["export", "m.st", "m.onnx", "--dtype", "float64"]) == 0
    capsys.readouterr()
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    s = session(proto)
    assert [(i.name, i.shape[1]) for i in s.get_inputs()] == [("u", 1), ("v", 1), ("w", 1)]
    X_gap = X.copy()
    X_gap[3, 1] = np.nan  # a gap at prediction: imputed in both
    feed = {name: X_gap[:, [j]] for j, name in enumerate("uvw")}
    names = [o.name for o in s.get_outputs()]
    result = dict(zip(names, s.run(None, feed), strict=True))
    frame = {name: X_gap[:, j] for j, name in enumerate("uvw")}
    assert result["label"].tolist() == model.predict(frame).tolist()
    assert_close(result["probabilities"], model.astype("float64").predict_proba(frame), "float64")


def codes(n=100, seed=11):
    """A code matrix as TableInput makes it: numeric columns 0 and 2 (with gaps), categorical
    columns 1 (4 slots) and 3 (7 slots), each slot (missing, unknown, categories) present."""
    rng = np.random.default_rng(seed)
    C = np.column_stack(
        [
            rng.normal(5.0, 2.0, n),
            np.arange(n) % 4,
            rng.exponential(3.0, n),
            (np.arange(n) * 3) % 7,
        ]
    ).astype(np.float64)
    C[rng.random(n) < 0.2, 0] = np.nan
    C[rng.random(n) < 0.1, 2] = np.nan
    C[::17, 2] = 1e3  # outliers: the smooth clip matters
    return C


@pytest.fixture
def nan_codes(monkeypatch):
    """Let predict take NaN codes: a table model's TableInput makes them (missing cells), and its
    predict passes them to RobustScale, which imputes them; a model that starts at RobustScale has
    no TableInput, so predict's check for non-finite inputs is lifted to feed the same codes."""
    monkeypatch.setattr("matnet.plan.check_finite_rows", lambda X, first_row=0: None)


@pytest.mark.parametrize("dtype", DTYPES)
def test_robust_scale_one_hot_and_embedding_on_codes(dtype, nan_codes):
    """Imputation with indicators, the smooth clip, one-hot and embedding lookups of slots."""
    robust = RobustScale(4, [0, 2], indicators=[0, 2])  # codes 1, 3 pass through first
    onehot = OneHot(6, [0], [4])  # → [code 3, numeric u0, u2, gaps 0, 2, one-hot of column 1]
    embed = Embedding(9, [0], [7], [3])
    model = matnet.Sequential(
        [robust, onehot, embed, Dense(11, 8), Activation("tanh"), Dense(8, 3)],
        loss="cross_entropy",
        dtype=dtype,
        seed=12,
    )
    model.adapt(codes().astype(dtype))
    model.classes = [3, 1, 2]
    X = codes(seed=13).astype(dtype)
    assert np.isnan(X).any()
    check_parity(model, X, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_category_layers_with_no_passthrough(dtype, nan_codes):
    """Layers that own every column (no passthrough block) and a regression head."""
    model = matnet.Sequential(
        [RobustScale(2, [0, 1]), Dense(2, 2)], loss="mse", dtype=dtype, seed=14
    )
    model.adapt(codes()[:, [0, 2]].astype(dtype))
    check_parity(model, codes(seed=15)[:, [0, 2]].astype(dtype), dtype)
    model = matnet.Sequential(
        [OneHot(2, [0, 1], [4, 7]), Embedding(11, [3], [2], [2]), Dense(12, 2)],
        loss="cross_entropy",
        dtype=dtype,
        seed=16,
    )
    X = codes(seed=17)[:, [1, 3]].astype(dtype)
    check_parity(model, X, dtype)


# --- raw tables: TableInput --------------------------------------------------------------------


def table(n, seed):
    """A raw table: numeric columns (one with gaps), a small categorical column (one-hot) with a
    rare category and missing cells, a larger one (embedded)."""
    rng = np.random.default_rng(seed)
    size = rng.normal(10.0, 4.0, n)
    size[rng.random(n) < 0.15] = np.nan
    color = rng.choice(["red", "green", "blue", "", "NA"], n).astype(object)
    color[0] = "teal"  # seen once: below min_count=2, so read as unknown
    city = rng.choice(["Oslo", "Lima", "Pune", "Kyiv", "Rome", "Baku", "null"], n)
    return {"size": size, "color": color, "weight": rng.exponential(2.0, n), "city": city}


def feeds(frame, dtype):
    """ONNX Runtime's inputs: one (N, 1) column each, floats in the graph's dtype or strings."""
    return {
        name: np.asarray(cells, dtype=object if name in ("color", "city") else dtype)[:, None]
        for name, cells in frame.items()
    }


def table_model(dtype, task="classification"):
    front = preprocessor(table(200, seed=20), one_hot_max=4, min_count=2)
    kinds = [type(layer).__name__ for layer in front]
    assert kinds == ["TableInput", "RobustScale", "OneHot", "Embedding"]
    recipe = TabularRecipe(hidden=(16,), k=2, n_frequencies=3)
    n_out = 3 if task == "classification" else 1
    loss = tabular_loss(task, recipe)
    model = tabular_model(output_width(front), n_out, loss, front=front, recipe=recipe, dtype=dtype)
    model.adapt(model.input_matrix(table(200, seed=20)))
    return randomize(model, seed=21)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_raw_table_model_matches_with_a_graph_input_per_column(task, dtype):
    """Numeric gaps, missing texts, unknown and rare categories, exactly as predict reads them."""
    model = table_model(dtype, task)
    model.classes = ["x", "y", "z"] if task == "classification" else None
    if task == "regression":  # as fit sets it: values away from 0, where relative error is defined
        model.target_scaling = (np.array([50.0]), np.array([4.0]))
    proto = matnet.to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    inputs = {i.name: i.type.tensor_type.elem_type for i in proto.graph.input}
    string, number = onnx.TensorProto.STRING, onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    assert inputs == {"size": number, "color": string, "weight": number, "city": string}
    frame = table(100, seed=22)
    frame["color"][1:4] = ["purple", "teal", "N/A"]  # unknown, rare, a missing text
    s = session(proto)
    names = [o.name for o in s.get_outputs()]
    for n in (1, 100):
        rows = {name: cells[:n] for name, cells in frame.items()}
        out = dict(zip(names, s.run(None, feeds(rows, dtype)), strict=True))
        if task == "regression":
            assert_close(out["variable"][:, 0], model.predict(rows), dtype)
        else:
            assert_close(out["probabilities"], model.predict_proba(rows), dtype)
            assert out["label"].tolist() == model.predict(rows).tolist()


def test_matnet_train_on_a_csv_with_text_and_gaps_exports(tmp_path, monkeypatch, capsys):
    """``matnet train`` preprocesses a table with text and empty cells; its model exports whole."""
    monkeypatch.chdir(tmp_path)
    frame = table(150, seed=23)
    kind = np.where(np.nan_to_num(frame["size"]) > 10, "big", "small")
    cells = {k: ["" if isinstance(v, float) and np.isnan(v) else str(v) for v in c]
             for k, c in frame.items()}  # fmt: skip
    lines = ["size,color,weight,city,kind"]
    lines += [",".join([*(cells[k][i] for k in frame), kind[i]]) for i in range(150)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    argv = ["train", "t.csv", "--target", "kind", "--epochs", "3", "--quiet", "--out", "m.st"]
    assert main(argv) == 0
    assert main(["export", "m.st", "m.onnx", "--dtype", "float64"]) == 0
    assert "inputs 4 raw columns" in capsys.readouterr().err
    model = matnet.load(tmp_path / "m.st")
    assert type(model.layers[0]).__name__ == "TableInput"
    proto = onnx.load(str(tmp_path / "m.onnx"))
    s = session(proto)
    test = table(100, seed=24)
    label, proba = s.run(None, feeds(test, "float64"))
    assert label.tolist() == model.predict(test).tolist()
    assert_close(proba, model.astype("float64").predict_proba(test), "float64")


@pytest.mark.parametrize(
    "name, words",
    [("label", "column 'label' would be an input of the ONNX"), ("", "column 0 has an empty name")],
)
def test_table_column_named_like_an_output_is_refused(name, words, tmp_path):
    frame = {name: ["a", "b", "a"], "v": [1.0, 2.0, 3.0]}
    front = preprocessor(frame)
    model = matnet.Sequential([*front, Dense(output_width(front), 2)], loss="cross_entropy")
    model.adapt(model.input_matrix(frame))
    with pytest.raises(ConversionError, match=words):
        matnet.to_onnx(model, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_table_input_after_another_layer_is_refused():
    front = preprocessor({"v": [1.0, 2.0, 3.0], "w": [0.5, 0.1, 0.2]})
    model = matnet.Sequential([Dense(2, 2), *front, Dense(2, 2)], loss="cross_entropy")
    with pytest.raises(ConversionError, match=r"layer 1, TableInput\(2 columns, 0 categorical"):
        matnet.to_onnx(model)


# --- what cannot be exported -----------------------------------------------------------------


class Doubler(Layer):
    def forward(self, A_prev, training=False, rng=None, rows=None):
        return 2 * A_prev, lambda dA: 2 * dA

    def config(self):
        return {"type": "Doubler"}


class Cube(ActivationFunction):
    name = "cube_for_onnx_test"

    def forward(self, Z, out):
        out[...] = Z**3
        return out

    def backward(self, dA, Z, A):
        return dA * 3 * Z**2


class Huber(MeanSquaredError):  # noqa: N818 (a loss, not an exception)
    name = "huber_for_onnx_test"


def _with(layer, loss="cross_entropy"):
    return matnet.Sequential([Dense(4, 3), layer, Dense(3, 2)], loss=loss)


@pytest.mark.parametrize(
    "model, words",
    [
        (lambda: _with(Doubler()), "layer 1, Doubler() (Doubler), has no ONNX export rule"),
        (lambda: _with(Activation(Cube())), "Activation(cube_for_onnx_test), has no ONNX"),
        (lambda: _with(Dropout(0.1), loss=Huber()), "loss 'huber_for_onnx_test' has no ONNX"),
        (lambda: _with(Dropout(0.1), loss=None), "the model has no loss"),
    ],
    ids=["custom-layer", "custom-activation", "custom-loss", "no-loss"],
)
def test_what_onnx_cannot_express_is_named_before_any_write(model, words, tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(ConversionError, match=words.replace("(", r"\(").replace(")", r"\)")):
        matnet.to_onnx(model(), path)
    assert list(tmp_path.iterdir()) == []


def test_unfitted_standardize_and_mixed_classes():
    model = matnet.Sequential([Standardize(4), Dense(4, 2)], loss="cross_entropy")
    with pytest.raises(NotFittedError, match=r"layer 0, Standardize\(4\), has no statistics"):
        matnet.to_onnx(model)
    model = matnet.MLP([4, 2], loss="cross_entropy")
    model.classes = [None, "b"]
    with pytest.raises(ConversionError, match="mix kinds that no ONNX tensor holds"):
        matnet.to_onnx(model)


@pytest.mark.parametrize("bad", [12, 10_000, "17", True])
def test_bad_opset(bad):
    with pytest.raises(ValueError, match=f"opset={bad!r} must be an integer from 13"):
        matnet.to_onnx(matnet.MLP([4, 2], loss="cross_entropy"), opset=bad)


def test_missing_onnx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(OptionalDependencyError, match=r"pip install 'matnet\[onnx\]'"):
        matnet.to_onnx(matnet.MLP([4, 2], loss="cross_entropy"))


# --- the command line ------------------------------------------------------------------------


def test_cli_export_runs_like_predict(tmp_path, capsys):
    model = classifier("relu", "float32", classes=["a", "b", "c"])
    matnet.save(model, tmp_path / "m.safetensors")
    out = tmp_path / "m.onnx"
    assert main(["export", str(tmp_path / "m.safetensors"), str(out), "--dtype", "float64"]) == 0
    assert "outputs label, probabilities" in capsys.readouterr().err
    X = data(seed=13)
    result = run(onnx.load(str(out)), X)
    loaded = matnet.load(tmp_path / "m.safetensors")
    assert result["label"].tolist() == loaded.predict(X).tolist()
    assert_close(result["probabilities"], loaded.astype("float64").predict_proba(X), "float64")


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    matnet.save(matnet.MLP([4, 2], loss="cross_entropy"), tmp_path / "m.safetensors")
    assert main(["export", str(tmp_path / "m.safetensors"), str(tmp_path / "no" / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "folder" in err and "does not exist" in err
    assert main(["export", str(tmp_path / "m.safetensors"), "x.onnx", "--opset", "5"]) == 2
    assert "opset=5 must be an integer from 13" in capsys.readouterr().err


@pytest.mark.parametrize("classes", [[False, True], [0.5, 1.5], [-1, 1]], ids=str)
def test_bool_float_and_int_classes_keep_their_type(classes):
    model = classifier("relu", "float64", loss="binary_cross_entropy", n_out=1, classes=classes)
    X = data(seed=14)
    label = run(matnet.to_onnx(model), X)["label"]
    expected = model.predict(X)
    assert label.dtype.kind == expected.dtype.kind
    np.testing.assert_array_equal(label, expected)
