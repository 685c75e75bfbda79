"""matnet grows without edits to matnet/: a layer, an activation and a loss defined only here train,
pass gradcheck, explain themselves, survive save -> load and checkpoint -> resume, and train on
simulated ranks, through the public registration calls."""

from __future__ import annotations

import numpy as np
import pytest

import matnet
from matnet.distributed import simulate
from matnet.equations import Equation, shape_text
from matnet.layers import Description, Layer, Symbols


@matnet.register_layer
class FeatureScale(Layer):
    """A trainable per-feature scale: ``S = A_prev ⊙ s``."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.n_features = n_features
        self.s = self.ds = None

    def param_specs(self):
        return [("s", (1, self.n_features), False)]

    def bind(self, params, grads):
        self.s, self.ds = params["s"], grads["s"]

    def initialize(self, rng):
        self.s[...] = 1.0 + 0.1 * rng.standard_normal(self.s.shape)

    def output_width(self, n_in):
        if n_in != self.n_features:
            raise ValueError(f"FeatureScale({self.n_features}) follows a layer of width {n_in}")
        return n_in

    def forward(self, A_prev, training=False, rng=None, rows=None):
        s = self.s

        def backward(dS):
            self.ds[...] = np.sum(dS * A_prev, axis=0, keepdims=True)  # ds = Σrows dS ⊙ A_prev
            return dS * s  # dA_prev = dS ⊙ s

        return A_prev * s, backward

    def describe(self, symbols: Symbols) -> Description:
        A, ell, shape = symbols.input, symbols.index, shape_text(symbols.n, symbols.n_in)
        S = f"S{ell}"
        return Description(
            output=S,
            forward=[Equation(f"{S} = {A} ⊙ s{ell}", f"{shape} ⊙ (1×{symbols.n_in})", "", S)],
            backward=[
                Equation(f"ds{ell} = Σrows d{S} ⊙ {A}", shape, "", f"ds{ell}"),
                Equation(f"d{A} = d{S} ⊙ s{ell}", shape, "", f"d{A}"),
            ],
            kept=[(f"{S} {shape}", symbols.n * symbols.n_in)],
            grad_numbers=symbols.n * symbols.n_in,
            parameters=[(f"s{ell}", "s", f"s{ell} {symbols.n_in}")],
        )

    def config(self):
        return {"type": "FeatureScale", "n_features": self.n_features}


@matnet.register_activation
class Softplus(matnet.activations.Activation):
    name = "softplus"
    overwrites_input = False  # the derivative needs Z
    init = "he"
    derivative = "{dA} ⊙ σ({Z})"

    def forward(self, Z, out):
        return np.logaddexp(0, Z, out=out)

    def backward(self, dA, Z, A):
        dA *= 1 / (1 + np.exp(-Z))
        return dA


@matnet.register_loss
class Huber(matnet.Loss):
    """Huber loss with delta 1, averaged over all outputs."""

    name = "huber"
    metric_name = "r2"
    task = "regression"

    def __call__(self, Z, Y, sample_weight=None):
        n, k = Z.shape
        R = Z - Y.reshape(Z.shape)
        small = np.abs(R) <= 1
        losses = np.where(small, 0.5 * R * R, np.abs(R) - 0.5)
        dZ = np.clip(R, -1, 1) / (n * k)
        if sample_weight is not None:
            w = np.asarray(sample_weight).reshape(n, 1)
            return float(np.sum(losses * w) / (n * k)), dZ * w
        return float(losses.sum() / (n * k)), dZ

    def link(self, Z, out=None):
        return Z if out is None else np.copyto(out, Z) or out

    def predict(self, Z):
        return Z

    def encode_targets(self, y, n_outputs, dtype):
        return matnet.MeanSquaredError.encode_targets(self, y, n_outputs, dtype)

    def metric(self, Z, Y):
        return matnet.MeanSquaredError.metric(self, Z, Y)

    def describe(self, Z, n, k):
        nk = shape_text(n, k)
        return (
            [Equation(f"L = Σ huber({Z} − Y) / (n·k)", f"{nk} → scalar", "Huber, δ = 1", "L")],
            Equation(f"d{Z} = clip({Z} − Y, −1, 1) / (n·k)", nk, "", f"d{Z}"),
        )


def make_model(dtype="float64", seed=0):
    layers = [
        matnet.Dense(4, 6),
        matnet.Activation("softplus"),
        FeatureScale(6),
        matnet.Dense(6, 2),
    ]
    return matnet.Sequential(layers, dtype=dtype, seed=seed, loss="huber")


def make_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    y = np.stack([X[:, 0] - 2 * X[:, 1], np.sin(X[:, 2])], axis=1) * 2
    return X, y


def test_the_registered_pieces_are_found_by_name():
    assert "softplus" in matnet.activations.activation_names()
    assert "huber" in matnet.losses.loss_names()
    model = matnet.MLP([4, 5, 2], "softplus", loss="huber")
    assert model.layers[0].init == "he_normal"  # the activation's own initializer hint
    assert isinstance(model.loss, Huber)


def test_registering_a_taken_name_is_refused():
    class OtherSoftplus(matnet.activations.Activation):
        name = "softplus"

        def forward(self, Z, out):
            return Z

        def backward(self, dA, Z, A):
            return dA

    with pytest.raises(ValueError, match="already registered"):
        matnet.register_activation(OtherSoftplus)
    with pytest.raises(ValueError, match="already registered"):
        matnet.register_loss(type("Other", (Huber,), {}), "mse")


def test_trains_and_passes_gradcheck():
    X, y = make_data()
    model = make_model()
    before = model.evaluate(X, y)["loss"]
    history = model.fit(X, y, optimizer="adam", learning_rate=0.02, epochs=30, batch_size=16)
    assert history["loss"][-1] < 0.5 * before
    assert matnet.gradcheck(model, X[:7], y[:7]) < 1e-6
    assert matnet.gradcheck(model, X[:1], y[:1]) < 1e-6


def test_explain_prints_the_custom_pieces():
    text = matnet.explain(make_model(), 3, print_fn=None)
    assert "A1 = softplus(Z1)" in text
    assert "dZ1 = dA1 ⊙ σ(Z1)" in text
    assert "S2 = A1 ⊙ s2" in text
    assert "Z3 = S2 · W3 + b3" in text  # not Z2 = A1 · W2: the scale layer sits between
    assert "ds2 = Σrows dS2 ⊙ A1" in text
    assert "L = Σ huber(Z3 − Y) / (n·k)" in text
    assert "s2 6" in text
    values = matnet.explain(make_model(), 3, values=True, print_fn=None)
    assert "ds2 =" in values and "This step's loss" in values


def test_save_load_predicts_the_same(tmp_path):
    X, y = make_data()
    model = make_model()
    model.fit(X, y, epochs=3, batch_size=16)
    matnet.save(model, tmp_path / "m.safetensors")
    loaded = matnet.load(tmp_path / "m.safetensors")
    assert isinstance(loaded.layers[2], FeatureScale) and isinstance(loaded.loss, Huber)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_checkpoint_resume_is_bit_identical(tmp_path):
    X, y = make_data()
    options = dict(optimizer="adam", epochs=6, batch_size=16, seed=3)
    straight = make_model()
    straight.fit(X, y, **options)
    path = tmp_path / "run.ckpt"

    class Crash(matnet.Callback):  # dies mid-epoch, after the checkpoint of step 10
        def on_batch_end(self, step, logs):
            if step == 11:
                raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        make_model().fit(X, y, checkpoint=path, checkpoint_every=5, callbacks=Crash(), **options)
    resumed = make_model(seed=9)  # other initial weights: the checkpoint's must win
    resumed.fit(X, y, checkpoint=path, checkpoint_every=5, resume=True, **options)
    np.testing.assert_array_equal(resumed.flat_params, straight.flat_params)


def test_trains_on_simulated_ranks():
    X, y = make_data(n=64)

    def rank_main(comm):
        model = make_model()
        matnet.fit(model, X, y, epochs=3, batch_size=16, comm=comm)
        return model.flat_params

    p0, p1 = simulate(2, rank_main)
    np.testing.assert_array_equal(p0, p1)
    single = make_model()
    matnet.fit(single, X, y, epochs=3, batch_size=16)
    np.testing.assert_allclose(p0, single.flat_params, rtol=1e-12, atol=1e-12)


def test_the_estimators_read_the_registries():
    sklearn_front = pytest.importorskip("matnet.sklearn")
    X, y = make_data()
    reg = sklearn_front.MLPRegressor(
        hidden_layer_sizes=(6,), activation="softplus", max_iter=20, random_state=0
    )
    reg.fit(X, y)
    assert reg._model.layers[1].fn.name == "softplus"
    assert np.isfinite(reg.score(X, y))
