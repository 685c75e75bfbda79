"""Column types of a raw table: what each column holds, decided from its cells (and overridable),
with every decision shown in a report before training.

A column is one of:

- **numeric**: numbers, in the format the file writes them (decimal commas, thousands separators,
  percent signs), dates and date-times (read as days since 1970-01-01, so a date the training rows
  never showed still has its place on the line), or two words such as yes/no (read as 1/0);
- **categorical**: text labels, booleans given as text by a DataFrame typed as categories, or a
  column named in ``categorical=``;
- **dropped**, with the reason: every cell missing, one value in every row, or an id (a distinct
  integer run per row, or text with a distinct value in most rows): such a column cannot help
  predict new rows, and an id would make predictions depend on the row's number. ``keep=`` keeps a
  column that would be dropped.

>>> report = matnet.tabular.infer_columns(frame)   # doctest: +SKIP
>>> print(report.text())                            # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matnet.layers.tabular import (
    _DATE_XXY,
    category_key,
    is_missing,
    number_pattern,
    parse_cell,
    rows_to_columns,
)

__all__ = ["ColumnReport", "ColumnInfo", "infer_columns", "read_numbers", "table_columns"]

#: A categorical column with at most this many categories is one-hot encoded, else embedded.
ONE_HOT_MAX = 16
#: An id column needs at least this many rows to be told from a short list of values.
ID_MIN_ROWS = 20
#: Text with distinct values in more than this share of its rows is an id (names, keys), not a
#: category that new rows will repeat.
ID_TEXT_SHARE = 0.5
#: Column names that say "row id" (when the values are distinct integers too).
_ID_NAME = re.compile(
    r"(?i)(?:^|[_\s.-])(?:id|index|idx|key|row|rownames|unnamed: ?0)$|^(?:id|no|nr|#)$"
)
#: Pairs of words read as 1 and 0 (lower case).
_WORDS = (("yes", "no"), ("true", "false"), ("y", "n"), ("t", "f"), ("ja", "nein"), ("oui", "non"))
#: Number formats to try on text that float() cannot read: (decimal, thousands).
_FORMATS = ((".", ","), (",", "."), (",", ""), (",", " "), (".", " "), (".", "'"), (",", "\u00a0"))


@dataclass
class ColumnInfo:
    """What :func:`infer_columns` decided about one raw column.

    Attributes
    ----------
    name : str
    kind : {"numeric", "categorical", "dropped"}
    reason : str
        Why (``"numbers"``, ``"decimal commas"``, ``"dates"``, ``"text"``, ``"id: ..."``, ...).
    n_missing : int
        Missing cells in the table given.
    categories : list of str
        The vocabulary of a categorical column (sorted), empty for the others.
    format : dict or None
        How a numeric column's text reads (see :func:`matnet.layers.tabular.parse_cell`), stored
        with the model so that rows at predict time read the same way.
    """

    name: str
    kind: str
    reason: str
    n_missing: int
    categories: list[str] = field(default_factory=list)
    format: dict[str, Any] | None = None


@dataclass
class ColumnReport:
    """The column types of a table, as :func:`infer_columns` inferred them.

    Attributes
    ----------
    columns : list of ColumnInfo
        The columns the model reads, in the table's order.
    n_rows : int
    dropped : list of ColumnInfo
        The columns left out, each with its reason (``kind == "dropped"``); columns the caller
        dropped by name are not listed.
    notes : list of str
        Decisions worth a second look (an ambiguous number format, say).
    """

    columns: list[ColumnInfo]
    n_rows: int
    dropped: list[ColumnInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def decimal(self) -> str | None:
        """The decimal separator the table's numbers were read with, when its text columns agree
        on one (None: no number was written as text with a separator)."""
        found = {
            c.format.get("decimal", ".")
            for c in self.columns
            if c.format and ("decimal" in c.format) and not (c.format.get("thousands") == ",")
        } | {"." for c in self.columns if c.format and c.format.get("thousands") == ","}
        return found.pop() if len(found) == 1 else None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def text(self) -> str:
        """One line per column: name, kind, reason, missing cells, categories (a few shown); the
        dropped columns and the notes after them."""
        width = max(len(c.name) for c in [*self.columns, *self.dropped])
        count = len(self.columns)
        lines = [f"{self.n_rows} rows, {count} column{'s' if count != 1 else ''} read:"]
        for c in self.columns:
            gaps = f", {c.n_missing} missing" if c.n_missing else ""
            detail = ""
            if c.kind == "categorical":
                shown = ", ".join(c.categories[:6]) + (", ..." if len(c.categories) > 6 else "")
                how = "one-hot" if len(c.categories) <= ONE_HOT_MAX else "embedded"
                detail = f": {len(c.categories)} categories ({shown}), {how}"
            lines.append(f"  {c.name.ljust(width)}  {c.kind} ({c.reason}{gaps}){detail}")
        for c in self.dropped:
            lines.append(f"  {c.name.ljust(width)}  dropped ({c.reason}; keep it with --keep)")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (stored in a model file's metadata for ``matnet info``)."""

        def one(c: ColumnInfo) -> dict[str, Any]:
            out: dict[str, Any] = {"name": c.name, "kind": c.kind, "reason": c.reason}
            if c.n_missing:
                out["missing"] = c.n_missing
            if c.categories:
                out["categories"] = len(c.categories)
            return out

        return {
            "rows": self.n_rows,
            "columns": [one(c) for c in self.columns],
            "dropped": [one(c) for c in self.dropped],
            "notes": list(self.notes),
        }


def table_columns(table: Any) -> tuple[list[str], list[np.ndarray]]:
    """The names and cells of a table's columns.

    Parameters
    ----------
    table : pandas or polars DataFrame, mapping of name to cells, or 2-D array-like
        A 2-D array's columns are named ``x0, x1, ...``.

    Returns
    -------
    names : list of str
    cells : list of ndarray of shape (n,)
    """
    names, cells, _ = _typed_columns(table)
    return names, cells


def _typed_columns(table: Any) -> tuple[list[str], list[np.ndarray], list[str | None]]:
    """:func:`table_columns`, and for each column of a DataFrame the categorical type it declares
    (:func:`_declared_categorical`), else None."""
    table = rows_to_columns(table)
    if isinstance(table, dict) or (hasattr(table, "columns") and hasattr(table, "__getitem__")):
        keys = list(table.keys() if isinstance(table, dict) else table.columns)
        cells, declared = [], []
        for key in keys:
            column = table[key]
            declared.append(_declared_categorical(column))
            column = column.to_numpy() if hasattr(column, "to_numpy") else column
            cells.append(np.asarray(column))
        return [str(k) for k in keys], cells, declared
    try:
        array = np.asarray(table, dtype=object)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"X could not be read as a table: {exc}") from None
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"X must be a non-empty 2-D table (n_rows, n_columns), got shape {array.shape}"
        )
    columns = [array[:, j] for j in range(array.shape[1])]
    return [f"x{j}" for j in range(array.shape[1])], columns, [None] * len(columns)


def _declared_categorical(column: Any) -> str | None:
    """Why a DataFrame column is categorical by its type, or None: pandas' ``category`` and string
    dtypes, polars' ``Categorical``, ``Enum`` and ``String``. Their cells may read as numbers (codes
    stored as text), but the frame says they are labels. Plain ``object`` columns and arrays are
    judged by their cells."""
    dtype = getattr(column, "dtype", None)
    if dtype is None or isinstance(dtype, np.dtype):
        return None
    name = str(dtype).lower()
    if name == "category" or name.startswith(("categorical", "enum")):
        return "category dtype"
    if name in ("string", "str", "utf8") or name.startswith("string["):
        return "string dtype"
    return None


def _names(option: Iterable[str] | None, what: str, known: list[str]) -> set[str]:
    names = (
        set()
        if option is None
        else {str(n) for n in ([option] if isinstance(option, str) else option)}
    )
    unknown = sorted(names - set(known))
    if unknown:
        raise ValueError(
            f"{what}={unknown[0]!r} names no column of the table; its columns are "
            f"{', '.join(known)}"
        )
    return names


def _missing_mask(cells: np.ndarray) -> np.ndarray:
    if cells.dtype.kind == "f":
        return np.isnan(cells)
    if cells.dtype.kind == "M":
        return np.isnat(cells)
    if cells.dtype.kind in "iub":
        return np.zeros(len(cells), bool)
    return np.fromiter((is_missing(v) for v in cells), dtype=bool, count=len(cells))


def _text_kind(present: list[str], decimal: str | None) -> tuple[str, str, dict | None, bool]:
    """(kind, reason, format, ambiguous) of text cells: numbers in some format, dates, two words,
    or text. ``ambiguous`` marks a column whose commas may be decimal or thousands separators."""
    if decimal != "," and all(_plain_number(t) for t in present):
        return "numeric", "numbers", None, False
    lower = {t.lower() for t in present}
    for yes, no in _WORDS:
        if lower <= {yes, no} and len(lower) == 2:
            return "numeric", f"{yes}/{no} as 1/0", {"true": [yes], "false": [no]}, False
    percent = all(t.endswith("%") for t in present)
    texts = [t[:-1].rstrip() for t in present] if percent else present
    fits = [
        (d, t)
        for d, t in _FORMATS
        if (decimal is None or d == decimal)
        and all(number_pattern(d, t).fullmatch(x) for x in texts)
    ]
    if fits:
        d, t = fits[0]
        ambiguous = decimal is None and {f[0] for f in fits} == {".", ","}
        fmt: dict[str, Any] = {"decimal": d}
        if t and any(t in x for x in texts):
            fmt["thousands"] = t
        if percent:
            fmt["percent"] = True
        return "numeric", _format_reason(fmt), fmt, ambiguous
    order = _date_order(present)
    if order is not None:
        return "numeric", f"dates {_DATE_SHAPES[order]}, as days", {"date": order}, False
    return "categorical", "text", None, False


_DATE_SHAPES = {"ymd": "YYYY-MM-DD", "dmy": "DD.MM.YYYY", "mdy": "MM/DD/YYYY"}


def _format_reason(fmt: dict[str, Any]) -> str:
    parts = []
    if fmt.get("decimal") == ",":
        parts.append("decimal commas")
    if fmt.get("thousands"):
        parts.append(f"thousands separator {fmt['thousands']!r}")
    if fmt.get("percent"):
        parts.append("percent signs")
    return "numbers with " + " and ".join(parts) if parts else "numbers"


def _plain_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower().lstrip("+-") not in ("inf", "infinity", "nan")


def _date_order(present: list[str]) -> str | None:
    """ "ymd", "dmy" or "mdy" when every cell is a date (or date-time) in that order, else None. A
    day-first or month-first file is told apart by a field over 12; when none is, a dot or dash
    separator says day first (European), a slash month first."""
    if all(_reads_as_date(t, "ymd") for t in present):
        return "ymd"
    matches = [_DATE_XXY.fullmatch(t) for t in present]
    if not all(matches):
        return None
    first = max(int(m.group(1)) for m in matches if m)
    second = max(int(m.group(2)) for m in matches if m)
    if first > 12 >= second:
        order = "dmy"
    elif second > 12 >= first:
        order = "mdy"
    else:
        order = "mdy" if "/" in present[0] else "dmy"
    return order if all(_reads_as_date(t, order) for t in present) else None


def _reads_as_date(text: str, order: str) -> bool:
    try:
        parse_cell(text, {"date": order})
    except ValueError:
        return False
    return True


def _is_id(name: str, values: np.ndarray | None, present: np.ndarray, kind: str) -> str | None:
    """Why a column is an id, or None. Integers: distinct in every row and either a consecutive
    run (1..n, shuffled or not) or under a name that says id. Text: distinct values in most rows."""
    n = present.size
    if n < ID_MIN_ROWS:
        return None
    if kind == "numeric" and values is not None:
        if not np.all(values == np.round(values)) or np.unique(values).size != n:
            return None
        # Row numbers start at 0 or 1; a run from elsewhere (years 1935..1954) is data.
        run = values.min() in (0, 1) and values.max() - values.min() == n - 1
        if run or _ID_NAME.search(name):
            return f"id: {n} distinct whole numbers" + (", a run" if run else "")
        return None
    if kind == "categorical":
        distinct = len({category_key(v) for v in present})
        if distinct > ID_TEXT_SHARE * n:
            return f"id: {distinct} distinct values in {n} rows"
    return None


def _infer(
    name: str,
    cells: np.ndarray,
    forced: str | None,
    declared: str | None,
    decimal: str | None,
    keep: bool,
) -> tuple[ColumnInfo, bool]:
    """One column's kind from its cells, its DataFrame type (``declared``), or the caller's
    choice, which wins; and whether its number format was ambiguous."""
    missing = _missing_mask(cells)
    present = cells[~missing]
    n_missing = int(missing.sum())
    if not present.size:
        return ColumnInfo(name, "dropped", "empty: every cell is missing", n_missing), False
    fmt: dict[str, Any] | None = None
    ambiguous = False
    if cells.dtype.kind in "iuf":
        kind, reason = "numeric", "numbers"
    elif cells.dtype.kind == "M":
        kind, reason, fmt = "numeric", "dates", {"date": "ymd"}
    elif cells.dtype.kind == "b" or all(isinstance(v, (bool, np.bool_)) for v in present):
        kind, reason, fmt = "numeric", "booleans as 1/0", {"true": ["true"], "false": ["false"]}
    elif all(isinstance(v, (int, float, np.integer, np.floating)) for v in present):
        kind, reason = "numeric", "numbers"
    else:
        texts = [str(v).strip() for v in present]
        kind, reason, fmt, ambiguous = _text_kind(texts, decimal)
    if forced == "categorical" or (declared is not None and forced is None):
        kind, reason, fmt, ambiguous = "categorical", declared or "categorical=...", None, False
    elif forced == "numeric":
        if kind != "numeric":
            bad = next(v for v in present if not _plain_number(str(v)))
            raise ValueError(
                f"column {name!r} is declared numeric but holds {bad!r} (and maybe more text); "
                "declare it categorical or fix the cells"
            )
        reason = "numeric=..." if reason == "numbers" else f"numeric=..., {reason}"
    values = None
    if kind == "numeric":
        values = np.asarray([parse_cell(v, fmt) for v in present], dtype=np.float64)
        if fmt is None and cells.dtype.kind in "iuf":
            values = present.astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"column {name!r} holds an infinite value; give finite numbers or leave the cell "
                "empty (missing)"
            )
    categories: list[str] = []
    if kind == "categorical":
        try:
            keys = {category_key(v) for v in present}
        except TypeError as exc:
            raise TypeError(f"column {name!r}: {exc}; give strings, numbers or booleans") from None
        categories = sorted(keys, key=_category_order)
    info = ColumnInfo(name, kind, reason, n_missing, categories, fmt)
    if keep:
        return info, ambiguous
    distinct = np.unique(values).size if values is not None else len(categories)
    if distinct == 1 and not n_missing and present.size > 1:
        shown = str(present[0]).strip()
        return ColumnInfo(name, "dropped", f"constant: {shown!r} in every row", 0), False
    why_id = None if forced else _is_id(name, values, present, kind)
    if why_id:
        return ColumnInfo(name, "dropped", why_id, n_missing), False
    return info, ambiguous


def _category_order(key: str) -> tuple[int, float, str]:
    """Numbers in numeric order first, then text in alphabetical order."""
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def infer_columns(
    table: Any,
    *,
    categorical: Iterable[str] | None = None,
    numeric: Iterable[str] | None = None,
    drop: Iterable[str] | None = None,
    keep: Iterable[str] | None = None,
    features: Iterable[str] | None = None,
    decimal: str | None = None,
) -> ColumnReport:
    """Infer each column's type: numeric (in its format), categorical, or dropped with a reason.

    Text cells are numbers when every present cell reads as one: with a decimal point, with a
    decimal comma, with thousands separators, with a percent sign (``12%`` reads 12); dates and
    date-times (``2014-03-07``, ``07.03.2014``, ``3/7/2014 10:30``) are numbers too, in days since
    1970-01-01; two words (yes/no, true/false) read as 1/0. Other text is categorical; so is a
    DataFrame column typed as categories or strings (pandas ``category``/``string``, polars
    ``Categorical``/``Enum``/``String``), whatever its cells read as. Integer-coded categories in a
    numeric column (zip codes, a 1..5 rating read as classes) look numeric: name them in
    ``categorical``.

    A column is dropped when every cell is missing, when it holds one value in every row, or when
    it is an id: distinct whole numbers in every row that form a run (1..n) or sit under a name
    such as ``id``, or text with a distinct value in more than half of its rows (at least 20).

    Parameters
    ----------
    table : pandas or polars DataFrame, mapping of name to cells, list of row dicts, or 2-D array
    categorical, numeric : iterable of str, optional
        Columns forced to that kind (never dropped as ids).
    drop : iterable of str, optional
        Columns left out.
    keep : iterable of str, optional
        Columns kept even though they look constant or like ids.
    features : iterable of str, optional
        Only these columns, in this order.
    decimal : {".", ","}, optional
        The decimal separator of numbers written as text; by default it is inferred per column,
        and a comma that may be either (``1,234``) follows the other columns of the file.

    Returns
    -------
    ColumnReport

    Raises
    ------
    ValueError
        For a name that is no column, a column in both overrides, text in a column forced
        numeric, a bad ``decimal``, or no column left to learn from.
    TypeError
        For a cell that cannot be a category (a list, a dict).
    """
    if decimal not in (None, ".", ","):
        raise ValueError(f"decimal={decimal!r} must be '.' or ',' (or None to infer it)")
    names, cells, declared = _typed_columns(table)
    cat = _names(categorical, "categorical", names)
    num = _names(numeric, "numeric", names)
    dropped = _names(drop, "drop", names)
    kept = _names(keep, "keep", names)
    both = sorted(cat & num)
    if both:
        raise ValueError(f"column {both[0]!r} is in both categorical= and numeric=; choose one")
    order = list(range(len(names)))
    if features is not None:
        chosen = [str(f) for f in ([features] if isinstance(features, str) else features)]
        _names(chosen, "features", names)
        order = [names.index(f) for f in chosen]
    order = [j for j in order if names[j] not in dropped]
    results = {}
    for j in order:
        forced = "categorical" if names[j] in cat else "numeric" if names[j] in num else None
        results[j] = _infer(names[j], cells[j], forced, declared[j], decimal, names[j] in kept)
    notes = _settle_commas(results, names, cells, cat, num, declared, kept)
    infos = [results[j][0] for j in order]
    kept_infos = [c for c in infos if c.kind != "dropped"]
    if not kept_infos:
        raise ValueError(
            "no columns are left to learn from (every column was dropped"
            + (f": {infos[0].name!r} is {infos[0].reason}" if infos else "")
            + "); keep one with keep=[...] (--keep)"
        )
    return ColumnReport(kept_infos, len(cells[0]), [c for c in infos if c.kind == "dropped"], notes)


def _settle_commas(results, names, cells, cat, num, declared, kept) -> list[str]:
    """Columns whose commas read either way (``1,234``) follow the file: a decimal comma when
    another column has one for sure, else thousands separators, said in a note."""
    ambiguous = [j for j, (_, amb) in results.items() if amb]
    if not ambiguous:
        return []
    sure = {
        info.format.get("decimal")
        for info, amb in results.values()
        if not amb and info.format and "decimal" in info.format
    }
    if sure == {","}:
        for j in ambiguous:
            forced = "numeric" if names[j] in num else None
            results[j] = _infer(names[j], cells[j], forced, declared[j], ",", names[j] in kept)
        return []
    shown = ", ".join(repr(names[j]) for j in ambiguous)
    return [
        f"{shown}: a comma followed by three digits was read as a thousands separator "
        "(1,234 = 1234); if it is a decimal comma, give decimal=',' (--decimal ,)"
    ]


def read_numbers(cells: Any, decimal: str | None = None) -> tuple[np.ndarray, str] | None:
    """A column of text cells as float64 numbers, with the reason (``"decimal commas"``, ...), when
    every cell is a number in one of the formats :func:`infer_columns` reads (not dates or
    words: a target of dates or yes/no is no quantity to regress); else None.

    Parameters
    ----------
    cells : array-like of shape (n,), no missing cell
    decimal : {".", ","}, optional
    """
    cells = np.asarray(cells)
    if cells.dtype.kind in "iuf":
        return cells.astype(np.float64), "numbers"
    texts = [str(v).strip() for v in cells]
    kind, reason, fmt, _ = _text_kind(texts, decimal)
    if kind != "numeric" or (fmt and ("date" in fmt or "true" in fmt)):
        return None
    return np.asarray([parse_cell(t, fmt) for t in texts], dtype=np.float64), reason
