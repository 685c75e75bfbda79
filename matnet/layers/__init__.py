"""Layers: one calling convention, ``forward(A_prev, training, rng, rows) -> (A, backward)``, and a
description of themselves (:meth:`Layer.describe`) that :func:`matnet.explain` prints.

One module per layer: :mod:`~matnet.layers.dense` (the article's ``Z = A_prev·W + b``),
:mod:`~matnet.layers.activation`, :mod:`~matnet.layers.dropout` and
:mod:`~matnet.layers.preprocessing` (state fitted from the training rows) and
:mod:`~matnet.layers.tabular` (raw tables: codes, robust scaling, one-hot, embeddings),
:mod:`~matnet.layers.embeddings` (a learnable column scale, periodic embeddings) and
:mod:`~matnet.layers.ensemble` (BatchEnsemble: k networks as one). A new layer subclasses
:class:`Layer` and is registered with :func:`register_layer` so model files can rebuild it.
"""

from matnet.layers.activation import Activation
from matnet.layers.base import (
    Description,
    Equation,
    Layer,
    Symbols,
    layer_from_config,
    layer_types,
    register_layer,
    shape_text,
)
from matnet.layers.dense import INITIALIZERS, Dense
from matnet.layers.dropout import Dropout
from matnet.layers.embeddings import Periodic, PeriodicLinear, Scale
from matnet.layers.ensemble import BatchEnsemble, EnsembleMean
from matnet.layers.preprocessing import Standardize
from matnet.layers.tabular import Embedding, OneHot, RobustScale, TableInput

_LAYERS: tuple[type[Layer], ...] = (
    Dense,
    Activation,
    Dropout,
    Standardize,
    TableInput,
    RobustScale,
    OneHot,
    Embedding,
    Scale,
    Periodic,
    PeriodicLinear,
    BatchEnsemble,
    EnsembleMean,
)
for _cls in _LAYERS:
    register_layer(_cls)

__all__ = [
    "INITIALIZERS",
    "Activation",
    "BatchEnsemble",
    "Dense",
    "Description",
    "Dropout",
    "Embedding",
    "EnsembleMean",
    "Equation",
    "Layer",
    "OneHot",
    "Periodic",
    "PeriodicLinear",
    "RobustScale",
    "Scale",
    "Standardize",
    "Symbols",
    "TableInput",
    "layer_from_config",
    "layer_types",
    "register_layer",
    "shape_text",
]
