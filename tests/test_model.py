"""Sequential and MLP: structure, parameter views, initializers, dropout, summary, fast path."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from tolerance import assert_close

import matnet
from matnet import Activation, Dense, Dropout, Sequential
from matnet import functional as F


def test_mlp_structure_keys_and_views():
    model = matnet.MLP([64, 32, 10], "relu", seed=0)
    assert [repr(layer) for layer in model.layers] == [
        "Dense(64 -> 32)",
        "Activation(relu)",
        "Dense(32 -> 10)",
    ]
    assert list(model.params) == ["0.W", "0.b", "2.W", "2.b"]
    assert model.params["0.W"].shape == (64, 32) and model.params["0.b"].shape == (1, 32)
    assert model.n_params == 64 * 32 + 32 + 32 * 10 + 10 == model.flat_params.size
    assert model.n_decay == 64 * 32 + 32 * 10
    # Views: writing the flat vector changes the layer's W, and the weights come first.
    model.flat_params[0] = 123.0
    assert model.layers[0].W[0, 0] == 123.0
    assert np.shares_memory(model.grads["2.W"], model.flat_grads)
    assert model.slices["0.W"] == slice(0, 64 * 32)


@pytest.mark.parametrize(
    "init,expected_var",
    [
        ("he_normal", 2 / 400),
        ("he_uniform", 2 / 400),
        ("glorot_normal", 2 / 700),
        ("glorot_uniform", 2 / 700),
    ],
)
def test_initializers_have_the_right_variance(init, expected_var):
    model = Sequential([Dense(400, 300, init=init)], dtype="float64", seed=0)
    W = model.params["0.W"]
    assert W.var() == pytest.approx(expected_var, rel=0.02)
    assert np.all(model.params["0.b"] == 0)
    if init.endswith("uniform"):
        assert np.abs(W).max() <= np.sqrt(3 * expected_var)


def test_seed_and_generator_give_the_same_weights_in_both_dtypes():
    a = matnet.MLP([5, 4, 3], seed=7, dtype="float32")
    b = matnet.MLP([5, 4, 3], seed=np.random.default_rng(7), dtype="float64")
    np.testing.assert_array_equal(a.flat_params, b.flat_params.astype(np.float32))
    c = matnet.MLP([5, 4, 3], seed=8)
    assert not np.array_equal(a.flat_params, c.flat_params)


def test_default_init_follows_the_activation():
    model = matnet.MLP([3, 4, 4, 2], ["relu", "tanh"])
    assert [layer.init for layer in model.dense_layers] == [
        "he_normal",
        "glorot_uniform",
        "he_normal",
    ]


def test_inverted_dropout(rng):
    layer = Dropout(0.25)
    A = np.ones((2000, 50))
    out, backward = layer.forward(A, training=True, rng=rng)
    kept = out != 0
    assert kept.mean() == pytest.approx(0.75, abs=0.01)
    np.testing.assert_allclose(out[kept], 1 / 0.75)
    assert out.mean() == pytest.approx(1.0, abs=0.02)
    dA = backward(np.ones_like(A))
    np.testing.assert_array_equal(dA != 0, kept)
    same, _ = layer.forward(A, training=False)
    assert same is A
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.0)


def test_fast_path_matches_the_article_formulas(rng):
    """Layers compute in reused buffers; the numbers are those of matnet.functional."""
    for act in ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "identity"]:
        model = Sequential([Dense(6, 5), Activation(act), Dense(5, 3)], dtype="float64", seed=3)
        X = rng.normal(size=(9, 6))
        W1, b1, W2, b2 = (model.params[k] for k in ("0.W", "0.b", "2.W", "2.b"))
        Z1 = F.linear_forward(X, W1, b1)
        A1 = F.linear_activation_forward(X, W1, b1, act)
        Z2 = F.linear_forward(A1, W2, b2)
        Z, backward = model.forward(X)
        np.testing.assert_allclose(Z, Z2, rtol=1e-12)
        dZ2 = rng.normal(size=Z2.shape)
        dA1, dW2, db2 = F.linear_backward(dZ2, A1, W2)
        act_fn, derivative = F.ACTIVATIONS[act]
        dZ1 = F.softmax_backward(dA1, A1) if derivative is None else dA1 * derivative(Z1)
        _, dW1, db1 = F.linear_backward(dZ1, X, W1)
        backward(dZ2.copy())
        for key, expected in (("0.W", dW1), ("0.b", db1), ("2.W", dW2), ("2.b", db2)):
            np.testing.assert_allclose(model.grads[key], expected, rtol=1e-10, atol=1e-12)


def test_summary_lists_shapes_and_counts(capsys):
    model = matnet.MLP([64, 32, 10], loss="cross_entropy")
    text = model.summary()
    assert text == capsys.readouterr().out.rstrip("\n")
    assert "Dense(64 -> 32)" in text and "(64, 32)" in text and "(1, 32)" in text
    assert "2,080" in text and "2,410 parameters (float32, loss softmax_cross_entropy)" in text


def test_predict_proba_needs_a_loss_and_pickle_round_trip(rng):
    model = matnet.MLP([4, 3], seed=0)
    with pytest.raises(matnet.NotFittedError, match="loss"):
        model.predict_proba(rng.normal(size=(2, 4)))
    model.loss = matnet.get_loss("cross_entropy")
    X = rng.normal(size=(5, 4))
    P = model.predict_proba(X)
    assert_close(P.sum(axis=1), 1.0, rtol=1e-5)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict_proba(X), P)


def test_predict_returns_a_fresh_array(rng):
    model = matnet.MLP([4, 3], seed=0, loss="mse")
    X = rng.normal(size=(5, 4))
    first = model.predict(X)
    model.predict(X * 2)
    np.testing.assert_array_equal(first, model.predict(X))


def test_sequential_validation():
    with pytest.raises(ValueError, match="first layer must fix the input width"):
        Sequential([Activation("relu")])
    with pytest.raises(ValueError, match="follows a layer of width 4"):
        Sequential([Dense(3, 4), Dense(5, 2)])
    with pytest.raises(ValueError, match="unknown activation"):
        matnet.MLP([3, 4, 2], "swish")
    with pytest.raises(ValueError, match="dtype"):
        matnet.MLP([3, 2], dtype="float16")
    model = matnet.MLP([3, 2])
    with pytest.raises(ValueError, match=r"Dense\(3 -> 2\) got input of shape \(4, 5\)"):
        model.forward(np.zeros((4, 5), dtype=np.float32))


def test_predict_is_safe_from_several_threads(rng):
    from concurrent.futures import ThreadPoolExecutor

    model = matnet.MLP([20, 64, 64, 5], loss="cross_entropy", seed=0)
    inputs = [rng.normal(size=(int(rng.integers(50, 400)), 20)) for _ in range(64)]
    expected = [model.predict_proba(X) for X in inputs]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(model.predict_proba, inputs))
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got, want)
