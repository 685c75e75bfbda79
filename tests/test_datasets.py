"""CSV reading with errors that name the file, line and column; the bundled datasets."""

from __future__ import annotations

import numpy as np
import pytest

from matnet.datasets import (
    DATASETS,
    DataError,
    canonical_labels,
    encode_labels,
    load_data,
    load_dataset,
    read_csv,
    target_values,
    train_test_indices,
)


def _csv(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- reading good files ----------------------------------------------------------------------


def test_reads_features_and_string_labels(tmp_path):
    path = _csv(tmp_path, "a,b,label\n1,2.5,cat\n-3,4e2,dog\n\n5, 6 ,cat\n")
    table = read_csv(path, "label")
    np.testing.assert_array_equal(table.X, [[1, 2.5], [-3, 400], [5, 6]])
    assert table.X.dtype == np.float64
    assert table.feature_names == ["a", "b"]
    assert table.y.tolist() == ["cat", "dog", "cat"]
    assert table.lines == [2, 3, 5]  # the blank line is skipped but counted
    indices, labels = encode_labels(table.y)
    assert labels == ["cat", "dog"]
    assert indices.tolist() == [0, 1, 0]


def test_target_may_be_any_column_and_bom_is_ignored(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffy,x1,x2\n1,2,3\n0,5,6\n".encode())
    table = read_csv(path, "y")
    assert table.feature_names == ["x1", "x2"]
    np.testing.assert_array_equal(target_values(table), [1.0, 0.0])


def test_quoted_fields_with_commas(tmp_path):
    path = _csv(tmp_path, 'x,"name, with comma"\n1,"a, b"\n2,"c"\n')
    table = read_csv(path, "name, with comma")
    assert table.y.tolist() == ["a, b", "c"]


def test_selected_feature_columns_in_model_order(tmp_path):
    path = _csv(tmp_path, "b,id_text,a,y\n1,x,2,0\n3,z,4,1\n")
    table = read_csv(path, "y", features=["a", "b"])
    np.testing.assert_array_equal(table.X, [[2, 1], [4, 3]])


def test_numeric_labels_sort_as_numbers_and_merge_spellings():
    indices, labels = encode_labels(np.array(["10", "2", "1.0", "1", "2"]))
    assert labels == ["1", "2", "10"]
    assert indices.tolist() == [2, 1, 0, 0, 1]
    assert canonical_labels(np.array(["1.0", "10"]), numeric=True).tolist() == ["1", "10"]
    assert canonical_labels(np.array([" a"]), numeric=False).tolist() == ["a"]


# --- every defect names the file, the line and the column --------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        read_csv(tmp_path / "nope.csv", "y")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        read_csv(tmp_path, "y")


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        read_csv(_csv(tmp_path, "", "empty.csv"), "y")
    with pytest.raises(DataError, match="the file is empty"):
        read_csv(_csv(tmp_path, "\n\n", "blank.csv"), "y")


def test_header_without_rows(tmp_path):
    with pytest.raises(DataError, match="header but no data rows"):
        read_csv(_csv(tmp_path, "a,b,y\n"), "y")


def test_missing_target_column(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,3\n")
    with pytest.raises(DataError, match=r"no column named 'species'.*the columns are: a, b, y"):
        read_csv(path, "species")
    table = read_csv(path, "species", require_target=False)
    assert table.y is None and table.X.shape == (1, 3)


def test_non_numeric_cell_names_line_and_column(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,x\n3,4,y\n5,oops,x\n")
    with pytest.raises(DataError, match=r"data\.csv, line 4, column 'b': 'oops' is not a number"):
        read_csv(path, "y")


def test_ragged_row(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,x\n3,4\n")
    with pytest.raises(DataError, match=r"line 3: 2 fields, but the header has 3 columns"):
        read_csv(path, "y")
    path = _csv(tmp_path, "a,b,y\n1,2,x,9\n")
    with pytest.raises(DataError, match=r"line 2: 4 fields"):
        read_csv(path, "y")


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-Infinity"])
def test_nan_or_infinite_cell(tmp_path, cell):
    path = _csv(tmp_path, f"a,b,y\n1,2,x\n3,{cell},y\n")
    with pytest.raises(DataError, match=rf"line 3, column 'b': the value is '{cell}'"):
        read_csv(path, "y")


def test_empty_feature_cell(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,,x\n")
    with pytest.raises(DataError, match=r"line 2, column 'b': an empty cell is not a number"):
        read_csv(path, "y")


def test_empty_or_nan_target_cell(tmp_path):
    with pytest.raises(DataError, match=r"line 3, column 'y': the target cell is empty"):
        read_csv(_csv(tmp_path, "a,y\n1,x\n2, \n"), "y")
    with pytest.raises(DataError, match=r"line 2, column 'y': the target is 'NaN'"):
        read_csv(_csv(tmp_path, "a,y\n1,NaN\n2,3\n"), "y")


def test_duplicate_and_empty_column_names(tmp_path):
    with pytest.raises(DataError, match="'a' appears twice"):
        read_csv(_csv(tmp_path, "a,a,y\n1,2,3\n"), "y")
    with pytest.raises(DataError, match="column 2 has an empty name"):
        read_csv(_csv(tmp_path, "a,,y\n1,2,3\n"), "y")


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,y\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_csv(path, "y")


def test_missing_model_feature(tmp_path):
    path = _csv(tmp_path, "a,y\n1,2\n")
    with pytest.raises(DataError, match="no column 'b', a feature the model was trained on"):
        read_csv(path, "y", features=["a", "b"])


def test_regression_target_that_is_not_a_number(tmp_path):
    table = read_csv(_csv(tmp_path, "a,y\n1,2.5\n2,high\n"), "y")
    with pytest.raises(DataError, match=r"line 3, column 'y': 'high' is not a number"):
        target_values(table)


# --- bundled datasets ------------------------------------------------------------------------

SHAPES = {
    "digits": ((1797, 64), 10),
    "iris": ((150, 4), 3),
    "wine": ((178, 13), 3),
    "breast_cancer": ((569, 30), 2),
    "diabetes": ((442, 10), None),
}


@pytest.mark.parametrize("name", DATASETS)
def test_bundled_dataset_loads_with_numpy_alone(name):
    table = load_dataset(name)
    shape, n_classes = SHAPES[name]
    assert table.X.shape == shape and table.X.dtype == np.float64
    assert np.all(np.isfinite(table.X))
    assert len(table.feature_names) == shape[1]
    if n_classes is None:
        assert table.task == "regression" and table.y.dtype == np.float64
    else:
        assert table.task == "classification"
        assert len(np.unique(table.y)) == n_classes


def test_bundled_values_match_the_original_data():
    iris = load_dataset("iris")
    np.testing.assert_array_equal(iris.X[0], [5.1, 3.5, 1.4, 0.2])
    assert iris.y[0] == "setosa" and iris.y[-1] == "virginica"
    digits = load_dataset("digits")
    assert digits.X.max() == 16 and digits.y[:3].tolist() == ["0", "1", "2"]
    diabetes = load_dataset("diabetes")
    assert diabetes.y[:3].tolist() == [151.0, 75.0, 141.0]


def test_train_test_split_is_fixed_disjoint_and_stratified():
    full = load_dataset("digits")
    train, test = load_dataset("digits:train"), load_dataset("digits:test")
    assert len(train) + len(test) == len(full)
    assert abs(len(test) - 0.25 * len(full)) < 10
    rows = {r.tobytes() for r in test.X}
    assert sum(r.tobytes() in rows for r in train.X) <= 5  # digits has a few duplicate images
    for label in np.unique(full.y):
        share = np.mean(test.y == label) / np.mean(full.y == label)
        assert 0.9 < share < 1.1
    again = load_dataset("digits:test")
    np.testing.assert_array_equal(again.X, test.X)
    tr, te = train_test_indices(np.arange(10), 0.3, stratify=False)
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(10)) and te.size == 3


def test_dataset_names_and_targets():
    with pytest.raises(DataError, match="unknown split 'valid'"):
        load_dataset("iris:valid")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="needs no --target"):
        load_data("iris", "species")
    assert load_data("iris", "target").X.shape == (150, 4)
    with pytest.raises(DataError, match="give the target column"):
        load_data("some_file.csv")


def test_a_file_named_like_a_dataset_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "iris").write_text("a,y\n1,2\n")
    assert load_data("iris", "y").X.shape == (1, 1)


@pytest.mark.parametrize("name", DATASETS)
def test_bundled_copies_equal_scikit_learns(name):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    loader = {
        "digits": sklearn_datasets.load_digits,
        "iris": sklearn_datasets.load_iris,
        "wine": sklearn_datasets.load_wine,
        "breast_cancer": sklearn_datasets.load_breast_cancer,
        "diabetes": lambda: sklearn_datasets.load_diabetes(scaled=False),
    }[name]
    bunch = loader()
    table = load_dataset(name)
    np.testing.assert_array_equal(table.X, bunch.data)
    assert table.feature_names == [str(f) for f in bunch.feature_names]
    if name == "diabetes":
        np.testing.assert_array_equal(table.y, bunch.target)
    else:
        assert table.y.tolist() == [str(bunch.target_names[t]) for t in bunch.target]
