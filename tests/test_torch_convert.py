"""PyTorch weights both ways: a network trained in PyTorch predicts the same in matnet, and a matnet
model's state dict loads into the equivalent nn.Sequential and answers the same (to 1e-5 of the
largest logit in float32, 1e-12 in float64: tests/tolerance.py)."""

from __future__ import annotations

import numpy as np
import pytest
from tolerance import assert_close

import matnet
from matnet.errors import ConversionError
from matnet.layers import Activation, Dense, Dropout, Layer, Standardize

torch = pytest.importorskip(
    "torch", reason="the PyTorch round trips need torch (in matnet's dev extra; not a runtime need)"
)
nn = torch.nn

ACTIVATION_MODULES = [
    nn.Identity(),
    nn.ReLU(),
    nn.LeakyReLU(negative_slope=0.2),
    nn.Sigmoid(),
    nn.Tanh(),
    nn.GELU(approximate="tanh"),
    nn.Softmax(dim=1),
]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks: PyTorch's thread pool only contends with the other tests for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def data(n=64, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(np.int64) + (X[:, 2] > 0.5)
    return X, y


def train_in_torch(module, X, y, steps=20):
    torch.manual_seed(0)
    opt = torch.optim.Adam(module.parameters(), lr=0.01)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(module(Xt), yt)
        loss.backward()
        opt.step()
    return module.eval()


@pytest.mark.parametrize("act", ACTIVATION_MODULES, ids=lambda m: type(m).__name__)
def test_trained_in_torch_predicts_the_same_in_matnet(act):
    torch.manual_seed(1)
    module = nn.Sequential(nn.Linear(5, 8), act, nn.Dropout(0.1), nn.Linear(8, 3)).double()
    X, y = data()
    train_in_torch(module, X, y)
    model = matnet.from_torch(module, loss="cross_entropy")
    assert model.dtype is np.float64
    assert [type(layer) for layer in model.layers] == [Dense, Activation, Dropout, Dense]
    with torch.no_grad():
        expected = module(torch.from_numpy(X)).numpy()
    assert_close(model.logits(X), expected, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(X), expected.argmax(axis=1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matnet_state_dict_loads_into_torch_and_answers_the_same(dtype):
    X, y = data(seed=2)
    model = matnet.MLP(
        [5, 9, 7, 3],
        [{"name": "leaky_relu", "alpha": 0.1}, "gelu"],
        dropout=0.2,
        loss="cross_entropy",
        dtype=dtype,
    )
    model.fit(X, y, epochs=3, verbose=0)
    state = matnet.to_torch_state_dict(model)
    assert list(state) == ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias"]
    assert tuple(state["0.weight"].shape) == (9, 5)  # PyTorch's (out, in): W transposed
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    module = nn.Sequential(
        nn.Linear(5, 9),
        nn.LeakyReLU(0.1),
        nn.Dropout(0.2),
        nn.Linear(9, 7),
        nn.GELU(approximate="tanh"),
        nn.Dropout(0.2),
        nn.Linear(7, 3),
    ).to(torch_dtype)
    module.load_state_dict(state)
    module.eval()
    with torch.no_grad():
        got = module(torch.from_numpy(X.astype(dtype))).numpy()
    rtol = 1e-12 if dtype == "float64" else 1e-5
    assert_close(got, model.logits(X), rtol=rtol)
    # to_torch builds the same module itself; and back to matnet gives the same weights
    built = matnet.to_torch(model)
    with torch.no_grad():
        np.testing.assert_array_equal(built(torch.from_numpy(X.astype(dtype))).numpy(), got)
    again = matnet.from_torch(built, loss="cross_entropy")
    for key, value in model.get_weights().items():
        np.testing.assert_array_equal(again.get_weights()[key], value)


def test_from_a_state_dict_with_the_activation_named():
    torch.manual_seed(3)
    module = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2))
    module = module.double()
    model = matnet.from_torch(module.state_dict(), activation="tanh", loss="mse")
    X, _ = data(seed=4)
    with torch.no_grad():
        expected = module(torch.from_numpy(X)).numpy()
    assert_close(model.predict(X), expected, rtol=1e-12)
    # without activation=, the Linear layers follow one another
    plain = matnet.from_torch({"0.weight": torch.ones(3, 5), "1.weight": torch.ones(2, 3)})
    assert [repr(layer) for layer in plain.layers] == ["Dense(5 -> 3)", "Dense(3 -> 2)"]
    assert plain.dtype is np.float32
    np.testing.assert_array_equal(plain.layers[0].b, 0)  # no bias key: a zero bias


@pytest.mark.parametrize(
    "module, words",
    [
        (nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4)), "module 1, BatchNorm1d"),
        (nn.Sequential(nn.Linear(5, 4), nn.GELU()), "erf form of GELU"),
        (nn.Sequential(nn.Linear(5, 4), nn.Softmax(dim=0)), "normalizes over dim=0"),
        (nn.Sequential(nn.Linear(5, 4), nn.LeakyReLU(1.5)), "alpha=1.5 must be a number in"),
        (nn.Linear(5, 4), "from_torch reads an nn.Sequential; got Linear"),
    ],
    ids=["batchnorm", "erf-gelu", "softmax-dim0", "leaky-slope", "not-sequential"],
)
def test_modules_matnet_lacks_are_named(module, words):
    with pytest.raises(ConversionError, match=words.replace("(", r"\(")):
        matnet.from_torch(module)


class Opaque(Layer):
    """A layer of a user's own that declares no PyTorch form."""


def test_bad_state_dicts_and_layers_without_modules():
    with pytest.raises(ConversionError, match="'0.running_mean' is not"):
        matnet.from_torch({"0.weight": torch.ones(3, 5), "0.running_mean": torch.ones(3)})
    with pytest.raises(ConversionError, match="weights are torch.float16|are float16"):
        matnet.from_torch({"0.weight": torch.ones(3, 5, dtype=torch.float16)})
    with pytest.raises(ValueError, match="follows a layer of width"):
        matnet.from_torch({"0.weight": torch.ones(3, 5), "1.weight": torch.ones(2, 4)})
    model = matnet.Sequential([Standardize(5), Dense(5, 2)])  # a Standardize never fitted
    with pytest.raises(ConversionError, match=r"Standardize\(5\) has no statistics yet"):
        matnet.to_torch_state_dict(model)
    model = matnet.Sequential([Dense(5, 3), Opaque(), Dense(3, 2)])  # no PyTorch form declared
    with pytest.raises(
        ConversionError,
        match=r"layer 1, Opaque\(\) \(Opaque\), has no PyTorch module.*register_torch",
    ):
        matnet.to_torch_state_dict(model)
