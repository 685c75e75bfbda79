"""Tables for the command line: CSV files (with precise errors) and the bundled datasets.

A CSV file has a header row and one example per line; its delimiter (comma, semicolon or tab) is
sniffed with the standard :class:`csv.Sniffer`, it may be gzip-compressed (``.csv.gz``), UTF-8 or any
encoding Python knows (``encoding="latin-1"``), or ``-`` for standard input; ``.parquet`` files are
read with the optional ``pyarrow`` (``pip install 'matnet[parquet]'``). Features are numbers (True/False
read as 1/0), or, with ``raw=True`` (for table models, see :mod:`matnet.tabular`), any cells: text and
empty cells are kept as they are. A class label may be any string. Every defect is reported as a
:class:`DataError` naming the file, the line and the column, before any work starts. The bundled datasets (``digits``, ``iris``, ``wine``,
``breast_cancer``, ``diabetes``) ship as small ``.npz`` files in ``matnet/data`` and load with NumPy
alone; ``NAME:train`` and ``NAME:test`` select a fixed 75/25 split (stratified for classifiers, seed 0),
so a model trained on ``digits:train`` can be evaluated on data it never saw.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matnet.errors import DataError
from matnet.validation import holdout_rows

__all__ = [
    "DATASETS",
    "DataError",
    "Table",
    "load_dataset",
    "read_csv",
    "load_data",
    "encode_labels",
    "canonical_label",
    "canonical_labels",
    "target_values",
    "train_test_indices",
]

DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
SPLITS = ("train", "test")
TEST_FRACTION = 0.25
_DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass
class Table:
    """A table of examples.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
        float64, or (from ``read_csv(..., raw=True)`` when some cell is text or empty) an object
        array of the stripped cells as strings, for a table model's TableInput to read.
    y : ndarray of shape (n_samples,) or None
        The target column: the cells as stripped strings for a CSV file (labels or numbers, see
        :func:`target_values` and :func:`encode_labels`); strings or float64 for a bundled dataset.
    feature_names : list of str
    target_name : str or None
    source : str
        The file or dataset it came from (for messages).
    task : {"classification", "regression"} or None
        Known for the bundled datasets; None for a CSV file (decided from the target).
    lines : list of int or None
        For a CSV file, the line each row came from (for messages).
    """

    def where(self, i: int) -> str:
        """``"data.csv, line 7"`` for row ``i`` of a CSV file, ``"row 7 of digits"`` otherwise."""
        if self.lines is not None:
            return f"{self.source}, line {self.lines[i]}"
        return f"row {i + 1} of {self.source}"

    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str]
    target_name: str | None
    source: str
    task: str | None = None
    lines: list[int] | None = None

    def __len__(self) -> int:
        return self.X.shape[0]

    def target(self) -> np.ndarray:
        """The target column :attr:`y`; a :class:`DataError` when the table has none."""
        if self.y is None:
            raise DataError(f"{self.source}: no target column")
        return self.y


# --- labels and splits -------------------------------------------------------------------------


def _number_or_none(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def number_or_none(text: str) -> float | None:
    """``text`` as a finite float, or None when it reads as no finite number."""
    return _number_or_none(text)


def is_number(text: str) -> bool:
    """True when ``text`` reads as a finite number."""
    return _number_or_none(str(text)) is not None


def _canonical_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def encode_labels(y: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Class indices and the sorted class names of a label column.

    Numeric labels sort as numbers and are written canonically ("1.0" and "1" are one class, named "1");
    any other labels sort as strings.

    Returns
    -------
    indices : ndarray of shape (n_samples,), intp
    labels : list of str
        ``labels[indices[i]]`` is the label of row ``i``.
    """
    y = np.asarray(y)
    if y.dtype.kind in "iuf":
        values = y.astype(np.float64)
    else:
        parsed = [_number_or_none(str(v)) for v in np.unique(y)]
        values = None
        if all(p is not None for p in parsed):
            values = np.asarray([_number_or_none(str(v)) for v in y], dtype=np.float64)
    if values is not None:
        uniques, indices = np.unique(values, return_inverse=True)
        return indices.astype(np.intp), [_canonical_number(u) for u in uniques]
    uniques, indices = np.unique(y.astype(str), return_inverse=True)
    return indices.astype(np.intp), [str(u) for u in uniques]


def target_values(table: Table) -> np.ndarray:
    """The target column as float64 (regression), naming the first cell that is not a number."""
    y = table.target()
    if y.dtype.kind in "iuf":
        return y.astype(np.float64)
    for i, text in enumerate(y):
        if _number_or_none(str(text)) is None:
            raise DataError(
                f"{table.where(i)}, column {table.target_name!r}: {str(text)!r} is not a number, so "
                "the target cannot be regressed (use --task classification for labels)"
            )
    return y.astype(np.float64)


def is_integer_valued(y: np.ndarray) -> bool:
    """True when every target is a whole number (numbers given as text are parsed)."""
    try:
        values = np.asarray(y).astype(np.float64)
    except ValueError:
        return False
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def canonical_label(value: object) -> str:
    """A label as text in one form, so that a CSV cell and a model's class compare equal: numbers as
    :func:`encode_labels` names them (``"1.0"``, ``" 1"`` and ``1`` are ``"1"``), other labels
    stripped (``True`` stays ``"True"``, not the number 1)."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    text = str(value)
    number = _number_or_none(text)
    return text.strip() if number is None else _canonical_number(number)


def canonical_labels(y: np.ndarray, numeric: bool) -> np.ndarray:
    """Labels as the strings :func:`encode_labels` names classes with."""
    y = np.asarray(y)
    if not numeric:
        return np.char.strip(y.astype(str))
    out = []
    for v in y:
        value = _number_or_none(str(v))
        out.append(str(v).strip() if value is None else _canonical_number(value))
    return np.asarray(out, dtype=str)


def train_test_indices(
    y: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = 0, stratify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row indices ``(train, test)``: ``test_fraction`` of each class (or of all rows) held out."""
    n = len(y)
    test = holdout_rows(n, test_fraction, y, np.random.default_rng(seed), stratify)
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), test


# --- bundled datasets --------------------------------------------------------------------------


def _split_name(spec: str) -> tuple[str, str | None]:
    name, _, split = spec.partition(":")
    return name, (split or None)


def is_dataset_name(spec: str) -> bool:
    """True for ``digits``, ``iris:train`` and the like (an existing file of that name wins)."""
    name, split = _split_name(str(spec))
    return name in DATASETS and not os.path.exists(spec)


def load_dataset(spec: str) -> Table:
    """A bundled dataset: ``"digits"``, ``"iris"``, ``"wine"``, ``"breast_cancer"``, ``"diabetes"``,
    optionally with ``":train"`` or ``":test"`` for the fixed 75/25 split (seed 0).

    Class labels come back as strings (``"setosa"``, ``"0"``, ...); the diabetes target as float64.
    """
    name, split = _split_name(spec)
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in (None, *SPLITS):
        raise DataError(f"unknown split {split!r} in {spec!r}; use {name}:train or {name}:test")
    with np.load(_DATA_DIR / f"{name}.npz", allow_pickle=False) as data:
        X = data["X"].astype(np.float64)
        task = str(data["task"])
        if task == "classification":
            y = data["target_names"][data["y"]]
        else:
            y = data["y"].astype(np.float64)
        feature_names = [str(f) for f in data["feature_names"]]
        target_name = str(data["target_name"])
    if split is not None:
        train, test = train_test_indices(y, stratify=task == "classification")
        rows = train if split == "train" else test
        X, y = X[rows], y[rows]
    return Table(X, y, feature_names, target_name, spec, task)


# --- CSV ---------------------------------------------------------------------------------------


def _describe(text: str) -> str:
    return "an empty cell" if not text.strip() else repr(text)


def read_csv(
    path: str | os.PathLike,
    target: str | None = None,
    *,
    require_target: bool = True,
    features: list[str] | None = None,
    raw: bool = False,
    encoding: str = "utf-8-sig",
) -> Table:
    """Read a CSV file with a header row (or a Parquet file).

    Parameters
    ----------
    path : str or path-like
        A ``.csv`` file (comma, semicolon or tab separated: the delimiter is sniffed), a
        ``.csv.gz`` file, ``"-"`` for standard input, or a ``.parquet`` file (needs pyarrow; its
        cells are read as the text of their values, nulls as empty cells, and "line" in
        messages counts data rows from 2 as a CSV file would).
    target : str, optional
        The target column's name. Its cells may be strings (class labels) or numbers.
    require_target : bool
        When False, a missing target column is allowed (prediction on unlabeled data).
    features : list of str, optional
        Read only these feature columns, in this order (the others are ignored); by default every
        column but the target.
    raw : bool
        Keep feature cells that are not numbers (text, empty or ``NA`` cells) instead of refusing
        them: ``X`` is then an object array of the stripped cells (for a table model).
    encoding : str
        The text encoding (default UTF-8, with or without a byte-order mark); ``"latin-1"``
        reads any byte.

    Returns
    -------
    Table
        ``X`` of shape (n_samples, n_features) holds every other column, as float64 (or raw cells,
        see ``raw``).

    Raises
    ------
    DataError
        Naming the file, the line and the column: a missing or unreadable file, text that is not in
        the encoding, an empty file, a header without rows, a ragged row, a duplicate column name, a
        missing target column, a cell that is not a number, NaN or infinity, or an empty cell (the
        last three only without ``raw``).
    """
    source = str(path)
    if str(path).lower().endswith(".parquet"):
        header, rows, lines = _read_parquet(path, source)
    else:
        header, rows, lines = _rows_of_text(_read_text(path, source, encoding), source)
    return _table(source, header, rows, lines, target, require_target, features, raw)


def read_csv_text(
    text: str,
    source: str,
    target: str | None = None,
    *,
    require_target: bool = True,
    features: list[str] | None = None,
    raw: bool = False,
) -> Table:
    """CSV text (e.g. the body of an HTTP request) read exactly as :func:`read_csv` reads a file,
    with the same checks and the same messages; ``source`` names it in them ("request body")."""
    header, rows, lines = _rows_of_text(text, source)
    return _table(source, header, rows, lines, target, require_target, features, raw)


def _table(
    source: str,
    header: list[str],
    rows: list[list[str]],
    lines: list[int],
    target: str | None,
    require_target: bool,
    features: list[str] | None,
    raw: bool,
) -> Table:
    """The table of a file's header and rows: names, target and feature columns checked."""
    header, rows = _without_trailing_empty_columns(header, rows)
    width = len(header)
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{source}, line 1: column {i + 1} has an empty name")
        if name in header[:i]:
            raise DataError(f"{source}, line 1: the column name {name!r} appears twice")
    if not rows:
        raise DataError(f"{source}: the file has a header but no data rows")
    if target is not None and target not in header:
        if require_target:
            raise DataError(
                f"{source}: no column named {target!r} (--target); the columns are: "
                f"{', '.join(header)}"
            )
        target = None
    t = header.index(target) if target is not None else None
    if features is not None:
        missing = [name for name in features if name not in header]
        if missing:
            raise DataError(
                f"{source}: no column {missing[0]!r}, a feature the model was trained on "
                f"({len(missing)} of its {len(features)} features are missing)"
            )
        columns = [header.index(name) for name in features]
    else:
        columns = [j for j in range(width) if j != t]
    if not columns:
        raise DataError(f"{source}: there are no feature columns besides the target {target!r}")
    cells = np.asarray(rows, dtype=str)

    feature_cells = cells[:, columns]
    try:
        X = feature_cells.astype(np.float64)
    except ValueError:
        X = None
    if X is None or not np.all(np.isfinite(X)):
        names = [header[j] for j in columns]
        try:
            X = _parse_cells(source, feature_cells, names, lines)
        except DataError:
            if not raw:
                raise
            X = _raw_cells(source, feature_cells, names, lines)
    y = None if t is None else _target_cells(source, cells[:, t], header[t], lines)
    return Table(X, y, [header[j] for j in columns], target, source, lines=lines)


def _without_trailing_empty_columns(
    header: list[str], rows: list[list[str]]
) -> tuple[list[str], list[list[str]]]:
    """A spreadsheet's export often ends every line with empty fields (``a,b,y,,``): trailing
    columns with no name and no cell are not data, so they go."""
    width = len(header)
    while width and not header[width - 1] and all(not row[width - 1].strip() for row in rows):
        width -= 1
    if width == len(header):
        return header, rows
    return header[:width], [row[:width] for row in rows]


def _read_text(path: str | os.PathLike, source: str, encoding: str) -> str:
    """The whole text of a file, a gzip file or standard input (``-``)."""
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read()
        elif str(path).lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except FileNotFoundError:
        raise DataError(
            f"{source}: no such file (nor a bundled dataset: {', '.join(DATASETS)})"
        ) from None
    except IsADirectoryError:
        raise DataError(f"{source}: is a directory, not a CSV file") from None
    except (gzip.BadGzipFile, EOFError) as exc:
        raise DataError(f"{source}: not a complete gzip file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{source}: cannot be read ({exc.strerror})") from None
    try:
        return data.decode(encoding)
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r} (try utf-8 or latin-1)") from None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        name = "UTF-8" if encoding.lower().replace("_", "-") in ("utf-8-sig", "utf-8") else encoding
        raise DataError(
            f"{source}, line {line}: not {name} text ({exc.reason} at byte {exc.start}); give "
            "its encoding, e.g. --encoding latin-1"
        ) from None


def _delimiter(text: str) -> str:
    """Comma, semicolon or tab, as :class:`csv.Sniffer` finds it in the first lines (comma when it
    cannot tell, e.g. for a single column)."""
    sample = text[:65536]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _rows_of_text(text: str, source: str) -> tuple[list[str], list[list[str]], list[int]]:
    """The header, the non-blank rows (each as wide as the header) and the line of each row."""
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark read by an encoding that keeps it
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)  # blank lines before the header
        if header is None:
            raise DataError(f"{source}: the file is empty; expected a header row of column names")
        header = [name.strip() for name in header]
        rows: list[list[str]] = []
        lines: list[int] = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if len(row) != len(header):
                raise DataError(
                    f"{source}, line {reader.line_num}: {len(row)} fields, but the header "
                    f"has {len(header)} columns"
                )
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{source}, line {reader.line_num}: malformed CSV ({exc})") from None
    return header, rows, lines


def _read_parquet(
    path: str | os.PathLike, source: str
) -> tuple[list[str], list[list[str]], list[int]]:
    """A Parquet file as a CSV file would read: the header, each cell as text (nulls empty)."""
    from matnet.backend import import_optional

    parquet = import_optional("pyarrow.parquet", "parquet", "reading Parquet files")
    if not os.path.exists(path):
        raise DataError(f"{source}: no such file")
    try:
        table = parquet.read_table(path)
    except Exception as exc:  # pyarrow's errors have no common base but ArrowException
        raise DataError(f"{source}: not a readable Parquet file ({exc})") from None
    header = [str(name) for name in table.column_names]
    columns = [
        ["" if v is None else _cell_text(v) for v in column.to_pylist()] for column in table.columns
    ]
    rows = [list(row) for row in zip(*columns, strict=True)]
    return header, rows, list(range(2, len(rows) + 2))


def _cell_text(value: object) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def _target_cells(source: str, cells: np.ndarray, target: str, lines: list[int]) -> np.ndarray:
    """The target column's stripped cells; an empty, NaN or infinite target names its line."""
    y = np.char.strip(cells)
    empty = np.flatnonzero(y == "")
    if empty.size:
        i = int(empty[0])
        raise DataError(
            f"{source}, line {lines[i]}, column {target!r}: the target cell is empty; "
            "remove or fill rows without a target"
        )
    for i, text in enumerate(y):
        value = _number_or_none(text)
        if value is None and text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise DataError(
                f"{source}, line {lines[i]}, column {target!r}: the target is {str(text)!r}; "
                "remove or fill rows without a target"
            )
    return y


# Boolean cells (as pandas and spreadsheets write them) are the features 1 and 0.
_BOOLEANS = {"true": 1.0, "false": 0.0}


def _parse_cells(source: str, cells: np.ndarray, names: list[str], lines: list[int]) -> np.ndarray:
    """Cell by cell, with Python's float() (and True/False as 1/0): slow, used only when the fast
    conversion fails, to read booleans or name the first bad cell."""
    X = np.empty(cells.shape, dtype=np.float64)
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            text = str(cell)
            try:
                value = _BOOLEANS.get(text.strip().lower())
                if value is None:
                    value = float(text)
            except ValueError:
                raise DataError(
                    f"{source}, line {lines[i]}, column {names[j]!r}: {_describe(text)} is not a "
                    "number (features must be numeric; only the target may hold labels)"
                ) from None
            if not math.isfinite(value):
                raise DataError(
                    f"{source}, line {lines[i]}, column {names[j]!r}: the value is {text.strip()!r}; "
                    "matnet needs finite numbers (remove or impute missing values)"
                )
            X[i, j] = value
    return X


def _raw_cells(source: str, cells: np.ndarray, names: list[str], lines: list[int]) -> np.ndarray:
    """The stripped cells as an object array of strings, for a table model; an infinity (which no
    table layer can scale) names its line and column."""
    X = np.char.strip(cells).astype(object)
    words = np.char.lower(np.char.lstrip(np.char.strip(cells), "+-"))
    for i, j in np.argwhere(np.isin(words, ["inf", "infinity"]))[:1]:
        raise DataError(
            f"{source}, line {lines[i]}, column {names[j]!r}: the value is {X[i, j]!r}; matnet "
            "needs finite numbers (leave the cell empty to mark it missing)"
        )
    return X


def load_data(
    spec: str,
    target: str | None = None,
    *,
    require_target: bool = True,
    features: list[str] | None = None,
    raw: bool = False,
    encoding: str = "utf-8-sig",
) -> Table:
    """A bundled dataset by name, or else a CSV file by path (see :func:`read_csv`).

    For a bundled dataset ``target`` may be omitted (or must name its target column).
    """
    spec = str(spec)
    if is_dataset_name(spec):
        table = load_dataset(spec)
        if target is not None and target != table.target_name:
            raise DataError(
                f"dataset {spec!r} has no column {target!r}; its target is {table.target_name!r} "
                "(a bundled dataset needs no --target)"
            )
        if features is not None:
            missing = [name for name in features if name not in table.feature_names]
            if missing:
                raise DataError(
                    f"dataset {spec!r} has no feature {missing[0]!r}, which the model was trained on"
                )
            columns = [table.feature_names.index(name) for name in features]
            table.X, table.feature_names = table.X[:, columns], list(features)
        return table
    if target is None and require_target:
        raise DataError(f"{spec}: give the target column with --target NAME")
    return read_csv(
        spec, target, require_target=require_target, features=features, raw=raw, encoding=encoding
    )
