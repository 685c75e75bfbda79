"""explain(): the article's equations with real shapes, flop counts, parameters, memory and values."""

from __future__ import annotations

import re

import numpy as np
import pytest

import matnet
from matnet.explain import _describe, _run


def _line(text: str, start: str) -> str:
    matches = [line.strip() for line in text.splitlines() if line.strip().startswith(start)]
    assert matches, f"no line starts with {start!r} in:\n{text}"
    return matches[0]


def _squash(line: str) -> str:
    return re.sub(r"\s+", " ", line)


def test_forward_and_backward_equations_with_shapes():
    model = matnet.MLP([64, 32, 10], "relu", loss="cross_entropy", seed=0)
    text = matnet.explain(model, 8, print_fn=None)
    assert _squash(_line(text, "Z1 =")) == "Z1 = A0 · W1 + b1 (8×64)·(64×32) + (1×32) → (8×32)"
    assert _squash(_line(text, "A1 =")) == "A1 = relu(Z1) (8×32) → (8×32)"
    assert _squash(_line(text, "Z2 =")) == "Z2 = A1 · W2 + b2 (8×32)·(32×10) + (1×10) → (8×10)"
    assert _squash(_line(text, "dW1 =")).startswith("dW1 = A0ᵀ · dZ1 (64×8)·(8×32) → (64×32) ")
    assert _squash(_line(text, "dW2 =")).startswith("dW2 = A1ᵀ · dZ2 (32×8)·(8×10) → (32×10) ")
    assert "8 outer products, one per row, summed" in _line(text, "dW2 =")
    assert _squash(_line(text, "dA1 =")).startswith("dA1 = dZ2 · W2ᵀ (8×10)·(10×32) → (8×32) ")
    assert _line(text, "db1 =").startswith("db1 = Σrows dZ1")
    assert "(8×32) → (1×32)" in _line(text, "db1 =")
    assert "dZ1 = dA1 ⊙ relu′(Z1)" in text
    assert "dZ2 = (P − Y) / n" in text
    assert "(no dA0" in text  # the first layer needs no input gradient
    assert not re.search(r"^\s*dA0 =", text, re.M)


def test_equations_come_in_the_order_they_run():
    model = matnet.MLP([6, 5, 4, 3], "tanh", loss="cross_entropy")
    text = matnet.explain(model, 2, print_fn=None)
    starts = [
        line.split("=")[0].strip()
        for line in text.splitlines()
        if re.match(r"^\s+(d?[A-Z]\w*|db\d+) = ", line)
    ]
    assert starts == [
        "Z1", "A1", "Z2", "A2", "Z3", "P", "L",
        "dZ3", "dW3", "db3", "dA2", "dZ2", "dW2", "db2", "dA1", "dZ1", "dW1", "db1",
    ]  # fmt: skip


def test_flops_match_the_exact_count_for_784_256_128_10():
    # Per example: forward 2W, weight gradients 2W, input gradients 2(W - 784*256) = 1,007,104.
    model = matnet.MLP([784, 256, 128, 10], "relu", loss="cross_entropy")
    W = 784 * 256 + 256 * 128 + 128 * 10
    text = matnet.explain(model, 1, print_fn=None)
    assert f"= {2 * W + 2 * W + 2 * (W - 784 * 256):,} flops in matrix products" in text
    assert "1,007,104" in text
    total = _squash(_line(text, "total"))
    assert total == f"total {2 * W:,} {2 * W:,} {2 * (W - 784 * 256):,}"
    text128 = matnet.explain(model, 128, print_fn=None)
    assert f"= {128 * 1_007_104:,} flops in matrix products (1,007,104 per example)" in text128
    layer1 = _squash(_line(text128, "layer 1"))
    assert layer1.endswith("—")  # no input gradient for the first layer


def test_parameter_count_and_activation_memory():
    model = matnet.MLP([64, 32, 10], "relu", loss="cross_entropy")
    text = matnet.explain(model, 8, print_fn=None)
    assert (
        f"Parameters: {model.n_params:,} = W1 64×32 = 2,048 + b1 32 + W2 32×10 = 320 + b2 10"
        in text
    )
    # Kept for the backward pass: A0 8×64 + Z1 8×32 (ReLU writes A1 over it) + Z2 8×10 = 848 numbers.
    assert "Activations of one batch: 848 numbers = 3.3 KiB" in text
    model64 = matnet.MLP([64, 32, 10], "gelu", loss="cross_entropy", dtype="float64")
    text64 = matnet.explain(model64, 8, print_fn=None)
    # GELU needs Z for its derivative, so A1 gets its own buffer: 848 + 256 numbers of 8 bytes.
    assert "Activations of one batch: 1,104 numbers = 8.6 KiB" in text64
    # Dropout keeps its mask and its output: 848 + 2 * 256.
    dropped = matnet.MLP([64, 32, 10], "relu", dropout=0.5, loss="cross_entropy")
    text = matnet.explain(dropped, 8, print_fn=None)
    assert "Activations of one batch: 1,360 numbers" in text and "M1 (8×32), D1 (8×32)" in text


@pytest.mark.parametrize(
    ("activation", "loss", "dropout"),
    [
        ("relu", "cross_entropy", 0.0),
        ("tanh", "binary_cross_entropy", 0.0),
        ("sigmoid", "mse", 0.0),
        ("gelu", "cross_entropy", 0.5),
        ("leaky_relu", "mse", 0.25),
    ],
)
def test_values_are_the_real_step_and_obey_the_article(activation, loss, dropout):
    model = matnet.MLP(
        [4, 5, 3, 2], activation, loss=loss, dropout=dropout, dtype="float64", seed=3
    )
    params_before = model.flat_params.copy()
    model.flat_grads[...] = 7.0
    rng = np.random.default_rng(1)
    X = rng.standard_normal((6, 4))
    y = {
        "cross_entropy": rng.integers(0, 2, 6),
        "binary_cross_entropy": rng.integers(0, 2, (6, 2)),
        "mse": rng.standard_normal((6, 2)),
    }[loss]
    values, value = _run(model, _describe(model, X.shape[0]), X, y, seed=0)
    # The explanation leaves the model as it found it.
    np.testing.assert_array_equal(model.flat_params, params_before)
    assert np.all(model.flat_grads == 7.0)
    # The captured arrays obey the article's formulas, so each name labels the right matrix.
    inputs = {1: "A0", 2: "D1" if dropout else "A1", 3: "D2" if dropout else "A2"}
    for ell in (1, 2, 3):
        A_prev, dZ = values[inputs[ell]], values[f"dZ{ell}"]
        np.testing.assert_allclose(
            values[f"Z{ell}"], A_prev @ values[f"W{ell}"] + values[f"b{ell}"]
        )
        np.testing.assert_allclose(values[f"dW{ell}"], A_prev.T @ dZ, atol=1e-12)
        np.testing.assert_allclose(values[f"db{ell}"], dZ.sum(axis=0, keepdims=True), atol=1e-12)
        if ell > 1:
            np.testing.assert_allclose(
                values[f"d{inputs[ell]}"], dZ @ values[f"W{ell}"].T, atol=1e-12
            )
    assert "dA0" not in values
    # And they are the model's own gradients: one training step through model.forward/backward.
    Z, backward = model.forward(X, training=True, rng=np.random.default_rng(0))
    loss_value, dZ = model.loss(Z, model.loss.encode_targets(y, 2, np.float64))
    backward(dZ)
    assert value == pytest.approx(loss_value, rel=1e-12)
    dense_keys = [k for k in model.params if k.endswith(".W")]
    for ell, key in enumerate(dense_keys, start=1):
        np.testing.assert_array_equal(values[f"dW{ell}"], model.grads[key])


def test_values_text_prints_the_matrices():
    model = matnet.MLP([3, 4, 2], "relu", loss="cross_entropy", seed=0)
    text = matnet.explain(model, 2, values=True, print_fn=None)
    assert "Values from one real training step on a random batch" in text
    for name in (
        "A0",
        "Y",
        "W1",
        "b1",
        "Z1",
        "A1",
        "Z2",
        "P",
        "L",
        "dZ2",
        "dW2",
        "db2",
        "dA1",
        "dZ1",
        "dW1",
    ):
        assert re.search(rf"^\s+{name} = ", text, re.M), name
    assert "This step's loss: L = " in text


def test_explain_with_a_real_batch_and_targets(capsys):
    model = matnet.MLP([4, 3, 3], "tanh", loss="cross_entropy")
    X = np.linspace(-1, 1, 20).reshape(5, 4)
    text = matnet.explain(model, X, np.array([0, 1, 2, 0, 1]), values=True)
    assert "batch of n = 5 rows" in text
    assert "on the given batch and targets" in text
    assert capsys.readouterr().out.strip() == text.strip()


def test_bad_arguments():
    model = matnet.MLP([3, 2], loss="mse")
    with pytest.raises(ValueError, match="batch size 0"):
        matnet.explain(model, 0, print_fn=None)
    with pytest.raises(ValueError, match="2-D"):
        matnet.explain(model, np.zeros(3), print_fn=None)
    with pytest.raises(TypeError, match="Sequential"):
        matnet.explain("not a model", 4, print_fn=None)
    with pytest.raises(ValueError, match="features"):
        matnet.explain(model, np.zeros((2, 5)), values=True, print_fn=None)
