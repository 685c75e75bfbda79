"""One model concept: a Sequential holds what turns raw rows into answers (preprocessing layers with
non-trainable state, class labels, feature names, a regressor's target scaling), and its files keep it."""

from __future__ import annotations

import numpy as np
import pytest
from tolerance import assert_close

import matnet
from matnet.errors import ModelFileError, NotFittedError


def raw_table(n=120, seed=0):
    """Features on wildly different scales and string classes."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)) * [1.0, 1000.0, 0.01] + [5.0, -2000.0, 0.3]
    score = (X[:, 0] - 5) + (X[:, 1] + 2000) / 1000
    y = np.where(score > 0.5, "gentoo", np.where(score < -0.5, "adelie", "chinstrap"))
    return X, y


def standardized_mlp(seed=0, dtype="float64"):
    layers = [
        matnet.Standardize(3),
        matnet.Dense(3, 16),
        matnet.Activation("relu"),
        matnet.Dense(16, 3),
    ]
    return matnet.Sequential(layers, loss="cross_entropy", seed=seed, dtype=dtype)


def test_standardize_is_fitted_from_the_training_rows_only():
    X, y = raw_table()
    model = standardized_mlp()
    assert model.n_state == 3 + 3 + 1 and model.n_params == 3 * 16 + 16 + 16 * 3 + 3
    with pytest.raises(NotFittedError, match="no statistics yet"):
        model.predict(X)
    model.fit(X, y, epochs=1, validation_fraction=0.25, seed=1)
    layer = model.layers[0]
    n_seen = int(layer.n_seen[0])
    assert 85 <= n_seen <= 95  # the training rows (a stratified 75%), not the validation rows
    assert not np.allclose(layer.mean[0], X.mean(axis=0))  # all 120 rows would give this mean
    # Training changes the parameters, never the state.
    state = model.flat_state.copy()
    model.fit(X, y, epochs=2)
    np.testing.assert_array_equal(model.flat_state, state)


def test_standardize_matches_the_formula_and_passes_gradcheck():
    X, y = raw_table(n=9)
    model = matnet.Sequential(
        [matnet.Dense(3, 4), matnet.Activation("tanh"), matnet.Standardize(4), matnet.Dense(4, 3)],
        dtype="float64",
        loss="cross_entropy",
    )
    X = (X - X.mean(0)) / X.std(0)
    model.adapt(X)
    A1 = np.tanh(X @ model.params["0.W"] + model.params["0.b"])
    np.testing.assert_allclose(model.state["2.mean"], A1.mean(0, keepdims=True), rtol=1e-12)
    S = (A1 - A1.mean(0)) / A1.std(0)
    expected = S @ model.params["3.W"] + model.params["3.b"]
    np.testing.assert_allclose(model.forward(X)[0], expected, rtol=1e-10)
    # The backward pass through a standardization in the middle, proven by central differences.
    assert matnet.gradcheck(model, X, np.arange(9) % 3) < 1e-6


def test_string_classes_are_learned_predicted_and_saved(tmp_path):
    X, y = raw_table()
    model = standardized_mlp()
    model.fit(X, y, epochs=40, batch_size=16, learning_rate=0.01)
    assert model.classes == ["adelie", "chinstrap", "gentoo"]
    predicted = model.predict(X)
    assert predicted.dtype.kind == "U" and (predicted == y).mean() > 0.9
    assert model.evaluate(X, y)["accuracy"] == pytest.approx((predicted == y).mean())
    matnet.save(model, tmp_path / "m.safetensors")
    loaded = matnet.load(tmp_path / "m.safetensors")
    assert loaded.classes == model.classes
    np.testing.assert_array_equal(loaded.predict(X), predicted)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    with pytest.raises(ValueError, match="'emperor', which the model does not know"):
        model.evaluate(X[:2], np.array(["gentoo", "emperor"]))


def test_feature_names_match_a_dataframe_by_name():
    pd = pytest.importorskip("pandas")
    X, y = raw_table()
    frame = pd.DataFrame(X, columns=["bill", "mass", "ratio"])
    model = standardized_mlp()
    model.fit(frame, y, epochs=5)
    assert model.feature_names == ["bill", "mass", "ratio"]
    expected = model.predict(frame)
    np.testing.assert_array_equal(model.predict(frame[["ratio", "mass", "bill"]]), expected)
    np.testing.assert_array_equal(model.predict(X), expected)  # arrays are taken as they are
    with pytest.raises(ValueError, match="lacks 1 of the model's 3 features \\('mass'\\)"):
        model.predict(frame[["bill", "ratio"]])


def test_target_scaling_is_learned_in_scaled_units_and_undone_at_predict(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 2))
    y = 4000 + 600 * X[:, 0] - 300 * X[:, 1]  # grams: far from unit scale
    model = matnet.MLP([2, 1], loss="mse", dtype="float64")
    model.target_scaling = (np.array([y.mean()]), np.array([y.std()]))
    model.fit(X, y, epochs=60, learning_rate=0.05)
    assert model.evaluate(X, y)["r2"] > 0.999
    np.testing.assert_allclose(model.predict(X), y, rtol=1e-3)
    matnet.save(model, tmp_path / "r.safetensors")
    np.testing.assert_array_equal(
        matnet.load(tmp_path / "r.safetensors").predict(X), model.predict(X)
    )


def test_state_survives_save_load_copy_and_astype(tmp_path):
    X, y = raw_table()
    model = standardized_mlp()
    model.fit(X, y, epochs=2)
    matnet.save(model, tmp_path / "m.safetensors")
    loaded = matnet.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.flat_state, model.flat_state)
    for other in (loaded, model.copy(), model.astype("float32")):
        assert_close(other.predict_proba(X), model.predict_proba(X), rtol=1e-5)


def test_files_with_bad_model_concept_fields_are_refused(tmp_path):
    from matnet.io import load_tensors, save_tensors

    X, y = raw_table()
    model = standardized_mlp()
    model.fit(X, y, epochs=1)
    path = tmp_path / "m.safetensors"
    matnet.save(model, path)
    tensors, meta = load_tensors(path)
    cases = {
        "classes": ('["a", "a", "b"]', "'classes' must list 3 distinct labels"),
        "feature_names": ('["x"]', "'feature_names' must list 3 distinct names"),
    }
    for key, (value, message) in cases.items():
        save_tensors(tmp_path / "bad.safetensors", tensors, {**meta, key: value})
        with pytest.raises(ModelFileError, match=message):
            matnet.load(tmp_path / "bad.safetensors")
    nan_state = {**tensors, "0.scale": np.full_like(tensors["0.scale"], np.nan)}
    save_tensors(tmp_path / "nan.safetensors", nan_state, meta)
    with pytest.raises(ModelFileError, match="'0.scale' holds NaN or infinity"):
        matnet.load(tmp_path / "nan.safetensors")


def test_a_format_1_command_line_file_loads_as_the_model_concept(tmp_path):
    """matnet 0.1's `matnet train` kept the scaler and labels in its metadata, where only the command
    line applied them; loading such a file gives the model the scaler and labels itself."""
    import json

    from matnet.io import encode_tensors

    rng = np.random.default_rng(0)
    old = matnet.MLP([2, 3, 2], loss="cross_entropy", dtype="float32")
    mean, scale = np.array([10.0, -3.0]), np.array([2.0, 0.5])
    meta = {
        "format": "matnet",
        "format_version": "1",
        "matnet_version": "0.1.0",
        "model": json.dumps(old.config()),
        "user": json.dumps(
            {
                "task": "classification",
                "labels": ["no", "yes"],
                "features": ["a", "b"],
                "scaler": {"mean": mean.tolist(), "scale": scale.tolist()},
            }
        ),
    }
    (tmp_path / "old.safetensors").write_bytes(encode_tensors(old.get_weights(), meta))
    model = matnet.load(tmp_path / "old.safetensors")
    assert isinstance(model.layers[0], matnet.Standardize)
    assert model.classes == ["no", "yes"] and model.feature_names == ["a", "b"]
    X = rng.standard_normal((5, 2)) * scale + mean
    expected = np.array(["no", "yes"])[np.argmax(old.logits((X - mean) / scale), axis=1)]
    np.testing.assert_array_equal(model.predict(X), expected)
