"""Tabular preprocessing as layers of the model, so a saved model takes the rows of a raw table.

A table model starts with :class:`TableInput`, which turns named raw columns (numbers, strings, gaps)
into a float matrix of *codes*, one column per raw column:

- a numeric column holds its values, with NaN where a cell is missing;
- a categorical column holds a slot number: ``0`` for a missing cell, ``1`` for a category the
  training rows never showed ("unknown"), ``2 + k`` for the k-th category of the vocabulary.

The layers after it read those codes: :class:`RobustScale` scales numeric columns robustly, clips
outliers smoothly, imputes missing values and appends missing-indicator columns; :class:`OneHot` and
:class:`Embedding` replace categorical code columns by one-hot blocks or learned embedding rows. Each
layer passes the columns it does not own through unchanged (first, in order), so they chain.

Where the state lives. Numbers fitted from the training rows (medians, quantile scales, which
categories were seen) are non-trainable state in the model's flat state vector, like
:class:`~matnet.layers.Standardize`'s mean. The category *vocabulary* holds strings, which a numeric
vector cannot, so it is part of :class:`TableInput`'s config: model files store every layer's config
as JSON, and ``layer_from_config`` rebuilds the layer with its vocabulary. The vocabulary is therefore
fixed when the layer is built (by :func:`matnet.tabular.preprocessor`, from the table it is given);
which of its categories count as known is state, fitted from the training rows by ``adapt``.

Every forward pass here uses only element-wise arithmetic, ``where``, ``sqrt``, a row gather
(``take``) and column concatenation: the simple form an ONNX graph expresses with ``Where``, ``Sub``,
``Mul``, ``Div``, ``Sqrt``, ``Gather`` and ``Concat``, the form :func:`matnet.to_onnx` emits.
"""

from __future__ import annotations

import datetime
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from matnet.errors import CellError, NotFittedError
from matnet.layers.base import Description, Equation, Layer, Symbols, shape_text
from matnet.validation import check_positive_int

__all__ = [
    "TableInput",
    "RobustScale",
    "OneHot",
    "Embedding",
    "MISSING_TEXT",
    "is_missing",
    "number_pattern",
    "parse_cell",
]

Array = Any

#: Cells read as missing (besides None, NaN and pandas' NA): pandas' default ``na_values`` that
#: spreadsheets and R write (``NA`` is what the palmerpenguins CSV uses).
MISSING_TEXT = frozenset(
    {"", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "<NA>", "#N/A"}
)

#: Slot numbers of a categorical code column.
MISSING_SLOT, UNKNOWN_SLOT, FIRST_CATEGORY = 0, 1, 2


def is_missing(value: Any) -> bool:
    """True for a missing cell: None, NaN, pandas' NA/NaT, or text in :data:`MISSING_TEXT`."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    if isinstance(value, str):
        return value.strip() in MISSING_TEXT
    return type(value).__name__ in ("NAType", "NaTType")


def category_key(value: Any) -> str:
    """A category as the text its vocabulary stores: strings stripped, whole numbers without a
    decimal point (``2``, ``2.0`` and ``"2"`` are one category), booleans as ``True``/``False``.

    Raises
    ------
    TypeError
        For a cell that is no scalar (a list, a dict, an arbitrary object).
    """
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    raise TypeError(f"a {type(value).__name__} cannot be a category")


# --- reading a numeric cell in the column's format --------------------------------------------
#
# A numeric column may carry a ``format`` (decided by matnet.tabular.infer_columns from the training
# table and stored in the model file), so that a model answers rows written the way its training
# file was: ``{"decimal": ",", "thousands": "."}`` numbers (``1.234,5``), ``{"percent": True}``
# (``12%`` reads 12), ``{"date": "ymd" | "dmy" | "mdy"}`` dates and date-times (days since
# 1970-01-01, a time of day as the fraction), ``{"true": [...], "false": [...]}`` two words read as
# 1 and 0 (yes/no). A cell that does not fit the format is an error, never a guess: ``3.5`` in a
# column of decimal commas would otherwise read 35.

_DATE_YMD = re.compile(
    r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?"
)
_DATE_XXY = re.compile(
    r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?)?"
)
_EPOCH = datetime.date(1970, 1, 1).toordinal()


def number_pattern(decimal: str = ".", thousands: str = "") -> re.Pattern:
    """The cells a number format reads: an optional sign, digits grouped by ``thousands`` (groups of
    three) or not, and a fraction after ``decimal``."""
    d = re.escape(decimal)
    if thousands:
        t = re.escape(thousands)
        whole = rf"(?:[1-9]\d{{0,2}}(?:{t}\d{{3}})+|\d+)"
    else:
        whole = r"\d+"
    return re.compile(rf"[+-]?(?:{whole}(?:{d}\d*)?|{d}\d+)(?:[eE][+-]?\d+)?")


def _date_days(text: str, order: str) -> float | None:
    """Days since 1970-01-01 of a date or date-time in ``order`` ("ymd", "dmy", "mdy"), or None."""
    match = (_DATE_YMD if order == "ymd" else _DATE_XXY).fullmatch(text)
    if match is None:
        return None
    a, b, c, hour, minute, second = match.groups()
    year, month, day = {
        "ymd": (a, b, c),
        "dmy": (c, b, a),
        "mdy": (c, a, b),
    }[order]
    try:
        days = datetime.date(int(year), int(month), int(day)).toordinal() - _EPOCH
    except ValueError:  # 2021-02-30
        return None
    seconds = int(hour or 0) * 3600 + int(minute or 0) * 60 + float(second or 0)
    if seconds >= 86400:
        return None
    return days + seconds / 86400.0


def parse_cell(cell: Any, fmt: dict[str, Any] | None) -> float:
    """A present numeric cell as a float in the column's format (see the comment above).

    Raises
    ------
    ValueError
        When the cell does not read as a number (or date, or one of the two words) in that format;
        the message says what the format expects.
    """
    if not fmt:
        if isinstance(cell, str):
            return float(cell.strip())
        return float(cell)
    if isinstance(cell, (bool, np.bool_)) and "true" in fmt:
        return 1.0 if cell else 0.0
    if "date" in fmt and hasattr(cell, "toordinal"):  # datetime.date, datetime, pandas Timestamp
        seconds = getattr(cell, "hour", 0) * 3600 + getattr(cell, "minute", 0) * 60
        seconds += getattr(cell, "second", 0) + getattr(cell, "microsecond", 0) / 1e6
        return cell.toordinal() - _EPOCH + seconds / 86400.0
    if isinstance(cell, np.datetime64):
        return float(cell.astype("datetime64[us]").astype(np.int64)) / 86400e6
    if not isinstance(cell, str):
        if "date" in fmt or "true" in fmt:
            raise ValueError(f"expected {format_text(fmt)}")
        return float(cell)
    text = cell.strip()
    if "true" in fmt:
        word = text.lower()
        if word in fmt["true"]:
            return 1.0
        if word in fmt["false"]:
            return 0.0
        raise ValueError(f"expected {format_text(fmt)}")
    if "date" in fmt:
        days = _date_days(text, fmt["date"])
        if days is None:
            raise ValueError(f"expected {format_text(fmt)}")
        return days
    if fmt.get("percent") and text.endswith("%"):
        text = text[:-1].rstrip()
    decimal, thousands = fmt.get("decimal", "."), fmt.get("thousands", "")
    if not number_pattern(decimal, thousands).fullmatch(text):
        raise ValueError(f"expected {format_text(fmt)}")
    if thousands:
        text = text.replace(thousands, "")
    return float(text.replace(decimal, "."))


def format_text(fmt: dict[str, Any] | None) -> str:
    """How a column's format reads, for the column report and error messages."""
    if not fmt:
        return "a number"
    if "true" in fmt:
        return f"{'/'.join(fmt['true'])} or {'/'.join(fmt['false'])} (read as 1 and 0)"
    if "date" in fmt:
        shape = {"ymd": "YYYY-MM-DD", "dmy": "DD.MM.YYYY", "mdy": "MM/DD/YYYY"}[fmt["date"]]
        return f"a date {shape} (read as days since 1970-01-01)"
    parts = [f"decimal {fmt.get('decimal', '.')!r}"]
    if fmt.get("thousands"):
        parts.append(f"thousands {fmt['thousands']!r}")
    if fmt.get("percent"):
        parts.append("a % sign")
    return "a number with " + ", ".join(parts)


def check_format(fmt: Any, name: str) -> None:
    """A column format from a config, checked (a model file is untrusted input)."""
    if fmt is None:
        return
    ok = isinstance(fmt, dict)
    if ok and "date" in fmt:
        ok = fmt["date"] in ("ymd", "dmy", "mdy") and len(fmt) == 1
    elif ok and "true" in fmt:
        ok = set(fmt) == {"true", "false"} and all(
            isinstance(words, list) and all(isinstance(w, str) for w in words)
            for words in (fmt["true"], fmt["false"])
        )
    elif ok:
        ok = set(fmt) <= {"decimal", "thousands", "percent"} and (
            fmt.get("decimal", ".") in (".", ",")
            and fmt.get("thousands", "") in ("", ",", ".", " ", "'", "\u00a0")
            and fmt.get("thousands", "") != fmt.get("decimal", ".")
            and isinstance(fmt.get("percent", False), bool)
        )
    if not ok:
        raise ValueError(f"TableInput column {name!r} has an unreadable format {fmt!r}")


def _check_indices(name: str, columns: Sequence[int], n_features: int) -> list[int]:
    columns = [int(c) for c in columns]
    if len(set(columns)) != len(columns) or any(not 0 <= c < n_features for c in columns):
        raise ValueError(
            f"{name} columns={columns!r} must be distinct indices below n_features={n_features}"
        )
    return columns


def _check_width(name: str, n_features: int) -> int:
    return check_positive_int(f"{name} n_features", n_features)


# --- the raw table's entry ---------------------------------------------------------------------


class TableInput(Layer):
    """The first layer of a table model: raw named columns in, a float matrix of codes out.

    :meth:`encode` (called by the model's ``fit``, ``predict`` and ``evaluate`` on a DataFrame, a
    mapping of columns or a 2-D object array) reads each raw column: numbers as float (NaN where
    missing), categories as slot numbers (0 missing, 1 unknown, 2 + k the k-th category).
    ``forward`` then maps a category the training rows never showed (one only in validation rows,
    or seen fewer than ``min_count`` times) to the unknown slot, so the layers after it see the
    slots that training moved.

    Parameters
    ----------
    columns : list of dict
        One per raw column, in input order: ``{"name": str, "kind": "numeric"}`` (optionally with
        a ``"format"``: decimal commas, thousands separators, percent signs, dates, yes/no words;
        see :func:`parse_cell`) or ``{"name": str, "kind": "categorical", "categories": [str,
        ...]}`` (the vocabulary, as :func:`category_key` writes it).
    min_count : int
        A category seen fewer times in the training rows is read as unknown.

    Notes
    -----
    State: ``known`` (one 0/1 flag per slot of every categorical column, concatenated) and
    ``n_seen`` (training rows seen by :meth:`adapt`).
    """

    takes_table = True

    def __init__(self, columns: list[dict[str, Any]], min_count: int = 1) -> None:
        super().__init__()
        if not isinstance(columns, list) or not columns:
            raise ValueError("TableInput columns must be a non-empty list of column descriptions")
        names = []
        for c in columns:
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                raise ValueError(f"TableInput column {c!r} needs a 'name'")
            if c.get("kind") not in ("numeric", "categorical"):
                raise ValueError(
                    f"TableInput column {c['name']!r} has kind {c.get('kind')!r}; expected "
                    "'numeric' or 'categorical'"
                )
            if c["kind"] == "categorical" and not isinstance(c.get("categories"), list):
                raise ValueError(f"TableInput column {c['name']!r} needs its 'categories' list")
            if c["kind"] == "numeric":
                check_format(c.get("format"), c["name"])
            names.append(c["name"])
        if len(set(names)) != len(names):
            raise ValueError(f"TableInput column names must be distinct, got {names!r}")
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"TableInput min_count={min_count!r} must be a positive integer")
        self.columns = [dict(c) for c in columns]
        self.names = names
        self.min_count = min_count
        self.n_in: int = len(columns)
        self.categorical = [j for j, c in enumerate(columns) if c["kind"] == "categorical"]
        self.sizes = [FIRST_CATEGORY + len(columns[j]["categories"]) for j in self.categorical]
        self._lookup = [
            {str(v): FIRST_CATEGORY + k for k, v in enumerate(columns[j]["categories"])}
            for j in self.categorical
        ]
        self.known: Array = None
        self.n_seen: Array = None

    def state_specs(self):
        return [("known", (max(1, sum(self.sizes)),)), ("n_seen", (1,))]

    def bind_state(self, state):
        self.known, self.n_seen = state["known"], state["n_seen"]

    def needs_adapt(self):
        return float(self.n_seen[0]) == 0

    def adapt(self, A_prev):
        codes = np.asarray(A_prev)
        known = np.zeros(self.known.shape, dtype=np.float64)
        offset = 0
        for j, size in zip(self.categorical, self.sizes, strict=True):
            counts = np.bincount(codes[:, j].astype(np.intp), minlength=size)[:size]
            known[offset : offset + size] = counts >= self.min_count
            known[offset + MISSING_SLOT] = known[offset + UNKNOWN_SLOT] = 1.0  # always their own
            offset += size
        self.known[...] = np.asarray(known, dtype=self.known.dtype)
        self.n_seen[...] = codes.shape[0]

    # --- raw cells to codes -------------------------------------------------------------------

    def encode(self, table: Any, dtype: Any = np.float64) -> np.ndarray:
        """The code matrix of a raw table.

        Parameters
        ----------
        table : DataFrame (pandas, polars), mapping of column name to cells, or 2-D array-like
            Named tables are matched by column name (extra columns are ignored); a 2-D array's
            columns are taken in the layer's order.
        dtype : the model's dtype

        Returns
        -------
        ndarray of shape (n, n_columns)

        Raises
        ------
        ValueError
            When a named column is missing, the row counts differ, a numeric column holds text
            that is no number (or an infinity), or the table has no rows.
        TypeError
            When a categorical cell is no scalar (a list, a dict, ...).
        """
        cells = self._raw_columns(table)
        n = len(cells[0])
        codes = np.empty((n, self.n_in), dtype=dtype)
        slot = dict(zip(self.categorical, range(len(self.categorical)), strict=True))
        for j, column in enumerate(cells):
            name = self.names[j]
            if j in slot:
                codes[:, j] = _category_codes(column, self._lookup[slot[j]], name)
            else:
                codes[:, j] = _numeric_values(column, name, self.columns[j].get("format"))
        return codes

    def _raw_columns(self, table: Any) -> list[np.ndarray]:
        """One 1-D array of cells per column of the layer, from any supported table."""
        names = self.names
        table = rows_to_columns(table)
        if hasattr(table, "columns") and hasattr(table, "__getitem__") or isinstance(table, dict):
            present = [str(c) for c in (table.keys() if isinstance(table, dict) else table.columns)]
            missing = [name for name in names if name not in present]
            if missing:
                shown = ", ".join(map(repr, missing[:5])) + (", ..." if len(missing) > 5 else "")
                raise ValueError(
                    f"the table lacks {len(missing)} of the model's {len(names)} columns "
                    f"({shown}); give every column the model was trained on"
                )
            lookup = {
                str(c): c for c in (table.keys() if isinstance(table, dict) else table.columns)
            }
            cells = [_column_cells(table[lookup[name]]) for name in names]
        else:
            try:
                array = np.asarray(table, dtype=object)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"X could not be read as a table: {exc}") from None
            if array.ndim != 2 or array.shape[1] != self.n_in:
                raise ValueError(
                    f"X has shape {array.shape}; the model reads a table of {self.n_in} columns "
                    f"({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}): give a "
                    "DataFrame with those columns or a 2-D array of that width"
                )
            cells = [array[:, j] for j in range(self.n_in)]
        lengths = {len(c) for c in cells}
        if len(lengths) != 1:
            raise ValueError(f"the table's columns have different lengths {sorted(lengths)}")
        if not lengths.pop():
            raise ValueError("the table has 0 rows; at least one row is required")
        return cells

    # --- computation --------------------------------------------------------------------------

    def output_width(self, n_in):
        if n_in != self.n_in:
            raise ValueError(f"TableInput of {self.n_in} columns follows a layer of width {n_in}")
        return n_in

    def forward(self, A_prev, training=False, rng=None, rows=None):
        if self.needs_adapt():
            raise NotFittedError(
                "TableInput has not seen training rows: train the model with matnet.fit (which "
                "fits its state) or call model.adapt(codes) first"
            )
        C = self._buffer("C", A_prev.shape[0], self.n_in, A_prev)
        C[...] = A_prev
        offset = 0
        for j, size in zip(self.categorical, self.sizes, strict=True):
            code = A_prev[:, j].astype(np.intp)
            seen = self.known[offset : offset + size][code]
            C[:, j] = np.where(seen > 0, code, UNKNOWN_SLOT)
            offset += size
        return C, lambda dC: None  # codes of raw cells have no gradient

    def describe(self, symbols: Symbols) -> Description:
        A, n, d = symbols.input, symbols.n, self.n_in
        shape = shape_text(n, d)
        return Description(
            output="C",
            forward=[
                Equation(
                    f"C = codes({A})",
                    f"{n} raw rows → {shape}",
                    f"{d - len(self.categorical)} numeric columns as numbers (NaN where missing), "
                    f"{len(self.categorical)} categorical as slots (0 missing, 1 unknown, 2+k "
                    "category k; unseen in training → 1)",
                    "C",
                )
            ],
            backward=[Equation("(no gradient of raw cells)", "", "the input needs no gradient")],
            state=[("known", "known")],
        )

    def config(self):
        return {"type": "TableInput", "columns": [dict(c) for c in self.columns],
                "min_count": self.min_count}  # fmt: skip

    def __repr__(self) -> str:
        return f"TableInput({self.n_in} columns, {len(self.categorical)} categorical)"


def _column_cells(column: Any) -> np.ndarray:
    """A column (pandas or polars Series, list, array) as a 1-D array of its cells."""
    if hasattr(column, "to_numpy"):
        column = column.to_numpy()
    array = np.asarray(column)
    if array.ndim != 1:
        raise ValueError(f"a table column must be 1-D, got shape {array.shape}")
    return array


def rows_to_columns(table: Any) -> Any:
    """A list of row dicts (``[{"age": 31, "city": "Oslo"}, ...]``, as JSON gives records) as a
    dict of columns; anything else unchanged. Every row must have the same keys."""
    if not (isinstance(table, (list, tuple)) and table and isinstance(table[0], dict)):
        return table
    keys = list(table[0])
    for i, row in enumerate(table):
        if not isinstance(row, dict) or set(row) != set(keys):
            have = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(
                f"row {i} of the list has keys {have}, but row 0 has {sorted(keys)}; give every "
                "row the same keys"
            )
    return {key: np.asarray([row[key] for row in table], dtype=object) for key in keys}


def _numeric_values(cells: np.ndarray, name: str, fmt: dict[str, Any] | None = None) -> np.ndarray:
    """A numeric column's values as float64, NaN where missing, read in the column's format."""
    if cells.dtype.kind == "M":  # datetime64 (a DataFrame's date column): days since 1970
        values = cells.astype("datetime64[us]").astype(np.int64).astype(np.float64) / 86400e6
        values[np.isnat(cells)] = np.nan
    elif cells.dtype.kind in "iufb" and not (fmt and "date" in fmt):
        values = cells.astype(np.float64)
    else:
        values = np.empty(len(cells), dtype=np.float64)
        for i, cell in enumerate(cells):
            if is_missing(cell):
                values[i] = np.nan
                continue
            try:
                values[i] = parse_cell(cell, fmt)
            except (TypeError, ValueError):
                raise CellError(
                    f"{cell!r} is not {format_text(fmt)}, which the model reads in this column; "
                    "fix the cell or leave it empty (the model imputes a missing value)",
                    i,
                    name,
                ) from None
    bad = np.flatnonzero(np.isinf(values))
    if bad.size:
        raise CellError(
            "the value is infinite; give a finite number or leave the cell empty (missing)",
            int(bad[0]),
            name,
        )
    return values


def _category_codes(cells: np.ndarray, lookup: dict[str, int], name: str) -> np.ndarray:
    """A categorical column's slot numbers: 0 missing, 1 unknown, 2 + k the k-th category."""
    codes = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        if is_missing(cell):
            codes[i] = MISSING_SLOT
            continue
        try:
            key = category_key(cell)
        except TypeError as exc:
            raise TypeError(
                f"column {name!r}, row {i}: {exc} (the column is categorical: give a string, "
                "number or boolean per cell)"
            ) from None
        codes[i] = lookup.get(key, UNKNOWN_SLOT)
    return codes


# --- numeric columns --------------------------------------------------------------------------


def smooth_clip(U: Array) -> Array:
    """RealMLP's smooth clipping ``f(u) = u / sqrt(1 + (u/3)²)``: the identity near 0, bounded by ±3."""
    return U / np.sqrt(1.0 + (U / 3.0) ** 2)


class RobustScale(Layer):
    """Robust scaling with smooth clipping of outliers (RealMLP, Holzmüller et al. 2024), missing
    values imputed, and a missing-indicator column per column that had gaps in training.

    For each owned column j: ``x`` missing → ``m_j`` (the training median), ``u = s_j (x − m_j)``,
    ``S = u / sqrt(1 + (u/3)²)``, where ``s_j = 1/(q_3/4 − q_1/4)`` from the training quantiles,
    or ``2/(max − min)`` when those quartiles agree, or 0 for a constant column (the paper's form).
    A missing cell thus becomes 0, and its indicator 1.

    Parameters
    ----------
    n_features : int
        The input width.
    columns : list of int
        The numeric columns it scales; the others pass through unchanged (first, in order).
    indicators : list of int
        Owned columns that get a missing-indicator column (appended at the end, in this order).

    Notes
    -----
    State: ``median``, ``inv_scale`` (``s_j``), each (1, n_features), and ``n_seen``.
    """

    def __init__(self, n_features: int, columns: list[int], indicators: list[int] | None = None):
        super().__init__()
        self.n_in: int = _check_width("RobustScale", n_features)
        self.owned = _check_indices("RobustScale", columns, self.n_in)
        self.indicators = _check_indices("RobustScale", indicators or [], self.n_in)
        if not set(self.indicators) <= set(self.owned):
            raise ValueError("RobustScale indicators must be among its columns")
        self.passthrough = [j for j in range(self.n_in) if j not in set(self.owned)]
        self.median: Array = None
        self.inv_scale: Array = None
        self.n_seen: Array = None

    def state_specs(self):
        d = self.n_in
        return [("median", (1, d)), ("inv_scale", (1, d)), ("n_seen", (1,))]

    def bind_state(self, state):
        self.median, self.inv_scale, self.n_seen = (
            state["median"],
            state["inv_scale"],
            state["n_seen"],
        )

    def needs_adapt(self):
        return float(self.n_seen[0]) == 0

    def adapt(self, A_prev):
        A = np.asarray(A_prev, dtype=np.float64)
        median = np.zeros(self.n_in)
        inv = np.zeros(self.n_in)
        for j in self.owned:
            x = A[:, j][~np.isnan(A[:, j])]
            if x.size == 0:
                continue  # never seen: every cell imputed to 0 (the layer's output for a gap)
            q0, q1, q2, q3, q4 = np.quantile(x, [0.0, 0.25, 0.5, 0.75, 1.0])
            median[j] = q2
            if q3 > q1:
                inv[j] = 1.0 / (q3 - q1)
            elif q4 > q0:
                inv[j] = 2.0 / (q4 - q0)
        self.median[...] = median[None, :].astype(self.median.dtype)
        self.inv_scale[...] = inv[None, :].astype(self.inv_scale.dtype)
        self.n_seen[...] = A.shape[0]

    def output_width(self, n_in):
        if n_in != self.n_in:
            raise ValueError(f"RobustScale({self.n_in}) follows a layer of width {n_in}")
        return n_in + len(self.indicators)

    def forward(self, A_prev, training=False, rng=None, rows=None):
        if self.needs_adapt():
            raise NotFittedError(
                f"{self!r} has no statistics yet: train the model with matnet.fit (which fits "
                "them from the training rows) or call model.adapt first"
            )
        n, p = A_prev.shape[0], len(self.passthrough)
        own, ind = self.owned, self.indicators
        S = self._buffer("S", n, self.output_width(self.n_in), A_prev)
        S[:, :p] = A_prev[:, self.passthrough]
        X = A_prev[:, own]
        missing = np.isnan(X)
        m, s = self.median[:, own], self.inv_scale[:, own]
        U = (np.where(missing, m, X) - m) * s
        S[:, p : p + len(own)] = smooth_clip(U)
        if ind:
            S[:, p + len(own) :] = np.isnan(A_prev[:, ind])
        passthrough, d = self.passthrough, self.n_in

        def backward(dS: Array) -> Array | None:
            if not self.needs_input_grad:
                return None
            dA = np.zeros((dS.shape[0], d), dtype=dS.dtype)
            dA[:, passthrough] = dS[:, :p]
            # dS/du = (1 + (u/3)²)^(-3/2); du/dx = s; an imputed cell is a constant: no gradient.
            slope = s * (1.0 + (U / 3.0) ** 2) ** -1.5
            dA[:, own] = np.where(missing, 0.0, dS[:, p : p + len(own)] * slope)
            return dA

        return S, backward

    def describe(self, symbols: Symbols) -> Description:
        A, n, ell = symbols.input, symbols.n, symbols.index
        k, S = len(self.owned), f"R{ell}"
        out = shape_text(n, self.output_width(self.n_in))
        return Description(
            output=S,
            forward=[
                Equation(
                    f"U = s ⊙ (fill({A}[:, num], m) − m);  {S} = [{A}[:, rest], "
                    "U ⊘ sqrt(1 + (U/3)²), isnan]",
                    f"{shape_text(n, symbols.n_in)} → {out}",
                    f"{k} numeric columns: m training medians, s = 1/IQR (not trained); "
                    f"{len(self.indicators)} missing indicators",
                    S,
                )
            ],
            backward=[
                Equation(
                    f"d{A}[:, num] = d{S} ⊙ s ⊘ (1 + (U/3)²)^(3/2)  (0 where imputed)",
                    shape_text(n, k),
                    "",
                    f"d{A}",
                )  # fmt: skip
            ],
            kept=[(f"U {shape_text(n, k)}", n * k)],
            grad_numbers=n * symbols.n_in,
            state=[("m", "median"), ("s", "inv_scale")],
        )

    def config(self):
        return {"type": "RobustScale", "n_features": self.n_in, "columns": list(self.owned),
                "indicators": list(self.indicators)}  # fmt: skip

    def __repr__(self) -> str:
        return f"RobustScale({self.n_in}, {len(self.owned)} columns)"


# --- categorical columns ----------------------------------------------------------------------


class _CategoryColumns(Layer, ABC):
    """Shared by :class:`OneHot` and :class:`Embedding`: owned code columns, each with a number of
    slots; the other columns pass through first, then one block per owned column."""

    def __init__(self, n_features: int, columns: list[int], sizes: list[int]) -> None:
        super().__init__()
        name = type(self).__name__
        self.n_in: int = _check_width(name, n_features)
        self.owned = _check_indices(name, columns, self.n_in)
        self.sizes = [int(s) for s in sizes]
        if len(self.sizes) != len(self.owned) or any(s < FIRST_CATEGORY for s in self.sizes):
            raise ValueError(
                f"{name} sizes={sizes!r} must give one slot count (at least 2: missing and "
                "unknown) per column"
            )
        self.passthrough = [j for j in range(self.n_in) if j not in set(self.owned)]

    @abstractmethod
    def _block_widths(self) -> list[int]:
        """How wide each owned column's block of the output is (one-hot slots, embedding width)."""

    def output_width(self, n_in):
        if n_in != self.n_in:
            raise ValueError(f"{type(self).__name__}({self.n_in}) follows a layer of width {n_in}")
        return len(self.passthrough) + sum(self._block_widths())

    def _codes(self, A_prev: Array, j: int, size: int) -> np.ndarray:
        code = A_prev[:, j].astype(np.intp)
        if code.size and (code.min() < 0 or code.max() >= size):
            raise ValueError(
                f"{type(self).__name__}: column {j} holds slot {int(code.max())} outside 0..{size - 1}"
                "; it reads the codes of a TableInput"
            )
        return code

    def _passthrough_backward(self, dS: Array) -> Array:
        dA = np.zeros((dS.shape[0], self.n_in), dtype=dS.dtype)
        dA[:, self.passthrough] = dS[:, : len(self.passthrough)]  # codes themselves get none
        return dA


class OneHot(_CategoryColumns):
    """One-hot blocks for categorical code columns: slot ``c`` of a column becomes the row
    ``e_c`` of its identity matrix (missing, unknown, then each category).

    Parameters
    ----------
    n_features : int
    columns : list of int
        The code columns it encodes; the others pass through first, in order.
    sizes : list of int
        Slots per column (2 + the vocabulary size).
    """

    def _block_widths(self) -> list[int]:
        return self.sizes

    def forward(self, A_prev, training=False, rng=None, rows=None):
        n, p = A_prev.shape[0], len(self.passthrough)
        S = self._buffer("S", n, self.output_width(self.n_in), A_prev)
        S[:, :p] = A_prev[:, self.passthrough]
        S[:, p:] = 0.0
        start = p
        for j, size in zip(self.owned, self.sizes, strict=True):
            S[np.arange(n), start + self._codes(A_prev, j, size)] = 1.0
            start += size

        def backward(dS: Array) -> Array | None:
            return self._passthrough_backward(dS) if self.needs_input_grad else None

        return S, backward

    def describe(self, symbols: Symbols) -> Description:
        A, n, ell = symbols.input, symbols.n, symbols.index
        S, out = f"H{ell}", shape_text(n, self.output_width(self.n_in))
        return Description(
            output=S,
            forward=[
                Equation(
                    f"{S} = [{A}[:, rest], onehot({A}[:, cat])]",
                    f"{shape_text(n, symbols.n_in)} → {out}",
                    f"{len(self.owned)} categorical columns, slots {self.sizes}",
                    S,
                )
            ],
            backward=[Equation(f"d{A}[:, rest] = d{S}[:, rest]", "", "codes get no gradient")],
            grad_numbers=n * symbols.n_in,
        )

    def config(self):
        return {"type": "OneHot", "n_features": self.n_in, "columns": list(self.owned),
                "sizes": list(self.sizes)}  # fmt: skip

    def __repr__(self) -> str:
        return f"OneHot({self.n_in}, {len(self.owned)} columns)"


class Embedding(_CategoryColumns):
    """Learned embeddings for categorical code columns: a Dense layer without bias on the column's
    one-hot, ``Z = onehot(c) · E``, computed as the row lookup ``Z = E[c]``.

    The gradient is the Dense layer's ``dW = A_prevᵀ · dZ`` with ``A_prev = onehot(c)``:
    ``dE = onehot(c)ᵀ · dZ``, i.e. each row of ``dZ`` is added to the row of ``E`` its slot picked
    (see docs/derivation.md).

    Parameters
    ----------
    n_features : int
    columns : list of int
        The code columns it embeds; the others pass through first, in order.
    sizes : list of int
        Slots per column (2 + the vocabulary size): the rows of each ``E``.
    dims : list of int
        Embedding width per column: the columns of each ``E``.

    Notes
    -----
    Parameters ``E0, E1, ...`` (one per column, shape (size, dim)), drawn from N(0, 1) and decayed.
    """

    def __init__(self, n_features: int, columns: list[int], sizes: list[int], dims: list[int]):
        super().__init__(n_features, columns, sizes)
        self.dims = [int(d) for d in dims]
        if len(self.dims) != len(self.owned) or any(d < 1 for d in self.dims):
            raise ValueError(f"Embedding dims={dims!r} must give a positive width per column")
        self.E: list[Array] = []
        self.dE: list[Array] = []

    def _block_widths(self) -> list[int]:
        return self.dims

    def param_specs(self):
        return [
            (f"E{k}", (s, d), True)
            for k, (s, d) in enumerate(zip(self.sizes, self.dims, strict=True))
        ]

    def bind(self, params, grads):
        self.E = [params[f"E{k}"] for k in range(len(self.owned))]
        self.dE = [grads[f"E{k}"] for k in range(len(self.owned))]

    def initialize(self, rng):
        for E in self.E:
            E[...] = rng.standard_normal(E.shape)

    def forward(self, A_prev, training=False, rng=None, rows=None):
        n, p = A_prev.shape[0], len(self.passthrough)
        S = self._buffer("S", n, self.output_width(self.n_in), A_prev)
        S[:, :p] = A_prev[:, self.passthrough]
        codes, start = [], p
        for k, (j, size) in enumerate(zip(self.owned, self.sizes, strict=True)):
            code = self._codes(A_prev, j, size)
            S[:, start : start + self.dims[k]] = self.E[k][code]  # onehot(c) · E as a lookup
            codes.append((code, start))
            start += self.dims[k]

        def backward(dS: Array) -> Array | None:
            for k, (code, begin) in enumerate(codes):
                self.dE[k][...] = 0.0
                np.add.at(self.dE[k], code, dS[:, begin : begin + self.dims[k]])  # onehotᵀ · dZ
            return self._passthrough_backward(dS) if self.needs_input_grad else None

        return S, backward

    def describe(self, symbols: Symbols) -> Description:
        A, n, ell = symbols.input, symbols.n, symbols.index
        S, out = f"M{ell}", shape_text(n, self.output_width(self.n_in))
        params = [
            (f"E{ell}.{k}", f"E{k}", f"E{ell}.{k} {s}×{d} = {s * d:,}")
            for k, (s, d) in enumerate(zip(self.sizes, self.dims, strict=True))
        ]
        return Description(
            output=S,
            forward=[
                Equation(
                    f"{S} = [{A}[:, rest], onehot({A}[:, j]) · E{ell}.j for each categorical j]",
                    f"{shape_text(n, symbols.n_in)} → {out}",
                    "each product a row lookup E[c]",
                    S,
                )
            ],
            backward=[
                Equation(
                    f"dE{ell}.j = onehot({A}[:, j])ᵀ · d{S}[:, block j]",
                    ", ".join(
                        f"({s}×{n})·({n}×{d})" for s, d in zip(self.sizes, self.dims, strict=True)
                    ),
                    "a scatter-add of dZ's rows",
                    f"dE{ell}",
                )
            ],
            kept=[(f"slots {shape_text(n, len(self.owned))}", n * len(self.owned))],
            grad_numbers=n * symbols.n_in,
            parameters=params,
            other_ops=n * sum(self.dims),
        )

    def config(self):
        return {"type": "Embedding", "n_features": self.n_in, "columns": list(self.owned),
                "sizes": list(self.sizes), "dims": list(self.dims)}  # fmt: skip

    def __repr__(self) -> str:
        return f"Embedding({self.n_in}, {len(self.owned)} columns, dims {self.dims})"


def embedding_dim(size: int) -> int:
    """The default embedding width for a column of ``size`` slots: ``min(16, ceil(1.6·size^0.56))``
    (the fastai rule of thumb, capped)."""
    return int(min(16, math.ceil(1.6 * size**0.56)))
