"""The contract every registered layer, activation and loss keeps, through every path: gradcheck,
describe (explain shows its equations, and its parameter total is the model's), save → load,
checkpoint → resume bit-identical, simulated ranks equal one process, ONNX Runtime parity or a refusal
that names it, PyTorch parity or a refusal that names it.

The layers are the built-ins, test_extending's FeatureScale, and LayerNorm below: a layer written in
a test file with no edit in matnet/, which declares its equations, its ONNX rule and its PyTorch
form beside it."""

from __future__ import annotations

import re

import numpy as np
import pytest
import test_extending  # noqa: F401  (registers FeatureScale)

import matnet
from matnet import distributed
from matnet.errors import ConversionError
from matnet.export import register_onnx, register_torch, torch_module
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
    layer_types,
    register_layer,
)
from matnet.layers.base import Description, Equation, Symbols, shape_text
from matnet.tabular import preprocessor

# --- a layer from a user's own file ------------------------------------------------------------


@register_layer
class LayerNorm(Layer):
    """``Y = (A − μ) / sqrt(σ² + ε) ⊙ g + β``, μ and σ² per row."""

    owns_output = False

    def __init__(self, n_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.n_features, self.eps = int(n_features), float(eps)
        self.g = self.beta = self.dg = self.dbeta = None

    def param_specs(self):
        return [("g", (1, self.n_features), False), ("beta", (1, self.n_features), False)]

    def bind(self, params, grads):
        self.g, self.beta = params["g"], params["beta"]
        self.dg, self.dbeta = grads["g"], grads["beta"]

    def initialize(self, rng):
        self.g[...] = 1.0 + 0.1 * rng.standard_normal(self.g.shape)
        self.beta[...] = 0.1 * rng.standard_normal(self.beta.shape)

    def output_width(self, n_in):
        if n_in != self.n_features:
            raise ValueError(f"LayerNorm({self.n_features}) follows a layer of width {n_in}")
        return n_in

    def forward(self, A_prev, training=False, rng=None, rows=None):
        mu = A_prev.mean(axis=1, keepdims=True)
        inv = 1.0 / np.sqrt(A_prev.var(axis=1, keepdims=True) + self.eps)
        N = (A_prev - mu) * inv
        g = self.g

        def backward(dY):
            self.dg[...] = (dY * N).sum(axis=0, keepdims=True)
            self.dbeta[...] = dY.sum(axis=0, keepdims=True)
            dN = dY * g
            d = dN.shape[1]
            return (
                inv
                / d
                * (d * dN - dN.sum(axis=1, keepdims=True) - N * (dN * N).sum(axis=1, keepdims=True))
            )

        return N * g + self.beta, backward

    def describe(self, symbols: Symbols) -> Description:
        A, ell, shape = symbols.input, symbols.index, shape_text(symbols.n, symbols.n_in)
        Y = f"Y{ell}"
        return Description(
            output=Y,
            forward=[
                Equation(f"N = ({A} − μ) ⊘ sqrt(σ² + ε)", shape, "μ, σ² per row", "N"),
                Equation(f"{Y} = N ⊙ g{ell} + β{ell}", shape, "", Y),
            ],
            backward=[
                Equation(f"dg{ell} = Σrows d{Y} ⊙ N", shape_text(1, symbols.n_in)),
                Equation(f"dβ{ell} = Σrows d{Y}", shape_text(1, symbols.n_in)),
                Equation(
                    f"d{A} = (d·dN − Σcols dN − N ⊙ Σcols(dN ⊙ N)) ⊘ (d·sqrt(σ² + ε))",
                    shape,
                    f"dN = d{Y} ⊙ g{ell}",
                    f"d{A}",
                ),
            ],
            parameters=[
                (f"g{ell}", "g", f"g{ell} {symbols.n_in}"),
                (f"β{ell}", "beta", f"β{ell} {symbols.n_in}"),
            ],
        )

    def config(self):
        return {"type": "LayerNorm", "n_features": self.n_features, "eps": self.eps}


@register_onnx(LayerNorm)
def _layer_norm_onnx(g, layer, x, index):
    mean = g.op("ReduceMean", [x], f"mu{index}", axes=[1], keepdims=1)
    centred = g.op("Sub", [x, mean])
    var = g.op("ReduceMean", [g.op("Mul", [centred, centred])], axes=[1], keepdims=1)
    std = g.op("Sqrt", [g.op("Add", [var, g.const(f"eps{index}", layer.eps)])])
    normed = g.op("Div", [centred, std])
    scaled = g.op("Mul", [normed, g.const(f"g{index}", np.asarray(layer.g).reshape(-1))])
    return g.op("Add", [scaled, g.const(f"beta{index}", np.asarray(layer.beta).reshape(-1))])


@register_torch(LayerNorm)
def _layer_norm_torch(layer, torch):
    def forward(m, x):
        mu = x.mean(dim=1, keepdim=True)
        var = ((x - mu) ** 2).mean(dim=1, keepdim=True)
        return (x - mu) / torch.sqrt(var + layer.eps) * m.g + m.beta

    return torch_module(
        torch, "LayerNorm", forward, {"g": np.asarray(layer.g), "beta": np.asarray(layer.beta)}
    )


class Opaque(Layer):
    """A layer that gives no equations: explain must say so, by name."""

    def forward(self, A_prev, training=False, rng=None, rows=None):
        return 2.0 * A_prev, lambda dA: 2.0 * dA


# --- one small model per layer type -------------------------------------------------------------

RNG = np.random.default_rng(0)


def _numeric(n, d=3):
    return np.random.default_rng(n + d).normal(size=(n, d))


def _codes(n):
    rng = np.random.default_rng(n)
    X = np.column_stack([rng.integers(2, 6, n), rng.normal(size=n), rng.normal(size=n)])
    return X.astype(np.float64)  # (gaps in codes: the TableInput case, whose RobustScale has some)


def _table(n):
    rng = np.random.default_rng(n)
    return {
        "size": rng.normal(size=n).round(3),
        "colour": np.asarray(rng.choice(["red", "green", "blue"], n), dtype=object),
        "gappy": np.where(np.arange(n) % 5 == 1, np.nan, rng.normal(size=n)),
    }


def _model(layers):
    return matnet.Sequential(layers, dtype="float64", seed=3, loss="cross_entropy")


def _ensemble():
    return [
        BatchEnsemble(3, 4, 2, shared_input=True),
        Activation("relu"),
        BatchEnsemble(4, 2, 2, init="glorot_normal"),
        EnsembleMean(2),
    ]


CASES = {
    "Dense": (lambda: _model([Dense(3, 4), Activation("tanh"), Dense(4, 2)]), _numeric),
    "Activation": (lambda: _model([Dense(3, 4), Activation("gelu"), Dense(4, 2)]), _numeric),
    "Dropout": (
        lambda: _model([Dense(3, 4), Activation("relu"), Dropout(0.25), Dense(4, 2)]),
        _numeric,
    ),
    "Standardize": (lambda: _model([Standardize(3), Dense(3, 2)]), _numeric),
    "TableInput": (
        lambda: _model([*(layers := preprocessor(_table(40))), Dense(_width(layers), 2)]),
        _table,
    ),
    "RobustScale": (lambda: _model([RobustScale(3, [1, 2], [1]), Dense(4, 2)]), _codes),
    "OneHot": (lambda: _model([OneHot(3, [0], [6]), Dense(8, 2)]), _codes),
    "Embedding": (lambda: _model([Embedding(3, [0], [6], [2]), Dense(4, 2)]), _codes),
    "Scale": (lambda: _model([Scale(3), Dense(3, 2)]), _numeric),
    "Periodic": (lambda: _model([Periodic(3, 2, 0.1), Dense(15, 2)]), _numeric),
    "PeriodicLinear": (lambda: _model([PeriodicLinear(3, 4, 2, 0.1), Dense(9, 2)]), _numeric),
    "BatchEnsemble": (lambda: _model(_ensemble()), _numeric),
    "EnsembleMean": (lambda: _model(_ensemble()), _numeric),
    "FeatureScale": (
        lambda: _model([Dense(3, 3), test_extending.FeatureScale(3), Dense(3, 2)]),
        _numeric,
    ),
    "LayerNorm": (lambda: _model([Dense(3, 4), LayerNorm(4), Dense(4, 2)]), _numeric),
}


def _width(layers):
    return matnet.tabular.output_width(layers)


def _rows(X, idx):
    return {k: v[idx] for k, v in X.items()} if isinstance(X, dict) else X[idx]


def _data(name, n=40):
    make, rows = CASES[name]
    X = rows(n)
    y = np.random.default_rng(n).integers(0, 2, n)
    model = make()
    model.adapt(model.input_matrix(X, finite=False))
    return model, X, y


def test_every_registered_layer_has_a_contract_case():
    assert set(layer_types()) == set(CASES), set(layer_types()) ^ set(CASES)


LAYERS = sorted(CASES)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("batch", [1, 6])
def test_gradcheck(name, batch):
    model, X, y = _data(name)
    error = matnet.gradcheck(model, _rows(X, slice(0, batch)), y[:batch])
    assert error <= 1e-6, f"{name} at batch {batch}: relative error {error:.2e}"


def _parameter_total(text):
    line = next(line for line in text.splitlines() if line.startswith("Parameters:"))
    total, parts = line.removeprefix("Parameters: ").split(" = ", 1)
    numbers = [int(part.split()[-1].replace(",", "")) for part in parts.split(" + ")]
    return int(total.replace(",", "")), sum(numbers)


@pytest.mark.parametrize("name", LAYERS)
def test_describe_and_explain(name):
    model, X, y = _data(name)
    for layer in model.layers:
        assert layer.describes_itself, f"{type(layer).__name__} gives no equations"
    text = matnet.explain(model, _rows(X, slice(0, 4)), y[:4], print_fn=None)
    assert "no equations given" not in text
    total, parts = _parameter_total(text)
    assert total == parts == model.n_params


def test_a_layer_without_equations_is_shown_opaque_and_its_total_holds():
    model = _model([Dense(3, 4), Opaque(), LayerNorm(4), Dense(4, 2)])
    text = matnet.explain(model, 4, print_fn=None)
    assert "Opaque: no equations given (opaque)" in text
    assert "dZ1 = dZ1'" not in text  # never an identity it may not be
    total, parts = _parameter_total(text)
    assert total == parts == model.n_params


@pytest.mark.parametrize("name", LAYERS)
def test_save_and_load(name, tmp_path):
    model, X, y = _data(name)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    matnet.save(model, tmp_path / "m.st")
    loaded = matnet.load(tmp_path / "m.st")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("name", LAYERS)
def test_checkpoint_resume_is_bit_identical(name, tmp_path):
    model, X, y = _data(name)
    options = dict(epochs=3, batch_size=8, seed=4, verbose=0)
    straight = model.copy()
    straight.fit(X, y, **options)
    first = model.copy()
    first.fit(X, y, **{**options, "epochs": 1}, checkpoint=tmp_path / "c.ckpt")
    resumed = model.copy()
    resumed.fit(X, y, **options, checkpoint=tmp_path / "c.ckpt", resume=True)
    np.testing.assert_array_equal(resumed.flat_params, straight.flat_params)


@pytest.mark.parametrize("name", LAYERS)
def test_simulated_ranks_equal_one_process(name):
    model, X, y = _data(name)
    options = dict(epochs=2, batch_size=8, seed=4, verbose=0)
    single = model.copy()
    single.fit(X, y, **options)

    def rank_main(comm):
        mine = model.copy()
        mine.fit(X, y, comm=comm, **options)
        return mine.flat_params

    for params in distributed.simulate(2, rank_main):
        np.testing.assert_allclose(params, single.flat_params, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", LAYERS)
def test_onnx_parity_or_a_refusal_by_name(name):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, X, y = _data(name)
    try:
        proto = matnet.to_onnx(model)
    except ConversionError as exc:
        _assert_refused_by_name(model, exc, "ONNX export rule")
        return
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    if isinstance(X, dict):
        feed = {
            k: (v.reshape(-1, 1).astype(str) if v.dtype == object else v.reshape(-1, 1))
            for k, v in X.items()
        }
    else:
        feed = {"X": X}
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, feed), strict=True))["probabilities"]
    expected = model.predict_proba(X)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9 * np.abs(expected).max())


@pytest.mark.parametrize("name", LAYERS)
def test_pytorch_parity_or_a_refusal_by_name(name):
    torch = pytest.importorskip("torch")
    model, X, y = _data(name)
    try:
        module = matnet.to_torch(model)
    except ConversionError as exc:
        _assert_refused_by_name(model, exc, "PyTorch module")
        return
    codes = model.input_matrix(X, finite=False)
    with torch.no_grad():
        got = module(torch.from_numpy(codes)).numpy()
    expected = model.logits(X)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def _assert_refused_by_name(model, exc, what):
    """A refusal names the layer, its type, and what it lacks; built-ins are never refused."""
    found = re.match(rf"layer (\d+), .* \((\w+)\), has no {what}", str(exc))
    assert found, str(exc)
    index, kind = int(found.group(1)), found.group(2)
    assert type(model.layers[index]).__name__ == kind
    # Raw text cells are no tensor: a table model leaves by ONNX, which takes its columns.
    allowed = kind == "TableInput" and what == "PyTorch module"
    assert allowed or type(model.layers[index]).__module__.startswith("test_"), (
        f"built-in {kind} refused"
    )


# --- activations and losses ----------------------------------------------------------------------


ACTIVATIONS = sorted(
    {matnet.activations.get_activation(n).name for n in matnet.activations.activation_names()}
)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation(name, tmp_path):
    model = _model([Dense(3, 4), Activation(name), Dense(4, 2)])
    X, y = _numeric(12), np.arange(12) % 2
    assert matnet.gradcheck(model, X, y) <= 1e-6
    total, parts = _parameter_total(matnet.explain(model, X, y, print_fn=None))
    assert total == parts == model.n_params
    matnet.save(model, tmp_path / "m.st")
    np.testing.assert_array_equal(matnet.load(tmp_path / "m.st").logits(X), model.logits(X))
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    try:
        proto = matnet.to_onnx(model)
    except ConversionError as exc:  # an activation registered outside matnet has no ONNX rule
        assert f"Activation({name})" in str(exc)
        return
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"X": X})[0]
    np.testing.assert_allclose(got, model.predict_proba(X), rtol=0, atol=1e-9)


LOSSES = sorted({matnet.losses.get_loss(n).name for n in matnet.losses.loss_names()})


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss(name, tmp_path):
    loss = matnet.losses.get_loss(name)
    k = 1 if not loss.exclusive and loss.task == "classification" else 3
    k = 1 if name == "poisson" else k
    model = matnet.Sequential([Dense(3, 5), Activation("tanh"), Dense(5, k)], dtype="float64",
                              seed=1, loss=name)  # fmt: skip
    X = _numeric(10)
    y = loss.sample_targets(np.random.default_rng(1), 10, k)
    y = np.abs(np.round(y)) if name == "poisson" else y
    assert matnet.gradcheck(model, X, y) <= 1e-6
    matnet.save(model, tmp_path / "m.st")
    np.testing.assert_array_equal(matnet.load(tmp_path / "m.st").predict(X), model.predict(X))
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    try:
        proto = matnet.to_onnx(model)
    except ConversionError as exc:
        assert name in str(exc) or type(loss).__name__ in str(exc)
        return
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"X": X}),
                       strict=True))  # fmt: skip
    if "probabilities" in outputs:
        P = model.predict_proba(X)
        got = outputs["probabilities"]
        got = got[:, 1:] if P.shape[1] == 1 else got  # one sigmoid output: P(second class)
        np.testing.assert_allclose(got, P, rtol=0, atol=1e-9)
    else:
        expected = np.asarray(model.predict(X)).reshape(len(X), -1)
        got = outputs["variable"].reshape(len(X), -1)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
