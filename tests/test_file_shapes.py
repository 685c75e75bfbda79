"""Real-world file shapes (tests/data/shapes/): each file's column report, and `matnet train` →
`matnet predict` → ONNX with answers that agree. Plus the behaviours a user expects of such files:
decimal commas read as numbers, dates as a time line, ids dropped, gaps answered."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest

import matnet
from matnet.cli import main
from matnet.datasets import read_csv
from matnet.tabular import infer_columns

SHAPES = Path(__file__).parent / "data" / "shapes"

# file: (target, extra train options, {column: (kind, reason)}, {dropped column: reason prefix})
CASES = {
    "semicolon_decimal_comma.csv": (
        "y", [],
        {"x": ("numeric", "numbers with decimal commas"),
         "z": ("numeric", "numbers with decimal commas")},
        {},
    ),
    "latin1.csv": (
        "price", ["--encoding", "latin-1"],
        {"city": ("categorical", "text"), "size": ("numeric", "numbers")},
        {},
    ),
    "bom.csv": ("label", [], {"a": ("numeric", "numbers"), "b": ("numeric", "numbers")}, {}),
    "dates.csv": (
        "load", [],
        {"day": ("numeric", "dates YYYY-MM-DD, as days"),
         "stamp": ("numeric", "dates YYYY-MM-DD, as days"),
         "temp": ("numeric", "numbers")},
        {},
    ),
    "row_id.csv": (
        "y", [],
        {"x1": ("numeric", "numbers"), "x2": ("numeric", "numbers")},
        {"id": "id: 80 distinct whole numbers, a run", "name": "id: 80 distinct values"},
    ),
    "empty_constant.csv": (
        "y", [],
        {"a": ("numeric", "numbers"), "b": ("numeric", "numbers")},
        {"empty": "empty: every cell is missing", "const": "constant: '7' in every row"},
    ),
    "quoted_commas.csv": (
        "y", [],
        {"colour": ("categorical", "text"), "weight": ("numeric", "numbers")},
        {},
    ),
    "spreadsheet_export.csv": (
        "y", [], {"a": ("numeric", "numbers"), "b": ("numeric", "numbers")}, {},
    ),
    "tabs.tsv": (
        "y", [], {"a": ("numeric", "numbers"), "colour": ("categorical", "text")}, {},
    ),
    "thousands.csv": (
        "price", [],
        {"income": ("numeric", "numbers with thousands separator ','"),
         "rooms": ("numeric", "numbers")},
        {},
    ),
    "yes_no.csv": (
        "risk", [],
        {"smoker": ("numeric", "yes/no as 1/0"), "insured": ("numeric", "true/false as 1/0"),
         "age": ("numeric", "numbers")},
        {},
    ),
    "percent.csv": (
        "y", [],
        {"rate": ("numeric", "numbers with percent signs"),
         "share": ("numeric", "numbers with percent signs")},
        {},
    ),
    "no_gaps.csv": (
        "y", [],
        {"u": ("numeric", "numbers"), "v": ("numeric", "numbers"), "w": ("numeric", "numbers")},
        {},
    ),
}  # fmt: skip


def report_of(name):
    target, options, _, _ = CASES[name]
    encoding = options[options.index("--encoding") + 1] if "--encoding" in options else "utf-8-sig"
    table = read_csv(SHAPES / name, target, raw=True, encoding=encoding)
    columns = {n: table.X[:, j] for j, n in enumerate(table.feature_names)}
    return infer_columns(columns)


@pytest.mark.parametrize("name", sorted(CASES))
def test_column_report(name):
    _, _, expected, dropped = CASES[name]
    report = report_of(name)
    assert {c.name: (c.kind, c.reason) for c in report.columns} == expected
    assert {c.name for c in report.dropped} == set(dropped)
    for c in report.dropped:
        assert c.reason.startswith(dropped[c.name]), (c.name, c.reason)
    text = report.text()
    for column in [*expected, *dropped]:
        assert re.search(rf"^  {re.escape(column)} ", text, re.M), text


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def predictions(capsys, model_path, data, *options):
    text = cli(capsys, "predict", model_path, data, *options)
    rows = list(csv.reader(io.StringIO(text)))
    return np.asarray([row[0] for row in rows[1:]])


def train(capsys, tmp_path, name, *more):
    target, options, _, _ = CASES[name]
    out = tmp_path / (Path(name).stem + ".st")
    text = cli(
        capsys, "train", SHAPES / name, "--target", target, "--quiet", "--out", out,
        *options, *more,
    )  # fmt: skip
    return out, text


def r2(y, p):
    return 1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)


def column(path, name, delimiter=","):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter=delimiter))
    return [row[name] for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_train_predict_onnx_round_trip(name, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    _, options, _, _ = CASES[name]
    model_path, text = train(capsys, tmp_path, name, "--epochs", "4")
    assert "column types of" in text
    model = matnet.load(model_path)
    assert model.takes_table
    predict_options = options if "--encoding" in options else []
    cli_answers = predictions(capsys, model_path, SHAPES / name, *predict_options)
    onnx_path = tmp_path / "m.onnx"
    cli(capsys, "export", model_path, onnx_path)
    session = ort.InferenceSession(
        onnx.load(str(onnx_path)).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    encoding = options[-1] if "--encoding" in options else "utf-8-sig"
    table = read_csv(SHAPES / name, None, require_target=False, raw=True, encoding=encoding,
                     features=model.feature_names)  # fmt: skip
    codes = model.input_matrix(table.X, finite=False)
    feed = {}
    for j, c in enumerate(model.layers[0].columns):
        if c["kind"] == "numeric":  # the graph takes the number the model reads the cell as
            feed[c["name"]] = codes[:, [j]].astype(np.float32)
        else:
            feed[c["name"]] = table.X[:, [j]].astype(str)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed),
                       strict=True))  # fmt: skip
    if model.classes is not None:
        assert [str(v) for v in outputs["label"].ravel()] == cli_answers.tolist()
    else:
        expected = cli_answers.astype(np.float64)
        got = outputs["variable"].ravel().astype(np.float64)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@pytest.mark.slow
def test_decimal_commas_read_as_numbers_generalize_to_values_never_seen(tmp_path, capsys):
    model_path, _ = train(capsys, tmp_path, "semicolon_decimal_comma.csv")
    test = SHAPES / "semicolon_decimal_comma_test.csv"
    seen = set(column(SHAPES / "semicolon_decimal_comma.csv", "x", ";"))
    assert not seen & set(column(test, "x", ";"))  # every test value is new
    y = np.asarray([float(v.replace(",", ".")) for v in column(test, "y", ";")])
    assert r2(y, predictions(capsys, model_path, test).astype(float)) >= 0.9


@pytest.mark.slow
def test_a_date_that_drives_the_target_generalizes_to_unseen_dates(tmp_path, capsys):
    model_path, _ = train(capsys, tmp_path, "dates.csv")
    test = SHAPES / "dates_test.csv"
    assert not set(column(SHAPES / "dates.csv", "day")) & set(column(test, "day"))
    y = np.asarray(column(test, "load"), dtype=float)
    assert r2(y, predictions(capsys, model_path, test).astype(float)) >= 0.8


@pytest.mark.slow
def test_shuffling_a_row_id_leaves_every_prediction_unchanged(tmp_path, capsys):
    model_path, text = train(capsys, tmp_path, "row_id.csv", "--epochs", "3")
    assert re.search(r"id +dropped \(id: 80 distinct whole numbers", text)
    lines = (SHAPES / "row_id.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    ids = np.random.default_rng(0).permutation(len(rows)) + 1000
    shuffled = [",".join([str(i), *row[1:]]) for i, row in zip(ids, rows, strict=True)]
    (tmp_path / "shuffled.csv").write_text("\n".join([lines[0], *shuffled]) + "\n")
    before = predictions(capsys, model_path, SHAPES / "row_id.csv")
    after = predictions(capsys, model_path, tmp_path / "shuffled.csv")
    assert before.tolist() == after.tolist()
    # --keep keeps it (and then it is a feature).
    _, text = train(capsys, tmp_path, "row_id.csv", "--epochs", "1", "--keep", "id")
    assert re.search(r"id +numeric \(numbers\)", text)


@pytest.mark.slow
def test_a_model_trained_without_gaps_answers_rows_with_them(tmp_path, capsys):
    model_path, _ = train(capsys, tmp_path, "no_gaps.csv", "--epochs", "3")
    answers = predictions(capsys, model_path, SHAPES / "with_gaps.csv").astype(float)
    assert answers.shape == (3,) and np.all(np.isfinite(answers))
    model = matnet.load(model_path)
    # The same answers through Python, from a list of row dicts.
    rows = [{"u": 0.5, "v": None, "w": 1.0}, {"u": None, "v": None, "w": 0.3},
            {"u": 1.0, "v": -1.0, "w": "NA"}]  # fmt: skip
    np.testing.assert_allclose(
        model.predict(rows), answers, rtol=0, atol=1e-6 * max(1.0, np.abs(answers).max())
    )


def test_a_cell_that_does_not_fit_its_column_names_the_line_and_gives_predict_advice(
    tmp_path, capsys
):
    lines = (SHAPES / "semicolon_decimal_comma.csv").read_text().splitlines()
    cli(capsys, "train", SHAPES / "semicolon_decimal_comma.csv", "--target", "y", "--epochs", "1",
        "--quiet", "--out", tmp_path / "m.st")  # fmt: skip
    # 3.5 in a column of decimal commas would read 35 if it were guessed at: it is an error.
    bad = ["x;z", lines[1].rsplit(";", 1)[0], "3.5;1,0"]
    (tmp_path / "bad.csv").write_text("\n".join(bad) + "\n")
    code = main(["predict", str(tmp_path / "m.st"), str(tmp_path / "bad.csv")])
    err = capsys.readouterr().err
    assert code == 2
    assert "bad.csv, line 3, column 'x': '3.5' is not a number with decimal ','" in err
    assert "--categorical" not in err


def test_decimal_option_overrides_the_inference():
    cells = {"v": np.asarray(["1,234", "2,500", "3,750"] * 3, dtype=object)}
    assert infer_columns(cells).columns[0].format == {"decimal": ".", "thousands": ","}
    assert "thousands separator" in infer_columns(cells).notes[0]
    assert infer_columns(cells, decimal=",").columns[0].format == {"decimal": ","}
    # A column that settles it (a comma not followed by three digits) decides for the file.
    both = {**cells, "w": np.asarray(["1,5", "2,25", "3,0"] * 3, dtype=object)}
    assert infer_columns(both).columns[0].format == {"decimal": ","}
