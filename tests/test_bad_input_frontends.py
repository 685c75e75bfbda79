"""Bad input at the two front ends: the scikit-learn estimators and the ``matnet`` command.

One test (or one parametrized row) per row of issue 6, section 3; docs/errors.md lists them. Every
error comes before any work or write: a failed refit leaves a fitted estimator exactly as it was; the
command exits with status 2, one line on stderr and no traceback, and writes no output file (a file
already there is left untouched).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from matnet import Callback, ModelFileError  # noqa: E402
from matnet.cli import main  # noqa: E402
from matnet.io import decode_tensors, encode_tensors  # noqa: E402
from matnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.standard_normal((30, 4))
Y_CLASS = np.array(["a", "b", "c"] * 10)
Y_REG = X @ np.array([1.0, -2.0, 0.5, 0.0])


def estimator(kind: str, **params):
    cls = MLPClassifier if kind == "classifier" else MLPRegressor
    options = {"hidden_layer_sizes": (5,), "max_iter": 3, "random_state": 0, **params}
    return cls(**options)


def targets(kind: str) -> np.ndarray:
    return Y_CLASS if kind == "classifier" else Y_REG


def quiet_fit(est, X_in, y_in, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of 3 iterations
        return est.fit(X_in, y_in, **kw)


def with_value(a, value, at=(2, 1)):
    a = np.array(a, dtype=float)
    a[at] = value
    return a


def snapshot(est) -> dict:
    state = {
        "coefs": [c.copy() for c in est.coefs_],
        "intercepts": [b.copy() for b in est.intercepts_],
        "n_iter_": est.n_iter_,
        "loss_curve_": list(est.loss_curve_),
        "n_features_in_": est.n_features_in_,
        "prediction": est.predict(X),
    }
    if hasattr(est, "classes_"):
        state["classes_"] = est.classes_.copy()
    return state


def assert_unchanged(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            for a, b in zip(value, after[key], strict=True):
                np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_array_equal(value, after[key])


# --- estimators: errors before any change ----------------------------------------------------

# (id, kinds, X, y, constructor params, exception, message excerpt)
ESTIMATOR_ERRORS = [
    ("nan-features", "both", with_value(X, np.nan), None, {}, ValueError, "Input X contains NaN"),
    ("inf-features", "both", with_value(X, np.inf), None, {}, ValueError, "X contains infinity"),
    ("nan-targets", "regressor", X, with_value(Y_REG, np.nan, 3), {}, ValueError, "y contains NaN"),
    ("inf-targets", "regressor", X, with_value(Y_REG, -np.inf, 3), {}, ValueError, "infinity"),
    (
        "nan-class-targets",
        "classifier",
        X,
        with_value(np.arange(30) % 2, np.nan, 3),
        {},
        ValueError,
        "y contains NaN",
    ),
    ("zero-rows", "both", X[:0], "empty", {}, ValueError, r"0 sample\(s\)"),
    (
        "one-row-classifier",
        "classifier",
        X[:1],
        Y_CLASS[:1],
        {},
        ValueError,
        "only one class \\('a'\\)",
    ),
    (
        "one-row-early-stopping",
        "regressor",
        X[:1],
        Y_REG[:1],
        {"early_stopping": True},
        ValueError,
        "train set will be empty",
    ),
    (
        "single-class",
        "classifier",
        X,
        np.array(["a"] * 30),
        {},
        ValueError,
        "only one class .*at least two",
    ),
    (
        "object-features",
        "both",
        np.array([["x", 1.0]] * 30, dtype=object),
        None,
        {},
        TypeError,
        "non-numeric entry 'x' at row 0, column 0",
    ),  # fmt: skip
    (
        "object-dict-features",
        "both",
        np.array([[{"a": 1}, 1.0]] * 30, dtype=object),
        None,
        {},
        TypeError,
        "argument must be a string.* number",
    ),  # fmt: skip
    ("string-features", "both", X.astype(str), None, {}, TypeError, "dtype <U.*numeric features"),
    (
        "complex-features",
        "both",
        X.astype(complex),
        None,
        {},
        ValueError,
        "Complex data not supported: X has dtype complex128",
    ),  # fmt: skip
    (
        "negative-learning-rate",
        "both",
        X,
        None,
        {"learning_rate_init": -0.1},
        ValueError,
        "'learning_rate_init' parameter of MLP\\w+ must be .* range \\(0.0, inf\\). Got -0.1",
    ),  # fmt: skip
    ("zero-max-iter", "both", X, None, {"max_iter": 0}, ValueError, "'max_iter' .*Got 0 instead"),
    ("negative-alpha", "both", X, None, {"alpha": -1.0}, ValueError, "'alpha' .*Got -1.0 instead"),
    (
        "zero-batch-size",
        "both",
        X,
        None,
        {"batch_size": 0},
        ValueError,
        "'batch_size' .*Got 0 instead",
    ),
    (
        "warm-start-wrong-width",
        "both",
        X[:, :3],
        None,
        {"warm_start": True},
        ValueError,
        "X has 3 features, but .* expecting 4",
    ),  # fmt: skip
]
ESTIMATOR_CASES = [
    pytest.param(kind, *row[2:], id=f"{kind}-{row[0]}")
    for row in ESTIMATOR_ERRORS
    for kind in ("classifier", "regressor")
    if row[1] in ("both", kind)
]


@pytest.mark.parametrize(("kind", "X_bad", "y_bad", "params", "error", "match"), ESTIMATOR_CASES)
def test_estimator_rejects_bad_input_and_a_failed_refit_changes_nothing(
    kind, X_bad, y_bad, params, error, match
):
    y = targets(kind)
    if isinstance(y_bad, str):
        y_bad = y[:0]
    elif y_bad is None:
        y_bad = y[: X_bad.shape[0]]
    # A fresh estimator: a clear error.
    if not params.get("warm_start"):
        with pytest.raises(error, match=match):
            quiet_fit(estimator(kind, **params), X_bad, y_bad)
    # An already fitted one: the same error, and nothing about it changed.
    fitted = quiet_fit(estimator(kind), X, y)
    before = snapshot(fitted)
    fitted.set_params(**params)
    with pytest.raises(error, match=match):
        quiet_fit(fitted, X_bad, y_bad)
    assert_unchanged(before, snapshot(fitted))


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize(
    ("X_bad", "error", "match"),
    [
        pytest.param(
            X[:, :3], ValueError, "X has 3 features, but .* expecting 4", id="wrong-width"
        ),
        pytest.param(X[:0], ValueError, r"0 sample\(s\)", id="zero-rows"),
        pytest.param(with_value(X, np.nan), ValueError, "NaN", id="nan"),
        pytest.param(X.astype(str), TypeError, "numeric features", id="string"),
        pytest.param(X.astype(complex), ValueError, "Complex data not supported", id="complex"),
        pytest.param(np.array([["x"] * 4], dtype=object), TypeError, "non-numeric", id="object"),
    ],
)
def test_estimator_predict_rejects_bad_input(kind, X_bad, error, match):
    fitted = quiet_fit(estimator(kind), X, targets(kind))
    with pytest.raises(error, match=match):
        fitted.predict(X_bad)


def test_partial_fit_rejects_labels_unseen_at_fit_time_and_changes_nothing():
    est = estimator("classifier").partial_fit(X, Y_CLASS, classes=["a", "b", "c"])
    before = snapshot(est)
    with pytest.raises(ValueError, match=r"unseen at fit time: \['z'\]"):
        est.partial_fit(X[:3], np.array(["a", "b", "z"]))
    assert_unchanged(before, snapshot(est))
    # A failed first call leaves the estimator unfitted, not half-fitted with classes_ only.
    fresh = estimator("classifier")
    with pytest.raises(ValueError, match="NaN"):
        fresh.partial_fit(with_value(X, np.nan), Y_CLASS, classes=["a", "b", "c"])
    assert not hasattr(fresh, "classes_")
    with pytest.raises(ValueError, match="only one class"):
        estimator("classifier").partial_fit(X, np.array(["a"] * 30), classes=["a"])


def test_one_row_works_for_the_regressor_and_two_classes_for_the_classifier():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = estimator("regressor").fit(X[:1], Y_REG[:1])
        clf = estimator("classifier").fit(X[:2], Y_CLASS[:2])
        lbfgs = estimator("regressor", solver="lbfgs").fit(X[:1], Y_REG[:1])
        partial = estimator("classifier").partial_fit(X[:1], Y_CLASS[:1], classes=["a", "b"])
    assert reg.predict(X[:1]).shape == (1,) and np.all(np.isfinite(reg.predict(X)))
    assert set(clf.predict(X)) <= {"a", "b"}
    assert lbfgs.predict(X[:1]).shape == (1,)
    assert partial.predict_proba(X[:1]).shape == (1, 2)


def test_object_arrays_of_numbers_work_as_scikit_learn_requires():
    a = quiet_fit(estimator("classifier"), X, Y_CLASS)
    b = quiet_fit(estimator("classifier"), X.astype(object), Y_CLASS)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X.astype(object)))


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_non_contiguous_read_only_and_memory_mapped_input_work(tmp_path, kind, dtype):
    y = targets(kind)
    plain = np.ascontiguousarray(X, dtype=dtype)
    reference = quiet_fit(estimator(kind), plain, y)
    expected = reference.predict(plain)
    np.save(tmp_path / "X.npy", plain)
    memmap = np.memmap(tmp_path / "X.raw", dtype=dtype, mode="w+", shape=plain.shape)
    memmap[:] = plain
    memmap.flush()
    read_only = plain.copy()
    read_only.flags.writeable = False
    wide = np.zeros((30, 8), dtype=dtype)
    wide[:, ::2] = plain
    variants = {
        "non-contiguous": wide[:, ::2],
        "fortran": np.asfortranarray(plain),
        "read-only": read_only,
        "np.load-mmap": np.load(tmp_path / "X.npy", mmap_mode="r"),
        "np.memmap": np.memmap(tmp_path / "X.raw", dtype=dtype, mode="r", shape=plain.shape),
    }
    for name, variant in variants.items():
        copy = np.array(variant)
        est = quiet_fit(estimator(kind), variant, y)
        for a, b in zip(reference.coefs_, est.coefs_, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_array_equal(est.predict(variant), expected, err_msg=name)
        np.testing.assert_array_equal(reference.predict(variant), expected, err_msg=name)
        np.testing.assert_array_equal(np.array(variant), copy, err_msg=name)  # not modified


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_int_and_bool_features_work(kind):
    y = targets(kind)
    ints = np.rint(X * 3).astype(np.int64)
    bools = X > 0
    for features in (ints, bools):
        est = quiet_fit(estimator(kind), features, y)
        as_float = quiet_fit(estimator(kind), features.astype(np.float64), y)
        np.testing.assert_array_equal(est.coefs_[0], as_float.coefs_[0])
        np.testing.assert_array_equal(est.predict(features), as_float.predict(features))


class _CountSteps(Callback):
    def __init__(self):
        self.steps = 0

    def on_batch_end(self, step, logs):
        self.steps += 1


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_batch_size_larger_than_the_data_is_one_batch(kind):
    counter = _CountSteps()
    est = estimator(kind, batch_size=1000, callbacks=[counter])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, targets(kind))
    assert any("clipped" in str(w.message) for w in caught)
    assert est.n_iter_ == 3 and counter.steps == 3  # one step per epoch
    assert np.all(np.isfinite(est.coefs_[0]))


# --- estimator model files ---------------------------------------------------------------------


def relabel(blob: bytes, edit) -> bytes:
    tensors, meta = decode_tensors(blob)
    meta.pop("matnet.sha256")
    edit(tensors, meta)
    return encode_tensors(tensors, meta)


def edit_state(edit):
    def apply(tensors, meta):
        state = json.loads(meta["matnet.sklearn"])
        edit(state)
        meta["matnet.sklearn"] = json.dumps(state)

    return lambda blob: relabel(blob, apply)


def flip_bit(blob: bytes) -> bytes:
    return blob[:-9] + bytes([blob[-9] ^ 0x10]) + blob[-8:]


FILE_DAMAGE = {
    "truncated": (lambda b: b[:-3], "lie outside|span|too short"),
    "truncated-to-header": (lambda b: b[:40], "runs past the end"),
    "bit-flipped": (flip_bit, "checksum mismatch"),
    "newer-format-version": (
        lambda b: relabel(b, lambda t, m: m.update(format_version="99")),
        "format version 99 is newer than this matnet reads",
    ),
}
STATE_LIES = {
    "state-lies-about-width": (
        edit_state(lambda s: s["attributes"].update(n_features_in_=7)),
        "n_features_in_=7, but the network takes 4 inputs",
    ),
    "state-lies-about-outputs": (
        edit_state(lambda s: s["attributes"].update(n_outputs_=5)),
        "n_outputs_=5, but the network has 3 outputs",
    ),
    "state-lies-about-classes": (
        edit_state(lambda s: s["attributes"].update(classes_={"ndarray": "<U1", "values": ["a"]})),
        "classes",
    ),
    "state-unknown-class": (
        edit_state(lambda s: s.update({"class": "os.system"})),
        "estimator state in the file is invalid",
    ),
}


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("estimator") / "clf.safetensors"
    quiet_fit(estimator("classifier"), X, Y_CLASS).save(path)
    return path


@pytest.mark.parametrize("damage", sorted({**FILE_DAMAGE, **STATE_LIES}))
def test_damaged_estimator_file_raises_model_file_error(classifier_file, tmp_path, damage):
    edit, match = {**FILE_DAMAGE, **STATE_LIES}[damage]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(edit(classifier_file.read_bytes()))
    with pytest.raises(ModelFileError, match=match):
        MLPClassifier.load(path)
    with pytest.raises(ModelFileError, match="not a MLPRegressor"):
        MLPRegressor.load(classifier_file)


# --- the command line --------------------------------------------------------------------------

HEADER = "a,b,c,y"


def csv_text(rows, header=HEADER) -> str:
    return header + "\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows)


CLASS_ROWS = [
    [*np.round(x, 4).tolist(), label] for x, label in zip(X[:, :3], ["p", "q"] * 15, strict=True)
]
REG_ROWS = [
    [*np.round(x, 4).tolist(), round(float(t), 4)] for x, t in zip(X[:, :3], Y_REG, strict=True)
]


def edited(rows, i, j, value):
    rows = [list(r) for r in rows]
    rows[i][j] = value
    return rows


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def cli_models(tmp_path_factory):
    """A classifier (labels p, q) and a regressor trained through the CLI on features a, b, c."""
    folder = tmp_path_factory.mktemp("cli_models")
    (folder / "class.csv").write_text(csv_text(CLASS_ROWS))
    (folder / "reg.csv").write_text(csv_text(REG_ROWS))
    for name in ("class", "reg"):
        code = main(
            ["train", str(folder / f"{name}.csv"), "--target", "y", "--hidden", "4",
             "--epochs", "2", "--quiet", "--out", str(folder / f"{name}.safetensors")]
        )  # fmt: skip
        assert code == 0
    return folder


def assert_user_error(code, out, err, needles) -> None:
    assert code == 2, (code, err)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


# (id, command, model, CSV text or None for a bundled dataset, extra args, stderr excerpts)
CLI_ERRORS = [
    ("train-inf-feature", "train", None, csv_text(edited(CLASS_ROWS, 3, 1, "-inf")), [],
     ["line 5, column 'b'", "'-inf'"]),
    ("train-nan-target", "train", None, csv_text(edited(REG_ROWS, 4, 3, "NaN")), [],
     ["line 6, column 'y'", "the target is 'NaN'"]),
    ("train-empty-file", "train", None, "", [], ["the file is empty"]),
    ("train-header-only", "train", None, HEADER + "\n", [], ["header but no data rows"]),
    ("train-one-row-class", "train", None, csv_text(CLASS_ROWS[:1]), [],
     ["single class ('p')", "at least two"]),
    ("train-one-row-regression", "train", None, csv_text(REG_ROWS[:1]), [],
     ["--validation-fraction 0.2 of 1 rows", "use more rows or --validation-fraction 0"]),
    ("train-single-class", "train", None, csv_text([[*r[:3], "p"] for r in CLASS_ROWS]), [],
     ["single class ('p')"]),
    # Text in a feature column makes it categorical (tests/test_tabular.py), unless it is
    # declared numeric; NaN and empty cells are missing values.
    ("train-string-cell", "train", None, csv_text(edited(CLASS_ROWS, 4, 2, "abc")),
     ["--numeric", "c"], ["line 6, column 'c'", "'abc' is not a number"]),
    ("train-complex-cell", "train", None, csv_text(edited(CLASS_ROWS, 4, 0, "1+2j")),
     ["--numeric", "a,b"], ["line 6, column 'a'", "'1+2j' is not a number"]),
    ("train-negative-lr", "train", None, csv_text(CLASS_ROWS), ["--lr", "-1"],
     ["--lr", "must be a positive number"]),
    ("train-zero-epochs", "train", None, csv_text(CLASS_ROWS), ["--epochs", "0"],
     ["--epochs", "must be at least 1"]),
    ("train-zero-batch-size", "train", None, csv_text(CLASS_ROWS), ["--batch-size", "0"],
     ["--batch-size", "must be at least 1"]),
    ("predict-missing-feature", "predict", "class",
     csv_text([r[:2] for r in CLASS_ROWS], header="a,b"), [],
     ["no column 'c', a feature the model was trained on"]),
    ("predict-empty-file", "predict", "class", "", [], ["the file is empty"]),
    ("predict-header-only", "predict", "reg", HEADER + "\n", [], ["header but no data rows"]),
    ("predict-string-cell", "predict", "reg", csv_text(edited(REG_ROWS, 2, 1, "x")), [],
     ["line 4, column 'b'", "'x' is not a number"]),
    ("predict-complex-cell", "predict", "class", csv_text(edited(CLASS_ROWS, 2, 1, "3j")), [],
     ["line 4, column 'b'", "'3j' is not a number"]),
    ("evaluate-missing-feature", "evaluate", "reg",
     csv_text([[r[0], r[2], r[3]] for r in REG_ROWS], header="a,c,y"), [],
     ["no column 'b'"]),
    ("evaluate-unseen-label", "evaluate", "class", csv_text(edited(CLASS_ROWS, 6, 3, "z")), [],
     ["line 8, column 'y'", "label 'z' is not one of the model's classes (p, q)"]),
    ("evaluate-nan-target", "evaluate", "reg", csv_text(edited(REG_ROWS, 0, 3, "inf")), [],
     ["line 2, column 'y'", "the target is 'inf'"]),
    ("evaluate-header-only", "evaluate", "class", HEADER + "\n", [], ["no data rows"]),
]  # fmt: skip


def _options_of(command: str) -> set[str]:
    from matnet.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return {o for action in sub.choices[command]._actions for o in action.option_strings}


def assert_options_exist(command: str, err: str) -> None:
    """Every option an error names is one the command has (no Python keyword in its place)."""
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", err))
    assert named <= _options_of(command), (named - _options_of(command), err)
    keywords = {o[2:].replace("-", "_") + "=" for o in _options_of(command) if "-" in o[2:]}
    assert not any(k in err for k in keywords), err


def test_the_error_tables_name_only_options_that_exist():
    """Every option the command-line part of docs/errors.md quotes is one a matnet command has."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    section = text[text.index("## The command line") : text.index("## Requests to the prediction")]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", section))
    commands = ("train", "predict", "evaluate", "explain", "export", "info", "serve")
    every = set().union(*(_options_of(c) for c in commands))
    assert len(named) >= 10 and named <= every, named - every


@pytest.mark.parametrize(
    ("command", "model", "text", "extra", "needles"),
    [row[1:] for row in CLI_ERRORS],
    ids=[row[0] for row in CLI_ERRORS],
)
@pytest.mark.parametrize("output", ["new", "existing"])
def test_cli_rejects_bad_input_with_status_2_and_writes_nothing(
    cli_models, tmp_path, capsys, command, model, text, extra, needles, output
):
    data = tmp_path / "data.csv"
    data.write_text(text)
    out = tmp_path / ("model.safetensors" if command == "train" else "predictions.csv")
    if output == "existing":
        out.write_bytes(b"previous contents")
    argv = [command]
    if model is not None:
        argv.append(cli_models / f"{model}.safetensors")
    argv.append(data)
    if command in ("train", "evaluate"):
        argv += ["--target", "y"]
    if command != "evaluate":
        argv += ["--out", out]
    if command == "train":
        argv += ["--hidden", "4", "--epochs", "2", "--quiet"]
    code, stdout, err = run(capsys, *argv, *extra)
    assert_user_error(code, stdout, err, needles)
    assert stdout == ""
    assert_options_exist(command, err)
    if output == "existing":
        assert out.read_bytes() == b"previous contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["data.csv"] + ([out.name] if output == "existing" else [])
    )


@pytest.mark.parametrize("damage", sorted(FILE_DAMAGE))
@pytest.mark.parametrize("command", ["predict", "evaluate", "info"])
def test_cli_damaged_model_file_is_one_line_and_writes_nothing(
    cli_models, tmp_path, capsys, damage, command
):
    edit, match = FILE_DAMAGE[damage]
    model = tmp_path / "model.safetensors"
    model.write_bytes(edit((cli_models / "class.safetensors").read_bytes()))
    out = tmp_path / "predictions.csv"
    out.write_bytes(b"previous contents")
    extra = {"predict": [cli_models / "class.csv", "--out", out],
             "evaluate": [cli_models / "class.csv"]}.get(command, [])  # fmt: skip
    code, stdout, err = run(capsys, command, model, *extra)
    assert_user_error(code, stdout, err, ["model.safetensors"])
    assert re.search(match, err), err
    assert stdout == ""
    assert out.read_bytes() == b"previous contents"


def test_cli_one_row_trains_without_validation_and_predicts_and_evaluates(
    cli_models, tmp_path, capsys
):
    (tmp_path / "one.csv").write_text(csv_text(REG_ROWS[:1]))
    model = tmp_path / "one.safetensors"
    code, _, err = run(capsys, "train", tmp_path / "one.csv", "--target", "y", "--hidden", "4",
                       "--epochs", "2", "--quiet", "--validation-fraction", "0", "--out", model)  # fmt: skip
    assert code == 0, err
    code, out, err = run(capsys, "predict", model, tmp_path / "one.csv")
    assert code == 0 and out.splitlines()[0] == "y" and len(out.splitlines()) == 2
    (tmp_path / "two.csv").write_text(csv_text(CLASS_ROWS[:2]))
    code, _, err = run(capsys, "train", tmp_path / "two.csv", "--target", "y", "--hidden", "4",
                       "--epochs", "2", "--quiet", "--validation-fraction", "0", "--out", model)  # fmt: skip
    assert code == 0, err
    (tmp_path / "row.csv").write_text(csv_text(CLASS_ROWS[:1]))
    code, out, err = run(capsys, "evaluate", cli_models / "class.safetensors", tmp_path / "row.csv")
    assert code == 0 and "1 rows" in out and "accuracy" in out


def test_cli_int_and_bool_features_work(tmp_path, capsys):
    ints = [[int(round(v * 3)) for v in r[:3]] + [r[3]] for r in CLASS_ROWS]
    bools = [[str(v > 0) for v in r[:3]] + [r[3]] for r in CLASS_ROWS]
    ones = [[int(v > 0) for v in r[:3]] + [r[3]] for r in CLASS_ROWS]
    blobs = {}
    for name, rows in (("ints", ints), ("bools", bools), ("ones", ones)):
        (tmp_path / f"{name}.csv").write_text(csv_text(rows))
        model = tmp_path / f"{name}.safetensors"
        code, _, err = run(capsys, "train", tmp_path / f"{name}.csv", "--target", "y",
                           "--hidden", "4", "--epochs", "2", "--quiet", "--out", model)  # fmt: skip
        assert code == 0, err
        blobs[name] = decode_tensors(model.read_bytes())[0]
        code, out, err = run(capsys, "predict", model, tmp_path / f"{name}.csv")
        assert code == 0 and len(out.splitlines()) == 31, err
    # True/False cells are read as 1/0: the same weights as a file of 1s and 0s.
    for key, value in blobs["ones"].items():
        np.testing.assert_array_equal(value, blobs["bools"][key])


def test_cli_batch_size_larger_than_the_data_works(cli_models, tmp_path, capsys):
    model = tmp_path / "big-batch.safetensors"
    code, out, err = run(capsys, "train", cli_models / "class.csv", "--target", "y",
                         "--hidden", "4", "--epochs", "2", "--batch-size", "1000", "--quiet",
                         "--out", model)  # fmt: skip
    assert code == 0, err
    assert model.exists() and "trained 2 epochs" in out
