"""One test per row of docs/errors.md: bad input gets a clear error before any work or any write;
awkward but valid input works.

Every failing ``fit`` here is given a checkpoint path: the error must come before a parameter changes and
before any file is written.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import matnet
from matnet.io import decode_tensors, encode_tensors

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 4))
Y_CLASS = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)  # classes 0, 1, 2
Y_REG = X @ np.array([1.0, -2.0, 0.5, 0.0])


def classifier(dtype="float32"):
    return matnet.MLP([4, 8, 3], loss="cross_entropy", seed=0, dtype=dtype)


def regressor():
    return matnet.MLP([4, 8, 1], loss="mse", seed=0)


def with_nan(a, value=np.nan):
    a = np.array(a, dtype=float)
    a.flat[5] = value
    return a


# (id, model factory, X, y, fit options, error class, message fragment)
FIT_ERRORS = [
    ("nan-features", classifier, with_nan(X), Y_CLASS, {}, ValueError, "NaN or infinity"),
    ("inf-features", classifier, with_nan(X, np.inf), Y_CLASS, {}, ValueError, "row 1, column 1"),
    ("nan-targets", regressor, X, with_nan(Y_REG), {}, ValueError, "NaN or infinity"),
    ("inf-targets", regressor, X, with_nan(Y_REG, -np.inf), {}, ValueError, "NaN or infinity"),
    ("nan-class-targets", classifier, X, with_nan(Y_CLASS), {}, ValueError, "NaN or infinity"),
    (
        "wrong-width",
        classifier,
        X[:, :3],
        Y_CLASS,
        {},
        ValueError,
        "3 features, but the model expects 4",
    ),
    ("zero-rows", classifier, X[:0], Y_CLASS[:0], {}, ValueError, "0 rows"),
    ("zero-features", classifier, np.empty((40, 0)), Y_CLASS, {}, ValueError, "0 features"),
    ("1-d-features", classifier, X[:, 0], Y_CLASS, {}, ValueError, "must be 2-D"),
    ("3-d-features", classifier, X.reshape(40, 2, 2), Y_CLASS, {}, ValueError, "must be 2-D"),
    ("ragged-features", classifier, [[1.0, 2.0], [3.0]], [0, 1], {}, ValueError, "2-D numeric"),
    ("object-features", classifier, X.astype(object), Y_CLASS, {}, TypeError, "numeric features"),
    ("string-features", classifier, X.astype(str), Y_CLASS, {}, TypeError, "numeric features"),
    ("complex-features", classifier, X + 1j, Y_CLASS, {}, TypeError, "complex"),
    ("wrong-label-count", classifier, X, Y_CLASS[:-1], {}, ValueError, "39 labels for 40 samples"),
    ("label-above-classes", classifier, X, Y_CLASS + 1, {}, ValueError, r"lie in \[0, 2\]"),
    ("negative-label", classifier, X, Y_CLASS - 1, {}, ValueError, r"lie in \[0, 2\]"),
    ("fractional-labels", classifier, X, Y_CLASS + 0.5, {}, ValueError, "non-integer"),
    (
        "string-labels-not-one-per-output",
        classifier,
        X,
        (Y_CLASS % 2).astype(str),
        {},
        ValueError,
        r"y holds 2 distinct labels \('0', '1'\), but the model's 3 output\(s\) stand for 3",
    ),
    ("one-hot-wrong-width", classifier, X, np.eye(2)[Y_CLASS % 2], {}, ValueError, "do not fit"),
    ("regression-wrong-width", regressor, X, np.c_[Y_REG, Y_REG], {}, ValueError, "do not fit"),
    (
        "single-output-cross-entropy",
        lambda: matnet.MLP([4, 1], loss="cross_entropy"),
        X,
        np.zeros(40, int),
        {},
        ValueError,
        "at least 2",
    ),
    (
        "one-row-validation",
        classifier,
        X[:1],
        Y_CLASS[:1],
        {"validation_fraction": 0.5},
        ValueError,
        "empty training or validation",
    ),
    (
        "negative-learning-rate",
        classifier,
        X,
        Y_CLASS,
        {"learning_rate": -0.1},
        ValueError,
        "learning_rate=-0.1",
    ),
    (
        "zero-learning-rate",
        classifier,
        X,
        Y_CLASS,
        {"learning_rate": 0},
        ValueError,
        "learning_rate=0",
    ),
    (
        "nan-learning-rate",
        classifier,
        X,
        Y_CLASS,
        {"learning_rate": float("nan")},
        ValueError,
        "learning_rate=nan",
    ),
    (
        "inf-learning-rate",
        classifier,
        X,
        Y_CLASS,
        {"learning_rate": float("inf")},
        ValueError,
        "learning_rate=inf",
    ),
    ("zero-epochs", classifier, X, Y_CLASS, {"epochs": 0}, ValueError, "epochs=0"),
    ("fractional-epochs", classifier, X, Y_CLASS, {"epochs": 2.5}, ValueError, "epochs=2.5"),
    ("zero-batch-size", classifier, X, Y_CLASS, {"batch_size": 0}, ValueError, "batch_size=0"),
    (
        "negative-batch-size",
        classifier,
        X,
        Y_CLASS,
        {"batch_size": -8},
        ValueError,
        "batch_size=-8",
    ),
    ("negative-l2", classifier, X, Y_CLASS, {"l2": -1.0}, ValueError, "l2=-1"),
    (
        "momentum-above-1",
        classifier,
        X,
        Y_CLASS,
        {"optimizer": {"name": "sgd", "momentum": 1.5}},
        ValueError,
        "momentum=1.5",
    ),
    (
        "unknown-optimizer",
        classifier,
        X,
        Y_CLASS,
        {"optimizer": "adagrad"},
        ValueError,
        "unknown optimizer",
    ),
    ("unknown-loss", classifier, X, Y_CLASS, {"loss": "hinge"}, ValueError, "unknown loss"),
    (
        "unknown-schedule",
        classifier,
        X,
        Y_CLASS,
        {"schedule": "warmup"},
        ValueError,
        "unknown schedule",
    ),
    ("negative-patience", classifier, X, Y_CLASS, {"patience": -1}, ValueError, "patience=-1"),
    ("negative-min-delta", classifier, X, Y_CLASS, {"min_delta": -0.1}, ValueError, "min_delta"),
    (
        "validation-fraction-1",
        classifier,
        X,
        Y_CLASS,
        {"validation_fraction": 1.0},
        ValueError,
        r"\[0, 1\)",
    ),
    (
        "negative-validation-fraction",
        classifier,
        X,
        Y_CLASS,
        {"validation_fraction": -0.2},
        ValueError,
        r"\[0, 1\)",
    ),
    (
        "nan-clip-norm",
        classifier,
        X,
        Y_CLASS,
        {"clip_norm": float("nan")},
        ValueError,
        "clip_norm=nan",
    ),
    ("negative-clip-norm", classifier, X, Y_CLASS, {"clip_norm": -1}, ValueError, "clip_norm=-1"),
    ("negative-seed", classifier, X, Y_CLASS, {"seed": -3}, ValueError, "seed=-3"),
    ("float-seed", classifier, X, Y_CLASS, {"seed": 1.5}, TypeError, "seed must be"),
    (
        "negative-sample-weight",
        classifier,
        X,
        Y_CLASS,
        {"sample_weight": -np.ones(40)},
        ValueError,
        "non-negative",
    ),
    (
        "zero-sample-weight",
        classifier,
        X,
        Y_CLASS,
        {"sample_weight": np.zeros(40)},
        ValueError,
        "zero everywhere",
    ),
    (
        "wrong-sample-weight-length",
        classifier,
        X,
        Y_CLASS,
        {"sample_weight": np.ones(39)},
        ValueError,
        "one weight per sample",
    ),
    (
        "bad-validation-data",
        classifier,
        X,
        Y_CLASS,
        {"validation_data": (X[:, :3], Y_CLASS)},
        ValueError,
        "3 features",
    ),
    (
        "nan-validation-data",
        classifier,
        X,
        Y_CLASS,
        {"validation_data": (with_nan(X), Y_CLASS)},
        ValueError,
        "NaN",
    ),
    ("bad-verbose", classifier, X, Y_CLASS, {"verbose": 5}, ValueError, "verbose=5"),
    ("bad-callback", classifier, X, Y_CLASS, {"callbacks": [42]}, TypeError, "callback 42"),
]


@pytest.mark.parametrize(
    ("make", "X_bad", "y_bad", "options", "error", "match"),
    [row[1:] for row in FIT_ERRORS],
    ids=[row[0] for row in FIT_ERRORS],
)
def test_fit_rejects_bad_input_before_any_change_or_write(
    tmp_path, make, X_bad, y_bad, options, error, match
):
    model = make()
    before = model.flat_params.copy()
    options = {"verbose": 0, "epochs": 2, "checkpoint": tmp_path / "run.ckpt", **options}
    with pytest.raises(error, match=match):
        model.fit(X_bad, y_bad, **options)
    assert np.array_equal(model.flat_params, before)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("X_bad", "error", "match"),
    [
        (with_nan(X), ValueError, "NaN or infinity"),
        (X[:, :3], ValueError, "3 features"),
        (X[:0], ValueError, "0 rows"),
        (X[0], ValueError, "must be 2-D"),
        (X.astype(str), TypeError, "numeric"),
        (X + 0j, TypeError, "complex"),
    ],
    ids=["nan", "wrong-width", "zero-rows", "1-d", "strings", "complex"],
)
@pytest.mark.parametrize("method", ["predict", "predict_proba", "logits"])
def test_predict_rejects_bad_input(X_bad, error, match, method):
    with pytest.raises(error, match=match):
        getattr(classifier(), method)(X_bad)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "logits", "evaluate"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_predict_names_a_bad_entry_in_a_later_chunk(method, value):
    """Inference checks its input chunk by chunk; the error still names the row in the caller's X."""
    from matnet.plan import PREDICT_CHUNK

    model = matnet.MLP([X.shape[1], 5, 3], loss="cross_entropy", seed=0)
    X_big = np.tile(X, (-(-(2 * PREDICT_CHUNK + 7) // len(X)), 1))[: 2 * PREDICT_CHUNK + 7]
    X_big[2 * PREDICT_CHUNK + 3, 2] = value
    args = (X_big, np.zeros(len(X_big), dtype=int)) if method == "evaluate" else (X_big,)
    with pytest.raises(ValueError, match=rf"row {2 * PREDICT_CHUNK + 3}, column 2"):
        getattr(model, method)(*args)


@pytest.mark.parametrize("widths", [(12, 5, 3), (3, 8, 3)], ids=["check-on-Z1", "check-on-X"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inference_finds_every_bad_entry_even_under_zero_weights(
    widths, value, dtype, compute_path
):
    """predict checks the first product instead of X when it is narrower: a NaN or infinity still
    shows there, in every row that has one, even where the feature's weights are all zero (0 * inf is
    NaN). Bad entries in the first and the last row of a chunk, in several chunks."""
    from matnet.plan import PREDICT_CHUNK

    rng = np.random.default_rng(0)
    model = matnet.MLP(widths, loss="cross_entropy", dtype=dtype, seed=0)
    model.params["0.W"][1] = 0.0  # feature 1 has no weight at all
    n = 2 * PREDICT_CHUNK + 5
    for row, col in [(0, 1), (PREDICT_CHUNK - 1, 0), (PREDICT_CHUNK, 2), (n - 1, 1)]:
        X_bad = rng.standard_normal((n, widths[0]))
        X_bad[row, col] = value
        with pytest.raises(ValueError, match=rf"row {row}, column {col}\)"):
            model.predict_proba(X_bad)
    # Finite X whose first product overflows is no input error.
    X_huge = np.full((4, widths[0]), np.finfo(dtype).max / 4)
    assert model.predict(X_huge).shape == (4,)


def test_evaluate_rejects_labels_outside_the_models_classes():
    with pytest.raises(ValueError, match=r"lie in \[0, 2\]"):
        classifier().evaluate(X, Y_CLASS + 3)


def test_mismatched_layer_widths_and_bad_constructor_arguments():
    cases = [
        (lambda: matnet.MLP([4]), "at least an input and an output"),
        (lambda: matnet.MLP([4, 0, 2]), "positive integer"),
        (lambda: matnet.MLP([4, 8, 2], activation="swish"), "unknown activation"),
        (lambda: matnet.MLP([4, 8, 2], dropout=1.0), "dropout rate=1.0"),
        (lambda: matnet.MLP([4, 8, 2], dtype="float16"), "not supported"),
        (lambda: matnet.Sequential([matnet.Dense(4, 8), matnet.Dense(9, 2)]), "follows a layer"),
    ]
    for build, match in cases:
        with pytest.raises(ValueError, match=match):
            build()


# --- awkward input that must work ---------------------------------------------------------------


def fit_and_weights(X_in, y_in=Y_CLASS, **options):
    model = classifier()
    history = model.fit(X_in, y_in, epochs=2, batch_size=8, verbose=0, **options)
    assert len(history) == 2 and np.all(np.isfinite(model.flat_params))
    return model.flat_params.copy()


def test_non_contiguous_read_only_and_memory_mapped_input_work(tmp_path):
    expected = fit_and_weights(X)
    fortran = np.asfortranarray(X)
    strided = np.repeat(X, 2, axis=1)[:, ::2]
    assert not strided.flags.c_contiguous
    read_only = X.copy()
    read_only.flags.writeable = False
    y_read_only = Y_CLASS.copy()
    y_read_only.flags.writeable = False
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    memmap = np.memmap(tmp_path / "X.bin", dtype=X.dtype, mode="w+", shape=X.shape)
    memmap[:] = X
    memmap.flush()
    memmap = np.memmap(tmp_path / "X.bin", dtype=X.dtype, mode="r", shape=X.shape)
    for variant in (fortran, strided, read_only, mapped, memmap):
        assert np.array_equal(fit_and_weights(variant, y_read_only), expected)
    # Prediction on the same kinds of arrays, and the inputs are left as they were.
    model = classifier()
    for variant in (fortran, strided, read_only, mapped, memmap):
        assert np.array_equal(model.predict(variant), model.predict(X))
    assert np.array_equal(mapped, X) and np.array_equal(read_only, X)


def test_int_and_bool_features_work():
    ints = np.round(X * 3).astype(np.int64)
    assert np.array_equal(fit_and_weights(ints), fit_and_weights(ints.astype(float)))
    bools = X > 0
    assert np.array_equal(fit_and_weights(bools), fit_and_weights(bools.astype(float)))
    assert np.array_equal(fit_and_weights(X.astype(np.float32)), fit_and_weights(X))


def test_lists_and_float32_float64_mixes_work():
    assert np.array_equal(fit_and_weights(X.tolist(), Y_CLASS.tolist()), fit_and_weights(X))


def test_batch_size_larger_than_the_data_is_one_batch():
    model = classifier()
    steps = []
    model.fit(X, Y_CLASS, epochs=3, batch_size=1000, verbose=0, callbacks=[_Steps(steps)])
    assert steps == [1, 2, 3]


class _Steps(matnet.Callback):
    def __init__(self, steps):
        self.steps = steps

    def on_batch_end(self, step, logs):
        self.steps.append(step)
        assert logs["batch_size"] == 40


def test_one_row_trains():
    model = classifier()
    history = model.fit(X[:1], Y_CLASS[:1], epochs=3, verbose=0)
    assert len(history) == 3 and model.predict(X[:1]).shape == (1,)


def test_a_single_class_present_trains_and_predicts_it():
    y = np.full(40, 2)
    model = classifier()
    model.fit(X, y, epochs=30, learning_rate=0.05, verbose=0)
    assert np.all(model.predict(X) == 2)


def test_one_hot_targets_and_a_single_sample_per_class_with_validation():
    model = classifier()
    history = model.fit(X, np.eye(3)[Y_CLASS], epochs=2, verbose=0, validation_fraction=0.25)
    assert "val_accuracy" in history.keys()


# --- model files ---------------------------------------------------------------------------------


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.safetensors"
    matnet.save(classifier(), path)
    return path


def relabel(blob, edit):
    """Re-encode a model file after editing its header (the checksum is recomputed, so only the edit
    itself can be what the loader objects to)."""
    tensors, meta = decode_tensors(blob)
    meta.pop("matnet.sha256")
    edit(tensors, meta)
    return encode_tensors(tensors, meta)


def _architecture(edit):
    def apply(tensors, meta):
        config = json.loads(meta["model"])
        edit(config)
        meta["model"] = json.dumps(config)

    return apply


def _header(blob, edit):
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    edit(header)
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]


FILE_ERRORS = [
    ("empty", lambda b: b"", "too short"),
    ("truncated-length", lambda b: b[:5], "too short"),
    ("truncated-header", lambda b: b[:40], "runs past the end"),
    ("truncated-data", lambda b: b[:-3], "span|lie outside|trailing"),
    ("extra-bytes", lambda b: b + b"\0" * 4, "trailing bytes"),
    ("bit-flip-in-data", lambda b: b[:-9] + bytes([b[-9] ^ 0x10]) + b[-8:], "checksum mismatch"),
    ("header-not-json", lambda b: b[:8] + b"{" * (len(b) - 8), "not valid JSON"),
    ("header-too-long", lambda b: (200 * 1024 * 1024).to_bytes(8, "little") + b[8:], "exceeds"),
    (
        "newer-format-version",
        lambda b: relabel(b, lambda t, m: m.update(format_version="99")),
        "newer than this matnet reads",
    ),
    (
        "not-a-matnet-file",
        lambda b: relabel(b, lambda t, m: m.pop("format")),
        "not a matnet model file",
    ),
    (
        "architecture-lies-about-widths",
        lambda b: relabel(
            b, _architecture(lambda c: c["layers"][0].update(n_in=10**6, n_out=10**6))
        ),
        "do not match the architecture",
    ),
    (
        "architecture-unknown-layer",
        lambda b: relabel(b, _architecture(lambda c: c["layers"][1].update(type="os.system"))),
        "unknown layer type",
    ),
    (
        "architecture-unknown-activation",
        lambda b: relabel(b, _architecture(lambda c: c["layers"][1].update(activation="evil"))),
        "unknown activation",
    ),
    (
        "tensor-missing",
        lambda b: relabel(b, lambda t, m: t.pop("2.b")),
        "do not match the architecture",
    ),
    (
        "integer-weights",
        lambda b: relabel(b, lambda t, m: t.update({"0.b": t["0.b"].astype(np.int32)})),
        "non-float",
    ),
    (
        "shape-lies",
        lambda b: _header(b, lambda h: h["0.W"].update(shape=[2**40, 2**40])),
        "needs",
    ),
    (
        "offsets-overlap",
        lambda b: _header(b, lambda h: h["0.b"].update(data_offsets=h["0.W"]["data_offsets"])),
        "overlaps|needs",
    ),
    (
        "offsets-out-of-range",
        lambda b: _header(b, lambda h: h["0.W"].update(data_offsets=[0, 10**12])),
        "outside",
    ),
    (
        "unknown-dtype",
        lambda b: _header(b, lambda h: h["0.W"].update(dtype="F128")),
        "unknown dtype",
    ),
    (
        "checksum-edited",
        lambda b: _header(b, lambda h: h["__metadata__"].update({"matnet.sha256": "0" * 64})),
        "checksum",
    ),
]


@pytest.mark.parametrize(
    ("damage", "match"), [row[1:] for row in FILE_ERRORS], ids=[row[0] for row in FILE_ERRORS]
)
def test_damaged_model_file_raises_model_file_error(model_file, damage, match):
    model_file.write_bytes(damage(model_file.read_bytes()))
    with pytest.raises(matnet.ModelFileError, match=match):
        matnet.load(model_file)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(matnet.ModelFileError, match="no such file"):
        matnet.load(tmp_path / "nope.safetensors")
    with pytest.raises(matnet.ModelFileError, match="is a directory"):
        matnet.load(tmp_path)


def test_a_failed_save_leaves_the_old_file_and_no_temporary(model_file):
    before = model_file.read_bytes()
    model = classifier()
    model.metadata = {"not json": object()}
    with pytest.raises(TypeError):
        matnet.save(model, model_file)
    assert model_file.read_bytes() == before
    assert [p.name for p in model_file.parent.iterdir()] == [model_file.name]
