"""The tabular recipe's ingredients: Scale, Periodic, BatchEnsemble, EnsembleMean, label smoothing,
the cos-log schedule, and the recipe behind TabularClassifier / TabularRegressor and `matnet train`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tolerance import assert_close

import matnet
from matnet.explain import explain
from matnet.gradcheck import gradcheck
from matnet.layers import (
    Activation,
    BatchEnsemble,
    Dense,
    EnsembleMean,
    Periodic,
    PeriodicLinear,
    Scale,
    Standardize,
    layer_from_config,
)
from matnet.losses import SoftmaxCrossEntropy, get_loss
from matnet.model import Sequential
from matnet.schedules import CosLog, get_schedule
from matnet.tabular.recipe import TabularRecipe, tabular_layers, tabular_loss, tabular_model

RNG = np.random.default_rng(0)


def _ensemble(k: int = 3, d: int = 4, h: int = 5, c: int = 3) -> Sequential:
    return Sequential(
        [
            BatchEnsemble(d, h, k, shared_input=True),
            Activation("tanh"),
            BatchEnsemble(h, h, k),
            Activation("tanh"),
            BatchEnsemble(h, c, k),
            EnsembleMean(k),
        ],
        dtype=np.float64,
        seed=1,
        loss="softmax_cross_entropy",
    )


def _members(model: Sequential, k: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Member j's plain weights: W_j = diag(r_j) · W · diag(s_j), b_j."""
    out = []
    for j in range(k):
        layers = []
        for layer in model.layers:
            if isinstance(layer, BatchEnsemble):
                W = layer.R[j][:, None] * layer.W * layer.S[j][None, :]
                layers.append((W, layer.b[j][None, :].copy()))
        out.append(layers)
    return out


def test_batch_ensemble_is_k_separate_mlps_forward_and_backward():
    k, d, c, n = 3, 4, 3, 6
    model = _ensemble(k, d, c=c)
    # Adapters away from their initial values, so every member's weights differ.
    for layer in model.layers:
        if isinstance(layer, BatchEnsemble):
            layer.R[...] = RNG.normal(size=layer.R.shape)
            layer.S[...] = RNG.normal(size=layer.S.shape)
            layer.b[...] = RNG.normal(size=layer.b.shape)
    X = RNG.normal(size=(n, d))
    G = RNG.normal(size=(n, c))  # an arbitrary upstream gradient of the mean output
    Z, backward = model.forward(X, training=True, rng=np.random.default_rng(0))
    backward(G.copy())
    members = _members(model, k)

    # The plain loop: k MLPs, each forward and backward on its own; the output is their mean.
    outs, grads = [], []
    for layers in members:
        A, cache = X, []
        for i, (W, b) in enumerate(layers):
            Zi = A @ W + b
            cache.append((A, Zi))
            A = np.tanh(Zi) if i < len(layers) - 1 else Zi
        outs.append(A)
        dA, member_grads = G / k, []
        for i in reversed(range(len(layers))):
            A_prev, Zi = cache[i]
            dZ = dA if i == len(layers) - 1 else dA * (1 - np.tanh(Zi) ** 2)
            member_grads.append((A_prev.T @ dZ, dZ.sum(axis=0)))
            dA = dZ @ layers[i][0].T
        grads.append(member_grads[::-1])
    np.testing.assert_allclose(Z, np.mean(outs, axis=0), rtol=0, atol=1e-12)

    # Chain rule on W_j = diag(r_j) W diag(s_j): dW = Σ_j diag(r_j) dW_j diag(s_j),
    # dr_j = rowsum(dW_j ⊙ W diag(s_j)), ds_j = colsum(dW_j ⊙ diag(r_j) W), db_j = db_j.
    for li, layer in enumerate(l for l in model.layers if isinstance(l, BatchEnsemble)):
        dW = sum(layer.R[j][:, None] * grads[j][li][0] * layer.S[j][None, :] for j in range(k))
        np.testing.assert_allclose(layer.dW, dW, rtol=0, atol=1e-12)
        for j in range(k):
            dWj, dbj = grads[j][li]
            np.testing.assert_allclose(layer.db[j], dbj, rtol=0, atol=1e-12)
            dr = (dWj * layer.W * layer.S[j][None, :]).sum(axis=1)
            ds = (dWj * layer.R[j][:, None] * layer.W).sum(axis=0)
            np.testing.assert_allclose(layer.dR[j], dr, rtol=0, atol=1e-12)
            np.testing.assert_allclose(layer.dS[j], ds, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "layers",
    [
        lambda: [Scale(4), Dense(4, 3)],
        lambda: [Dense(4, 4), Periodic(4, 3, sigma=0.5), Dense(28, 3)],
        lambda: [Periodic(4, 2, sigma=0.5, include_input=False), Dense(16, 3)],
        lambda: _ensemble(2, 4).layers,
        lambda: [Scale(4, gain=6.0), Dense(4, 3)],
        lambda: [Dense(4, 4), PeriodicLinear(4, 5, 3, sigma=0.5), Dense(16, 3)],
        lambda: [Dense(4, 5), PeriodicLinear(5, 3, 2, sigma=0.5, n_embedded=2), Dense(9, 3)],
        lambda: [
            Scale(4, gain=3.0),
            PeriodicLinear(4, 3, 2, 0.3),
            BatchEnsemble(12, 6, 2, True),
            Activation("gelu"),
            BatchEnsemble(6, 3, 2),
            EnsembleMean(2),
        ],
        lambda: [
            Scale(4),
            Periodic(4, 2, 0.3),
            BatchEnsemble(20, 6, 4, True),
            Activation("relu"),
            BatchEnsemble(6, 3, 4),
            EnsembleMean(4),
        ],
    ],
)
def test_new_layers_pass_the_gradient_check(layers):
    model = Sequential(layers(), dtype=np.float64, seed=2, loss=SoftmaxCrossEntropy(0.1))
    X, y = RNG.normal(size=(7, 4)), RNG.integers(0, 3, 7)
    assert gradcheck(model, X, y) < 1e-6


def test_label_smoothing_value_and_gradient():
    Z, y, eps = RNG.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2]), 0.2
    value, G = SoftmaxCrossEntropy(label_smoothing=eps)(Z.copy(), y)
    Y = np.eye(4)[y] * (1 - eps) + eps / 4
    logP = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    assert value == pytest.approx(-(Y * logP).sum() / 5, rel=1e-12)
    np.testing.assert_allclose(G, (np.exp(logP) - Y) / 5, atol=1e-14)
    soft_value, soft_G = SoftmaxCrossEntropy(label_smoothing=eps)(Z.copy(), np.eye(4)[y])
    assert soft_value == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(soft_G, G, atol=1e-14)
    assert get_loss(SoftmaxCrossEntropy(eps).config()).label_smoothing == eps
    with pytest.raises(ValueError, match="label_smoothing=1"):
        SoftmaxCrossEntropy(label_smoothing=1)


def test_coslog_schedule():
    sched = get_schedule("coslog", total_epochs=100)
    assert isinstance(sched, CosLog)
    rates = [sched.learning_rate(e, 1.0) for e in range(100)]
    assert all(0 <= r <= 1 for r in rates) and rates[-1] < 0.01
    # Four warm restarts: the rate returns near zero at t = (2^j - 1) / 15.
    t = np.array([(e + 0.5) / 100 for e in range(100)])
    expected = 0.5 - 0.5 * np.cos(2 * math.pi * np.log2(1 + 15 * t))
    np.testing.assert_allclose(rates, expected, atol=1e-12)
    with pytest.raises(ValueError, match="cycles=0"):
        CosLog(10, cycles=0)


def test_layers_rebuild_from_config_and_explain_shows_the_ensemble():
    model = tabular_model(5, 3, tabular_loss("classification"), recipe=TabularRecipe(k=4))
    for layer in model.layers:
        again = layer_from_config(layer.config())
        assert again.config() == layer.config()
    text = explain(model, 8, print_fn=None)
    assert "one product for all 4 members" in text
    assert "diag(r" in text and "EnsembleMean" not in text.split("\n")[0]


def test_bad_layer_arguments_name_the_value():
    with pytest.raises(ValueError, match="k=0"):
        BatchEnsemble(3, 4, k=0)
    with pytest.raises(ValueError, match="sigma=-1"):
        Periodic(3, sigma=-1)
    with pytest.raises(ValueError, match="n_out=0"):
        PeriodicLinear(3, n_out=0)
    with pytest.raises(ValueError, match="gain=0"):
        Scale(3, gain=0)
    with pytest.raises(ValueError, match="embedding='pl'; choose one of pbld, periodic"):
        TabularRecipe(embedding="pl")
    with pytest.raises(ValueError, match="width 7"):
        Sequential([Dense(2, 7), EnsembleMean(2)])


def test_tabular_estimators_learn_and_save(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris

    from matnet.sklearn import TabularClassifier, TabularRegressor

    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    small = dict(hidden_layer_sizes=(16,), n_ensemble=2, max_iter=30, random_state=0)
    clf = TabularClassifier(**small).fit(X, labels)
    assert clf.score(X, labels) > 0.9
    assert set(clf.predict(X[:5])) <= set(labels)
    assert_close(clf.predict_proba(X[:3]).sum(axis=1), 1.0, rtol=1e-5)
    path = tmp_path / "clf.safetensors"
    matnet.save(clf.model_, path)
    again = matnet.load(path)
    assert_close(again.predict_proba(X), clf.predict_proba(X), rtol=1e-6)

    target = X[:, 0] * 1000 + 5000  # a target far from unit scale
    reg = TabularRegressor(**small).fit(X[:, 1:], target)
    assert reg.score(X[:, 1:], target) > 0.6
    assert_close(reg.model_.predict(X[:, 1:]), reg.predict(X[:, 1:]), rtol=1e-5)


def test_mlp_estimators_keep_scikit_learns_defaults():
    pytest.importorskip("sklearn")
    from sklearn.neural_network import MLPClassifier as SkMLP

    from matnet.sklearn import MLPClassifier

    ours, theirs = MLPClassifier().get_params(), SkMLP().get_params()
    assert {k: ours[k] for k in theirs} == theirs


def test_tabular_estimators_take_a_raw_table():
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    from pathlib import Path

    from matnet.sklearn import TabularClassifier, TabularRegressor

    frame = pd.read_csv(Path(__file__).parent / "data" / "penguins.csv")
    y = frame.pop("species").to_numpy()
    small = dict(hidden_layer_sizes=(16,), n_ensemble=2, max_iter=20, random_state=0)
    clf = TabularClassifier(**small).fit(frame, y)  # text categories and gaps, as they come
    assert clf.score(frame, y) > 0.9
    assert clf.model_.takes_table
    np.testing.assert_array_equal(clf.model_.predict(frame), clf.predict(frame))
    mass = frame.pop("body_mass_g")
    keep = mass.notna().to_numpy()
    reg = TabularRegressor(**small).fit(frame[keep], mass[keep].to_numpy())
    assert reg.score(frame[keep], mass[keep].to_numpy()) > 0.5
    with pytest.raises(ValueError, match="columns"):
        reg.predict(frame.iloc[:, :3])


def test_matnet_train_defaults_to_the_tabular_recipe(tmp_path, monkeypatch, capsys):
    from matnet.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "iris", "--epochs", "8", "--quiet", "--out", "m.st"]) == 0
    out = capsys.readouterr().out
    assert "tabular recipe: 4 members" in out
    model = matnet.load(tmp_path / "m.st")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:3] == ["Standardize", "Scale", "PeriodicLinear"] and kinds[-1] == "EnsembleMean"
    assert model.loss.label_smoothing == 0.1
    training = model.metadata["training"]
    assert training["optimizer"] == {"name": "adamw", "beta_2": 0.95, "weight_decay": 0.3}
    assert training["epochs_run"] == 8 and 1 <= training["best_epoch"] <= 8
    assert training["learning_rate"] == 6e-3  # the cos-log schedule's peak
    assert (
        main(["train", "iris", "--recipe", "mlp", "--epochs", "2", "--quiet", "--out", "p.st"]) == 0
    )
    assert [type(layer).__name__ for layer in matnet.load(tmp_path / "p.st").layers][1] == "Dense"


@pytest.mark.parametrize(
    "params, match",
    [
        ({"dtype": "float16"}, "The 'dtype' parameter of TabularClassifier must be a str among"),
        ({"validation_fraction": 1.0}, r"'validation_fraction' parameter .* range \[0.0, 1.0\)"),
        ({"n_ensemble": 0}, "'n_ensemble' parameter"),
        ({"decimal": ";"}, "'decimal' parameter"),
    ],
)
def test_tabular_estimator_parameters_are_checked_before_any_work(params, match):
    pytest.importorskip("sklearn")
    from matnet.sklearn import TabularClassifier

    X, y = RNG.normal(size=(20, 3)), np.arange(20) % 2
    est = TabularClassifier(**params)
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)
    assert not hasattr(est, "model_")


def test_periodic_linear_is_a_linear_map_of_phase_shifted_cosines_per_column():
    """The layer against its definition, one column at a time, and its config round trip."""
    layer = PeriodicLinear(3, n_frequencies=4, n_out=2, sigma=0.4)
    model = Sequential([layer], dtype=np.float64, seed=1)
    X = RNG.normal(size=(6, 3))
    E = model.logits(X)
    for j in range(3):
        V = 2 * math.pi * X[:, [j]] * layer.f[j] + layer.phi[j]
        H = np.cos(V) @ layer.L[j] + layer.c[j]
        np.testing.assert_allclose(E[:, 3 * j], X[:, j], atol=1e-15)
        np.testing.assert_allclose(E[:, 3 * j + 1 : 3 * j + 3], H, atol=1e-12)
    clone = layer_from_config(layer.config())
    assert isinstance(clone, PeriodicLinear) and clone.config() == layer.config()


def test_periodic_linear_embeds_the_leading_columns_and_passes_the_rest():
    """n_embedded=2 of 5: the first two columns as the full layer embeds them, then columns 2..4
    unchanged; the parameters are those of the two embedded columns only."""
    layer = PeriodicLinear(5, n_frequencies=4, n_out=2, sigma=0.4, n_embedded=2)
    model = Sequential([layer], dtype=np.float64, seed=1)
    assert layer.f.shape == (2, 4) and layer.L.shape == (2, 4, 2) and layer.output_width(5) == 9
    X = RNG.normal(size=(6, 5))
    E = model.logits(X)
    full = PeriodicLinear(2, n_frequencies=4, n_out=2, sigma=0.4)
    reference = Sequential([full], dtype=np.float64, seed=0)
    reference.flat_params[...] = model.flat_params
    np.testing.assert_array_equal(E[:, :6], reference.logits(X[:, :2]))
    np.testing.assert_array_equal(E[:, 6:], X[:, 2:])
    clone = layer_from_config(layer.config())
    assert clone.config() == layer.config() and clone.output_width(5) == 9
    assert "embeds 2" in repr(layer)
    for bad in (0, 6, 2.5):
        with pytest.raises(ValueError, match="n_embedded"):
            PeriodicLinear(5, n_embedded=bad)


def test_a_model_file_without_n_embedded_embeds_every_column():
    """Files written before n_embedded existed have no such key: every column is embedded."""
    config = PeriodicLinear(3, n_frequencies=4, n_out=2).config()
    del config["n_embedded"]
    assert layer_from_config(config).output_width(3) == 9


def test_recipe_can_embed_only_the_numeric_columns_of_a_raw_table():
    """embed_columns="numeric" (the default): behind the table preprocessing, PBLD covers
    RobustScale's columns, which come first; indicators and one-hot blocks pass through. "all"
    embeds every column."""
    import pandas as pd

    from matnet.tabular import numeric_width, output_width, preprocessor

    frame = pd.DataFrame(
        {
            "a": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
            "colour": ["red", "blue", "red", "green", None, "blue"],
            "b": [0.5, 0.1, 0.3, 0.2, 0.9, 0.4],
        }
    )
    front = preprocessor(frame)
    width = output_width(front)  # a, b, a's indicator, then colour's one-hot block (2 + 3)
    assert numeric_width(front) == 2 and width == 8
    assert numeric_width([Standardize(4)]) == 4
    numeric = tabular_layers(width, 2, TabularRecipe(), front)
    embedding = next(layer for layer in numeric if isinstance(layer, PeriodicLinear))
    assert embedding.d == 2 and embedding.output_width(width) == 2 * 4 + 6
    every = tabular_layers(width, 2, TabularRecipe(embed_columns="all"), front)
    assert next(layer for layer in every if isinstance(layer, PeriodicLinear)).d == width
    with pytest.raises(ValueError, match="embed_columns"):
        TabularRecipe(embed_columns="some")


def test_scale_gain_multiplies_the_step_under_adam():
    """s = gain · θ: Adam's first step moves θ by about lr whatever the gradient's size, so the
    applied scale moves gain times as far, RealMLP's learning-rate factor for its scale layer."""
    X, y = RNG.normal(size=(32, 3)), RNG.normal(size=(32, 1))
    moved = []
    for gain in (1.0, 6.0):
        layer = Scale(3, gain=gain)
        model = Sequential([layer, Dense(3, 1)], dtype=np.float64, seed=0, loss="mse")
        before = layer.s * gain
        model.fit(X, y, optimizer="adam", learning_rate=1e-3, epochs=1, batch_size=32)
        moved.append(np.abs(layer.s * gain - before))
    np.testing.assert_allclose(moved[1], 6 * moved[0], rtol=1e-4)  # Adam's ε


def test_the_recipe_trains_on_one_blas_thread_unless_told():
    """Its products are too small to share (benchmarks/RESULTS-threads.md)."""
    pytest.importorskip("threadpoolctl")
    from matnet.cli import build_parser
    from matnet.cli.commands import _settings
    from matnet.tabular import tabular_fit_options

    assert tabular_fit_options()["threads"] == 1
    assert "threads" not in _settings(build_parser().parse_args(["train", "iris"])).fit_options
    told = _settings(build_parser().parse_args(["train", "iris", "--threads", "2"]))
    assert told.fit_options["threads"] == 2
