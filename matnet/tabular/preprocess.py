"""The layers that go in front of any network so that the saved model takes a raw table's rows.

>>> report = matnet.tabular.infer_columns(frame)           # doctest: +SKIP
>>> layers = matnet.tabular.preprocessor(frame, report=report)   # doctest: +SKIP
>>> width = matnet.tabular.output_width(layers)            # doctest: +SKIP
>>> model = matnet.Sequential([*layers, Dense(width, 64), ...])   # doctest: +SKIP

See :mod:`matnet.layers.tabular` for the layers and how their state is stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from matnet.layers import Layer
from matnet.layers.tabular import (
    FIRST_CATEGORY,
    Embedding,
    OneHot,
    RobustScale,
    TableInput,
    embedding_dim,
)
from matnet.tabular.inference import ONE_HOT_MAX, ColumnInfo, ColumnReport, infer_columns

__all__ = ["numeric_width", "output_width", "preprocessor"]


def preprocessor(
    frame_or_table: Any,
    *,
    categorical: Iterable[str] | None = None,
    numeric: Iterable[str] | None = None,
    drop: Iterable[str] | None = None,
    keep: Iterable[str] | None = None,
    features: Iterable[str] | None = None,
    decimal: str | None = None,
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
    categorical, numeric, drop, keep, features, decimal
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
            frame_or_table,
            categorical=categorical,
            numeric=numeric,
            drop=drop,
            keep=keep,
            features=features,
            decimal=decimal,
        )
    cols = report.columns
    table_input = TableInput([_column_config(c) for c in cols], min_count=min_count)
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


def _column_config(c: ColumnInfo) -> dict[str, Any]:
    """TableInput's description of a column the report keeps."""
    if c.kind == "categorical":
        return {"name": c.name, "kind": "categorical", "categories": list(c.categories)}
    config: dict[str, Any] = {"name": c.name, "kind": "numeric"}
    if c.format:
        config["format"] = dict(c.format)
    return config


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
