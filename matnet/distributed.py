"""Data-parallel training across processes with MPI, in the design that Horovod made standard.

Every rank holds the whole data set and a copy of the model, and runs the same :func:`matnet.fit`
loop with a :class:`Communicator` (``fit(..., comm=...)``):

1. rank 0's parameters, non-trainable state (``model.flat_state``: a fitted scaler, say) and optimizer
   state (freshly initialized or loaded) are broadcast to every rank before the first step, and rank
   0's random generator state with them;
2. every rank draws the same permutation each epoch and takes its contiguous share of each *global*
   batch of ``batch_size`` rows, so the batch size, and therefore the learning rate, do not depend on
   the number of ranks;
3. each rank's mean gradient is scaled by its row count (giving the gradient of its *summed* loss),
   packed with its summed loss into one flat buffer, summed over ranks with a single ``Allreduce``
   per step, and divided by the global batch size: every rank then holds the gradient single-process
   training would compute for that batch, and applies the same optimizer step to the same weights.
   L2 and weight decay are added by the optimizer after the reduction, so once;
4. the loss, the NaN checks, validation metrics and early stopping all see reduced (hence equal)
   values, so every rank stops at the same step; a callback's request to stop or a Ctrl-C on any
   rank rides in the next step's Allreduce (or one small Allreduce at the epoch's end), so all ranks
   stop after the same step too, never one waiting for the others; only rank 0 should write files
   or print.

In float64 the result matches single-process training to rounding (the tests hold it to 1e-12).
Dropout masks are drawn per rank from independent streams, so with dropout the runs agree in
distribution, not bit for bit.

Launch with ``mpiexec -n 2 python train.py`` (``pip install 'matnet[mpi]'`` provides mpi4py and
Open MPI's ``mpiexec``), where ``train.py`` calls :func:`fit` here or passes
``comm=MPICommunicator()`` to :func:`matnet.fit`. :func:`simulate` runs k ranks as k threads of one
process, which is how the tests check the arithmetic without MPI. The communicator classes live in
:mod:`matnet.training.comm` (with :class:`LocalComm`, the group of one that single-process training
runs through) and are re-exported here.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from matnet.training.comm import (
    Communicator,
    LocalComm,
    MPICommunicator,
    ThreadCommunicator,
    _ThreadGroup,
)

__all__ = [
    "Communicator",
    "LocalComm",
    "MPICommunicator",
    "ThreadCommunicator",
    "simulate",
    "fit",
    "world",
    "cli_setup",
]


def world() -> Communicator:
    """An :class:`MPICommunicator` over ``MPI.COMM_WORLD`` (a group of one when not under mpiexec)."""
    return MPICommunicator()


# --- k ranks as threads of one process ------------------------------------------------------


def simulate(size: int, fn: Callable[[Communicator], Any], *, timeout: float = 600.0) -> list[Any]:
    """Run ``fn(comm)`` on ``size`` simulated ranks (threads), and return their results in rank order.

    This is data-parallel training without MPI: each thread is one rank with its own model, and
    the collectives meet in shared memory. It checks the arithmetic of the protocol (it gives no
    speed-up: the ranks share one process).

    Raises
    ------
    Exception
        The first exception any rank raised (the other ranks are released from their collectives).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size={size!r} must be a positive integer (the number of ranks)")
    group = _ThreadGroup(size, timeout)
    results: list[Any] = [None] * size
    errors: list[BaseException | None] = [None] * size

    def run(rank: int) -> None:
        try:
            results[rank] = fn(ThreadCommunicator(group, rank))
        except BaseException as exc:
            errors[rank] = exc
            group.barrier.abort()

    threads = [threading.Thread(target=run, args=(r,), name=f"rank-{r}") for r in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    real = [e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)]
    if real or any(errors):
        raise (real or [e for e in errors if e is not None])[0]
    return results


# --- the Python API and the CLI's entry point -----------------------------------------------


def fit(model: Any, X: Any, y: Any, *, comm: Communicator | None = None, **kwargs: Any) -> Any:
    """:func:`matnet.fit` across the ranks of ``comm`` (default: every MPI rank of the job).

    Every rank calls this with the same data, model architecture and options. Only rank 0 prints a
    progress bar (``verbose`` is forced to 0 elsewhere); write files only where ``comm.is_root``.

    Parameters
    ----------
    model : Sequential
    X : array-like of shape (n_samples, n_features)
        The whole training set, identical on every rank.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    comm : Communicator, optional
        Default: :func:`world`, which needs mpi4py (``pip install 'matnet[mpi]'``).
    **kwargs
        Any option of :func:`matnet.fit`; ``batch_size`` is the *global* batch size.

    Returns
    -------
    History
        The same on every rank.

    Examples
    --------
    Run as ``mpiexec -n 2 python train.py``::

        comm = matnet.distributed.world()
        history = matnet.distributed.fit(model, X, y, comm=comm, epochs=5, batch_size=512)
        if comm.is_root:
            matnet.save(model, "model.safetensors")
    """
    from matnet.training import fit as fit_one

    comm = world() if comm is None else comm
    if not isinstance(comm, Communicator):
        raise TypeError(
            f"comm must be a matnet.distributed.Communicator, got {type(comm).__name__}"
        )
    if not comm.is_root:
        kwargs["verbose"] = 0
    return fit_one(model, X, y, comm=comm, **kwargs)


def cli_setup(distributed: bool, comm: Communicator | None = None) -> Communicator | None:
    """What ``matnet train --distributed`` calls before training: the communicator, or None.

    With ``distributed`` False this returns None and changes nothing. Otherwise it returns ``comm``
    (default :func:`world`, which raises :class:`~matnet.backend.OptionalDependencyError` naming
    ``pip install 'matnet[mpi]'`` when mpi4py is missing) and, on every rank but 0, sends standard
    output to ``os.devnull`` so that messages are printed once; errors still reach standard error.
    Pass the communicator to ``fit(..., comm=comm)`` with ``verbose=0`` where ``not comm.is_root``,
    and write files only where ``comm.is_root``.
    """
    if not distributed:
        return None
    comm = world() if comm is None else comm
    if not comm.is_root:
        import os

        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- lives as long as the process
    return comm
