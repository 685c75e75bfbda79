"""Training: :func:`fit` (one loop over batches), the callback protocol and its built-in callbacks,
and the communicators that make single-process and data-parallel training one code path.

- :mod:`matnet.training.loop`: :func:`fit`.
- :mod:`matnet.training.callbacks`: :class:`Callback`, :class:`Trainer` (the run's state), and the
  built-ins :class:`History`, :class:`EarlyStopping`, :class:`Checkpointing`,
  :class:`DivergenceGuard`, :class:`Interrupt`, :class:`Progress`, and the hyperparameter
  schedules :class:`DropoutSchedule` and :class:`WeightDecaySchedule`. Its docstring is the
  protocol.
- :mod:`matnet.training.comm`: :class:`LocalComm` (one process) and the MPI and thread communicators.
"""

from matnet.model import install_trainer
from matnet.training.callbacks import (
    Callback,
    Checkpointing,
    DivergenceGuard,
    DropoutSchedule,
    EarlyStopping,
    History,
    Interrupt,
    Progress,
    Trainer,
    WeightDecaySchedule,
    as_callbacks,
)
from matnet.training.comm import LocalComm
from matnet.training.loop import fit

install_trainer(fit)  # Sequential.fit trains through this loop; the model never imports it

__all__ = [
    "fit",
    "Callback",
    "Trainer",
    "History",
    "EarlyStopping",
    "Checkpointing",
    "DivergenceGuard",
    "Interrupt",
    "Progress",
    "DropoutSchedule",
    "WeightDecaySchedule",
    "LocalComm",
    "as_callbacks",
]
