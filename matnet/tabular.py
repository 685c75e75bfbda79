"""Raw tables into a model: column types inferred (and overridable), and the preprocessing layers that
go in front of any network so that the saved model takes raw rows.

>>> layers = matnet.tabular.preprocessor(frame)          # doctest: +SKIP
>>> width = matnet.tabular.output_width(layers)           # doctest: +SKIP
>>> model = matnet.Sequential([*layers, Dense(width, 64), ...])   # doctest: +SKIP

See :mod:`matnet.layers.tabular` for the layers and how their state is stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matnet.layers import Layer
from matnet.layers.tabular import (
    FIRST_CATEGORY,
    Embedding,
    OneHot,
    RobustScale,
    TableInput,
    category_key,
    embedding_dim,
    is_missing,
)

__all__ = [
    "ColumnReport",
    "ColumnInfo",
    "infer_columns",
    "numeric_width",
    "output_width",
    "preprocessor",
    "table_columns",
]

#: A categorical column with at most this many categories is one-hot encoded, else embedded.
ONE_HOT_MAX = 16


@dataclass
class ColumnInfo:
    """What :func:`infer_columns` decided about one raw column.

    Attributes
    ----------
    name : str
    kind : {"numeric", "categorical"}
    reason : str
        Why (``"numbers"``, ``"text"``, ``"booleans"``, ``"categorical=..."``, ...).
    n_missing : int
        Missing cells in the table given.
    categories : list of str
        The vocabulary of a categorical column (sorted), empty for a numeric one.
    """

    name: str
    kind: str
    reason: str
    n_missing: int
    categories: list[str] = field(default_factory=list)


@dataclass
class ColumnReport:
    """The column types of a table, as :func:`infer_columns` inferred them.

    Attributes
    ----------
    columns : list of ColumnInfo
        In the table's order (dropped columns left out).
    n_rows : int
    """

    columns: list[ColumnInfo]
    n_rows: int

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def text(self) -> str:
        """One line per column: name, kind, reason, missing cells, categories (a few shown)."""
        width = max(len(c.name) for c in self.columns)
        lines = [f"{self.n_rows} rows, {len(self.columns)} columns:"]
        for c in self.columns:
            gaps = f", {c.n_missing} missing" if c.n_missing else ""
            cats = ""
            if c.kind == "categorical":
                shown = ", ".join(c.categories[:6]) + (", ..." if len(c.categories) > 6 else "")
                how = "one-hot" if len(c.categories) <= ONE_HOT_MAX else "embedded"
                cats = f": {len(c.categories)} categories ({shown}), {how}"
            lines.append(f"  {c.name.ljust(width)}  {c.kind} ({c.reason}{gaps}){cats}")
        return "\n".join(lines)


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


def _infer(
    name: str, cells: np.ndarray, forced: str | None, declared: str | None = None
) -> ColumnInfo:
    """One column's kind from its cells, its DataFrame type (``declared``), or the caller's
    choice, which wins."""
    if cells.dtype.kind in "iuf":
        missing = np.isnan(cells) if cells.dtype.kind == "f" else np.zeros(len(cells), bool)
        present = cells[~missing]
        kind, reason = "numeric", "numbers"
    else:
        missing = np.fromiter((is_missing(v) for v in cells), dtype=bool, count=len(cells))
        present = cells[~missing]
        kind, reason = _kind_of_cells(present, cells.dtype.kind)
    if not present.size:
        raise ValueError(
            f"column {name!r} has no values (every cell is missing), so nothing can be learned "
            f"from it; drop it (drop=[{name!r}], --drop {name})"
        )
    if forced is not None:
        kind, reason = forced, f"{forced}=..."
    elif declared is not None:
        kind, reason = "categorical", declared
    categories: list[str] = []
    if kind == "categorical":
        try:
            keys = {category_key(v) for v in present}
        except TypeError as exc:
            raise TypeError(f"column {name!r}: {exc}; give strings, numbers or booleans") from None
        categories = sorted(keys, key=_category_order)
    elif cells.dtype.kind not in "iuf":
        _check_numbers(name, present)
    return ColumnInfo(name, kind, reason, int(missing.sum()), categories)


def _kind_of_cells(present: np.ndarray, dtype_kind: str) -> tuple[str, str]:
    if dtype_kind == "b" or all(isinstance(v, (bool, np.bool_)) for v in present):
        return "categorical", "booleans"
    if all(_is_number(v) for v in present):
        return "numeric", "numbers"
    return "categorical", "text"


def _is_number(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return value.strip().lower() not in ("inf", "+inf", "-inf", "infinity", "-infinity")
    return False


def _check_numbers(name: str, present: np.ndarray) -> None:
    for v in present:
        if not _is_number(v):
            raise ValueError(
                f"column {name!r} is declared numeric but holds {v!r} (and maybe more text); "
                "declare it categorical or fix the cells"
            )


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
    features: Iterable[str] | None = None,
) -> ColumnReport:
    """Infer each column's type: numeric or categorical.

    A column is numeric when every present cell is a number (as a number, or as text that reads as
    one, the way a CSV holds it); booleans and text make it categorical. A DataFrame column typed as
    categories or strings (pandas ``category``/``string``, polars ``Categorical``/``Enum``/
    ``String``) is categorical whatever its cells read as. Integer-coded categories in a numeric
    column (zip codes, a 1..5 rating read as classes) look numeric: name them in ``categorical``.

    Parameters
    ----------
    table : pandas or polars DataFrame, mapping of name to cells, or 2-D array-like
    categorical, numeric : iterable of str, optional
        Columns forced to that kind.
    drop : iterable of str, optional
        Columns left out.
    features : iterable of str, optional
        Only these columns, in this order.

    Returns
    -------
    ColumnReport

    Raises
    ------
    ValueError
        For a name that is no column, a column in both overrides, a column whose every cell is
        missing (drop it), or text in a column forced numeric.
    TypeError
        For a cell that cannot be a category (a list, a dict).
    """
    names, cells, declared = _typed_columns(table)
    cat = _names(categorical, "categorical", names)
    num = _names(numeric, "numeric", names)
    dropped = _names(drop, "drop", names)
    both = sorted(cat & num)
    if both:
        raise ValueError(f"column {both[0]!r} is in both categorical= and numeric=; choose one")
    order = list(range(len(names)))
    if features is not None:
        chosen = [str(f) for f in ([features] if isinstance(features, str) else features)]
        _names(chosen, "features", names)
        order = [names.index(f) for f in chosen]
    order = [j for j in order if names[j] not in dropped]
    if not order:
        raise ValueError("no columns are left to learn from (every column was dropped)")
    infos = []
    for j in order:
        forced = "categorical" if names[j] in cat else "numeric" if names[j] in num else None
        infos.append(_infer(names[j], cells[j], forced, declared[j]))
    return ColumnReport(infos, len(cells[0]))


def preprocessor(
    frame_or_table: Any,
    *,
    categorical: Iterable[str] | None = None,
    numeric: Iterable[str] | None = None,
    drop: Iterable[str] | None = None,
    features: Iterable[str] | None = None,
    one_hot_max: int = ONE_HOT_MAX,
    embedding_dims: int | None = None,
    min_count: int = 1,
    report: ColumnReport | None = None,
) -> list[Layer]:
    """The layers that turn a raw table into a float matrix, to put in front of a network.

    Build them from the training table; ``matnet.fit`` then fits their state from the training
    rows (after any validation split) and the model file keeps it, so ``matnet.load(path).predict``
    takes raw rows (a DataFrame or a 2-D object array with the same columns).

    The layers, in order (each present only when needed):

    1. :class:`~matnet.layers.tabular.TableInput`: raw cells to codes (numbers with NaN for gaps;
       categories as slots 0 missing, 1 unknown, 2 + k). Its config holds the column names, kinds
       and category vocabularies (strings, so they live in the model file's JSON).
    2. :class:`~matnet.layers.tabular.RobustScale`: numeric columns: ``u = (x − median) / IQR``,
       smoothly clipped ``u / sqrt(1 + (u/3)²)``; gaps imputed with the median (0 after scaling)
       plus a missing-indicator column for each column that has gaps in ``frame_or_table``.
    3. :class:`~matnet.layers.tabular.OneHot`: categorical columns with at most ``one_hot_max``
       categories, as one-hot blocks of 2 + k columns (missing, unknown, each category).
    4. :class:`~matnet.layers.tabular.Embedding`: categorical columns with more, as learned
       embedding rows (a Dense layer on the one-hot, computed as a lookup).

    Parameters
    ----------
    frame_or_table : pandas or polars DataFrame, mapping of name to cells, or 2-D array-like
        The training table (features only: leave the target out). Its rows decide the column
        types, the vocabularies and which columns get indicators; the fitted numbers come later
        from ``fit``'s training rows.
    categorical, numeric, drop, features
        As for :func:`infer_columns`.
    one_hot_max : int
        The most categories a one-hot encoded column may have.
    embedding_dims : int, optional
        The width of every embedding; by default :func:`~matnet.layers.tabular.embedding_dim`.
    min_count : int
        Categories seen fewer times in the training rows are read as unknown.
    report : ColumnReport, optional
        Column types already inferred (e.g. shown to the user first); otherwise inferred here.

    Returns
    -------
    list of Layer
        The first has ``n_in`` = the number of raw columns (a Sequential starting with them takes
        its feature names from it); :func:`output_width` gives the width they output, the
        ``n_in`` of the network behind them.

    Raises
    ------
    ValueError, TypeError
        As for :func:`infer_columns`.
    """
    if report is None:
        report = infer_columns(
            frame_or_table, categorical=categorical, numeric=numeric, drop=drop, features=features
        )
    cols = report.columns
    table_input = TableInput(
        [
            {"name": c.name, "kind": "numeric"}
            if c.kind == "numeric"
            else {"name": c.name, "kind": "categorical", "categories": list(c.categories)}
            for c in cols
        ],
        min_count=min_count,
    )
    layers: list[Layer] = [table_input]
    numeric_idx = [j for j, c in enumerate(cols) if c.kind == "numeric"]
    width = len(cols)
    # After RobustScale: categorical code columns first (passed through), then the numeric ones.
    order = [j for j, c in enumerate(cols) if c.kind == "categorical"]
    if numeric_idx:
        gaps = [j for j in numeric_idx if cols[j].n_missing]
        layers.append(RobustScale(width, numeric_idx, gaps))
        width += len(gaps)
    position = {j: k for k, j in enumerate(order)}  # code column j is at position[j] now
    small = [j for j in order if len(cols[j].categories) <= one_hot_max]
    large = [j for j in order if j not in small]
    if small:
        sizes = [FIRST_CATEGORY + len(cols[j].categories) for j in small]
        layers.append(OneHot(width, [position[j] for j in small], sizes))
        width = layers[-1].output_width(width)
        # OneHot passes the other columns through first, in order: the large code columns lead.
        position = {j: k for k, j in enumerate(large)}
    if large:
        sizes = [FIRST_CATEGORY + len(cols[j].categories) for j in large]
        dims = [embedding_dims or embedding_dim(s) for s in sizes]
        layers.append(Embedding(width, [position[j] for j in large], sizes, dims))
    return layers


def output_width(layers: list[Layer]) -> int:
    """The width of the matrix a chain of layers outputs, starting from the first one's ``n_in``
    (for :func:`preprocessor`'s layers: the number of network inputs)."""
    width = layers[0].n_in
    if width is None:
        raise ValueError(f"the first layer {layers[0]!r} does not fix its input width")
    for layer in layers:
        width = layer.output_width(width)
    return width


def numeric_width(layers: list[Layer]) -> int:
    """How many leading columns of a chain's output are numeric values.

    Behind :func:`preprocessor`'s layers those are the scaled numeric columns of
    :class:`~matnet.layers.tabular.RobustScale`, which every later layer passes through first;
    the missing indicators, one-hot blocks and category embeddings follow them. A chain without a
    :class:`~matnet.layers.tabular.TableInput` (numbers only, e.g. ``[Standardize(d)]``) outputs
    numeric columns alone."""
    if not any(isinstance(layer, TableInput) for layer in layers):
        return output_width(layers)
    scales = [layer for layer in layers if isinstance(layer, RobustScale)]
    return len(scales[0].owned) if scales else 0
