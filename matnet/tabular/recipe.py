"""The tabular recipe: the network and the training options that ``matnet train`` and
:class:`matnet.sklearn.TabularClassifier` / :class:`~matnet.sklearn.TabularRegressor` use by default.

Each ingredient is a layer, loss option, schedule or callback of the library, so a user can compose
the same model by hand (see :func:`tabular_model`):

- ``Standardize`` then ``Scale`` (a learnable scale per column, RealMLP),
- ``PeriodicLinear`` numerical embeddings of the numeric columns (RealMLP's PBLD: 16 phase-shifted
  cosines per column mapped to 3 values by the column's own linear layer, beside the value itself)
  while there are at most ``embed_max_columns`` of them;
  ``Periodic`` (cos and sin fed straight to the first layer) is the other choice,
- ``BatchEnsemble`` hidden layers: k MLPs with shared weights and rank-1 adapters (TabM), their
  outputs averaged by ``EnsembleMean``, with dropout after each hidden activation,
- AdamW (β2 = 0.95, decoupled weight decay) under the cos-log learning-rate schedule (``CosLog``),
  label smoothing 0.1 for classification, and the weights of the epoch with the best validation
  loss (``early_stopping`` with a patience as long as the run: best-epoch selection),
- optionally RealMLP's flat-then-cosine schedules for the dropout rate and the weight decay
  (``DropoutSchedule``, ``WeightDecaySchedule``; off by default, they did not pay on the benchmark).

The settings were chosen by measurement (benchmarks/bench_tabular.py, benchmarks/RESULTS-tabular.md
and RESULTS-tabular-ablation.md), under a budget: matnet fits on a CPU in seconds, so the ensemble
is small and the embeddings are left out when the table is wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from matnet.layers import (
    Activation,
    BatchEnsemble,
    Dropout,
    EnsembleMean,
    Layer,
    Periodic,
    PeriodicLinear,
    Scale,
    Standardize,
)
from matnet.losses import Loss, SoftmaxCrossEntropy, get_loss
from matnet.model import Sequential
from matnet.schedules import CosLog, FlatCos
from matnet.tabular.preprocess import numeric_width
from matnet.training.callbacks import DropoutSchedule, WeightDecaySchedule

__all__ = ["TabularRecipe", "tabular_model", "tabular_fit_options"]


@dataclass(frozen=True)
class TabularRecipe:
    """The recipe's settings; the defaults are matnet's tabular defaults.

    Attributes
    ----------
    hidden : tuple of int
        Hidden widths of one ensemble member.
    k : int
        Ensemble members (1: a plain MLP in BatchEnsemble form).
    embedding : {"pbld", "periodic"}
        ``PeriodicLinear`` (width ``columns · (1 + n_embedding_out)``) or ``Periodic`` (width
        ``columns · (2·n_frequencies + 1)``); none when ``n_frequencies`` is 0 or the table has
        more than ``embed_max_columns`` columns.
    n_frequencies, sigma, n_embedding_out : int, float, int
        Frequencies per column, their initial spread, and (pbld) values per column after the
        column's linear map.
    activation : str
        After every hidden layer.
    dropout : float
        After every hidden activation.
    epochs, batch_size, learning_rate, beta_2 : int, int, float, float
        AdamW(β2) under the cos-log schedule for ``epochs`` epochs.
    weight_decay : float
        AdamW's decoupled decay of the weights (``W -= lr · weight_decay · W`` each step); 0 gives
        Adam.
    embed_columns : {"numeric", "all"}
        Which columns PBLD embeds: (RealMLP's choice) only the numeric ones of a raw table,
        leaving its missing indicators, one-hot blocks and category embeddings as they are, or
        all. On the raw tables of the benchmark with categories "numeric" scored as well or
        better (benchmarks/RESULTS-tabular-ablation-raw.md) and fits faster; a numeric matrix has numeric
        columns only, so there the two are the same.
    dropout_schedule, weight_decay_schedule : {"constant", "flatcos"}
        RealMLP's flat-then-cosine schedules for the two (``DropoutSchedule``,
        ``WeightDecaySchedule``).
    label_smoothing : float
        For classification.
    scale, scale_gain : bool, float
        The learnable per-column ``Scale`` layer, and how many times faster than the other
        parameters it moves under Adam (RealMLP: 6 times its learning rate).
    schedule : {"coslog", "constant"}
        The learning-rate schedule.
    validation_fraction : float
        Rows held out to pick the best epoch.
    """

    hidden: tuple[int, ...] = (128, 128)
    k: int = 4
    n_frequencies: int = 16
    sigma: float = 0.1
    embed_max_columns: int = 100
    dropout: float = 0.2
    epochs: int = 96
    batch_size: int = 256
    learning_rate: float = 6e-3
    beta_2: float = 0.95
    label_smoothing: float = 0.1
    validation_fraction: float = 0.2
    scale: bool = True
    scale_gain: float = 1.0
    schedule: str = "coslog"
    embedding: str = "pbld"
    n_embedding_out: int = 3
    activation: str = "relu"
    weight_decay: float = 0.3
    dropout_schedule: str = "constant"
    weight_decay_schedule: str = "constant"
    embed_columns: str = "numeric"

    def __post_init__(self) -> None:
        choices = {
            "embedding": ("pbld", "periodic"),
            "schedule": ("coslog", "constant"),
            "dropout_schedule": ("constant", "flatcos"),
            "weight_decay_schedule": ("constant", "flatcos"),
            "embed_columns": ("all", "numeric"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"TabularRecipe {name}={getattr(self, name)!r}; choose one of {', '.join(allowed)}"
                )


def tabular_loss(task: str, recipe: TabularRecipe | None = None, loss: Any = None) -> Loss:
    """The recipe's loss: softmax cross-entropy with label smoothing for classification, mean
    squared error for regression; ``loss`` (a name or Loss) overrides it."""
    recipe = recipe or TabularRecipe()
    if loss is not None:
        chosen = get_loss(loss)
        if isinstance(chosen, SoftmaxCrossEntropy) and not chosen.label_smoothing:
            return SoftmaxCrossEntropy(label_smoothing=recipe.label_smoothing)
        return chosen
    if task == "classification":
        return SoftmaxCrossEntropy(label_smoothing=recipe.label_smoothing)
    return get_loss("mse")


def tabular_layers(
    n_features: int, n_outputs: int, recipe: TabularRecipe, front: list[Layer] | None = None
) -> list[Layer]:
    """The recipe's layers for ``n_outputs`` outputs behind ``front`` (preprocessing whose output
    has ``n_features`` columns; default ``[Standardize(n_features)]`` for numeric columns):
    Scale, the numerical embedding, then k-member BatchEnsemble blocks and their mean.

    PBLD embeds the numeric columns (``embed_columns="numeric"``, the default), as RealMLP does:
    behind the table preprocessing (:func:`matnet.tabular.preprocessor`) those are its leading
    columns, and the missing indicators, one-hot blocks and category embeddings after them pass
    through; ``"all"`` (and ``Periodic``) embed every column. The embedding is left out when it
    would cover no column or more than ``embed_max_columns``."""
    front = [Standardize(n_features)] if front is None else list(front)
    layers: list[Layer] = (
        [*front, Scale(n_features, recipe.scale_gain)] if recipe.scale else list(front)
    )
    width = n_features
    numeric_only = recipe.embedding == "pbld" and recipe.embed_columns == "numeric"
    n_numeric = numeric_width(front) if numeric_only else n_features
    if recipe.n_frequencies and 0 < n_numeric <= recipe.embed_max_columns:
        embedding: Periodic | PeriodicLinear
        if recipe.embedding == "pbld":
            embedding = PeriodicLinear(
                n_features,
                recipe.n_frequencies,
                recipe.n_embedding_out,
                recipe.sigma,
                n_embedded=n_numeric,
            )
        else:
            embedding = Periodic(n_features, recipe.n_frequencies, recipe.sigma)
        layers.append(embedding)
        width = embedding.output_width(n_features)
    shared = True
    for h in recipe.hidden:
        layers.append(BatchEnsemble(width, h, recipe.k, shared_input=shared))
        layers.append(Activation(recipe.activation))
        if recipe.dropout:
            layers.append(Dropout(recipe.dropout))
        width, shared = h, False
    layers.append(
        BatchEnsemble(width, n_outputs, recipe.k, shared_input=shared, init="glorot_normal")
    )
    layers.append(EnsembleMean(recipe.k))
    return layers


def tabular_model(
    n_features: int,
    n_outputs: int,
    loss: Loss,
    *,
    front: list[Layer] | None = None,
    recipe: TabularRecipe | None = None,
    dtype: Any = np.float32,
    seed: int | np.random.Generator | None = 0,
) -> Sequential:
    """The recipe's network (see :func:`tabular_layers`), initialized from ``seed``.

    Parameters
    ----------
    n_features : int
        Columns that the network after ``front`` receives (numeric).
    n_outputs : int
        Classes for softmax cross-entropy, targets for regression.
    loss : Loss
        Carried by the model (see :func:`tabular_loss`).
    front : list of Layer, optional
        The preprocessing (``matnet.tabular.preprocessor`` for a raw table); default
        ``[Standardize(n_features)]``.

    Returns
    -------
    Sequential
        Output (n, n_outputs); its preprocessing is fitted by the first
        :meth:`~matnet.model.Sequential.adapt` or fit.
    """
    recipe = recipe or TabularRecipe()
    layers = tabular_layers(n_features, n_outputs, recipe, front)
    return Sequential(layers, dtype=dtype, seed=seed, loss=loss)


def tabular_fit_options(recipe: TabularRecipe | None = None, n_rows: int | None = None) -> dict:
    """The keyword arguments of :func:`matnet.fit` for the recipe: Adam(β2), the cos-log schedule,
    the batch size (at most an eighth of the rows, so a small table still takes several steps per
    epoch) and best-epoch selection (early stopping whose patience outlasts the run)."""
    recipe = recipe or TabularRecipe()
    batch = recipe.batch_size
    if n_rows is not None:
        batch = max(16, min(batch, n_rows // 8))
    return {
        "optimizer": (
            {"name": "adamw", "beta_2": recipe.beta_2, "weight_decay": recipe.weight_decay}
            if recipe.weight_decay
            else {"name": "adam", "beta_2": recipe.beta_2}
        ),
        "learning_rate": recipe.learning_rate,
        "epochs": recipe.epochs,
        "batch_size": batch,
        "schedule": CosLog(recipe.epochs) if recipe.schedule == "coslog" else None,
        "early_stopping": True,
        "patience": recipe.epochs,
        "callbacks": _schedule_callbacks(recipe),
        "threads": _one_thread(),
    }


def _one_thread() -> int | None:
    """One BLAS thread: the recipe's products ((256·k) × 128 at most) are too small to share.
    Measured (benchmarks/RESULTS-threads.md): a second thread saves 0-13% of the wall time per
    epoch at 1.7-1.9x the CPU time; on a busy machine it loses. Setting it needs threadpoolctl
    (scikit-learn brings it); without it, BLAS chooses."""
    import importlib.util

    return 1 if importlib.util.find_spec("threadpoolctl") is not None else None


def _schedule_callbacks(recipe: TabularRecipe) -> list:
    """RealMLP's flat-then-cosine schedules for the dropout rate and the weight decay, each only
    where the recipe has something to schedule."""
    callbacks: list = []
    if recipe.dropout and recipe.dropout_schedule == "flatcos":
        callbacks.append(DropoutSchedule(FlatCos(recipe.epochs)))
    if recipe.weight_decay and recipe.weight_decay_schedule == "flatcos":
        callbacks.append(WeightDecaySchedule(FlatCos(recipe.epochs)))
    return callbacks
