"""Tables into models, once for every front end.

- :mod:`~matnet.tabular.inference`: what each raw column holds (numbers in their format, dates,
  yes/no, categories, or dropped with a reason), shown in a :class:`ColumnReport`;
- :mod:`~matnet.tabular.preprocess`: the layers that put a raw table's rows into a network
  (:func:`preprocessor`); the layers themselves live in :mod:`matnet.layers.tabular`;
- :mod:`~matnet.tabular.recipe`: matnet's tabular network and training options;
- :mod:`~matnet.tabular.build`: the one builder that ``matnet train``, ``TabularClassifier`` /
  ``TabularRegressor`` and Python users call (:func:`fit_tabular`).
"""

from matnet.tabular.build import (
    TabularFit,
    build_tabular_model,
    fit_tabular,
    prepare_tabular,
    row_weights,
    split_rows,
)
from matnet.tabular.inference import ColumnInfo, ColumnReport, infer_columns, table_columns
from matnet.tabular.preprocess import numeric_width, output_width, preprocessor
from matnet.tabular.recipe import (
    TabularRecipe,
    tabular_fit_options,
    tabular_layers,
    tabular_loss,
    tabular_model,
)

__all__ = [
    "ColumnInfo",
    "ColumnReport",
    "TabularFit",
    "TabularRecipe",
    "build_tabular_model",
    "fit_tabular",
    "infer_columns",
    "numeric_width",
    "output_width",
    "prepare_tabular",
    "preprocessor",
    "row_weights",
    "split_rows",
    "table_columns",
    "tabular_fit_options",
    "tabular_layers",
    "tabular_loss",
    "tabular_model",
]
