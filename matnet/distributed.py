"""Data-parallel training across processes with MPI, in the design that Horovod made standard.

Every rank holds the whole data set and a copy of the model, and runs the same :func:`matnet.fit`
loop with a :class:`Communicator` (``fit(..., comm=...)``):

1. rank 0's parameters and optimizer state (freshly initialized or loaded) are broadcast to every
   rank before the first step, and rank 0's random generator state with them;
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
process, which is how the tests check the arithmetic without MPI.
"""

from __future__ import annotations

import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from matnet.backend import array_namespace, import_optional, to_host

__all__ = [
    "Communicator",
    "MPICommunicator",
    "ThreadCommunicator",
    "simulate",
    "fit",
    "world",
    "cli_setup",
]

Array = Any


class Communicator(ABC):
    """What data-parallel training needs from a group of ``size`` ranks; this one is ``rank``.

    Subclasses provide four collective operations on host NumPy buffers; the training protocol
    (:meth:`shared_generator`, :meth:`start`, :meth:`shard`, :meth:`allreduce_mean`) is written once
    here. Every rank must call the same collectives in the same order.
    """

    rank: int = 0
    size: int = 1

    @abstractmethod
    def allreduce_sum(self, buffer: np.ndarray) -> None:
        """Replace ``buffer`` (a contiguous 1-D NumPy array) by its sum over ranks, on every rank."""

    @abstractmethod
    def broadcast(self, buffer: np.ndarray, root: int = 0) -> None:
        """Overwrite ``buffer`` on every rank with the root's."""

    @abstractmethod
    def broadcast_object(self, obj: Any, root: int = 0) -> Any:
        """The root's small Python object (numbers, strings, dicts of them), on every rank."""

    @abstractmethod
    def allgather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that writes files and prints."""
        return self.rank == 0

    # --- the training protocol, called by matnet.fit ---------------------------------------

    def shared_generator(self, seed: int | np.random.Generator | None) -> np.random.Generator:
        """A generator in the same state on every rank: rank 0's, whatever ``seed`` each rank had.

        With ``seed=None`` each rank would draw fresh entropy; broadcasting rank 0's state makes the
        permutations (and the validation split) agree.
        """
        from matnet.validation import as_generator

        rng = as_generator(seed)
        state = self.broadcast_object(rng.bit_generator.state)
        if self.rank != 0:
            if rng.bit_generator.state["bit_generator"] != state["bit_generator"]:
                raise ValueError(
                    f"rank {self.rank} uses a {rng.bit_generator.state['bit_generator']} generator "
                    f"but rank 0 a {state['bit_generator']}; seed every rank the same way"
                )
            rng.bit_generator.state = state
        return rng

    def start(
        self, params: Array, optimizer: Any, rng: np.random.Generator, n_samples: int
    ) -> np.random.Generator:
        """Check that the ranks agree, broadcast rank 0's parameters and optimizer state.

        Parameters
        ----------
        params : array of shape (n_params,)
            The model's flat parameter vector, overwritten with rank 0's.
        optimizer : matnet.optim.Optimizer
            Its state (moments, step count, learning rate) is replaced by rank 0's.
        rng : numpy.random.Generator
            The generator that shuffles; set to rank 0's state (not advanced).
        n_samples : int
            Training rows on this rank; every rank must hold the same data.

        Returns
        -------
        numpy.random.Generator
            This rank's own stream for dropout, independent of the other ranks' and of ``rng``.
        """
        mine = (int(n_samples), int(params.shape[0]), np.dtype(params.dtype).name)
        everyone = self.allgather_object(mine)
        if any(other != everyone[0] for other in everyone):
            raise ValueError(
                "the ranks disagree on (training rows, parameters, dtype): "
                + ", ".join(f"rank {r}: {v}" for r, v in enumerate(everyone))
                + "; every rank must load the same data and build the same model"
            )
        _broadcast_array(self, params)
        state = optimizer.state_dict()
        arrays = {k: v for k, v in state.items() if hasattr(v, "shape") and v.ndim}
        scalars = self.broadcast_object({k: v for k, v in state.items() if k not in arrays})
        for value in arrays.values():  # the optimizer's live state arrays, overwritten in place
            _broadcast_array(self, value)
        if all(isinstance(value, np.ndarray) for value in arrays.values()):
            optimizer.load_state_dict({**scalars, **arrays})
        else:  # on a GPU: load_state_dict would copy the state to the host; set the scalars alone
            for key, value in scalars.items():
                setattr(optimizer, key, value)
        # Again after a resume, which restores the generator from the checkpoint on each rank.
        rng.bit_generator.state = self.broadcast_object(rng.bit_generator.state)
        jumped = getattr(rng.bit_generator, "jumped", None)
        if jumped is None:
            raise ValueError(
                f"distributed training needs a jumpable bit generator (PCG64, the default, or "
                f"Philox) for per-rank dropout streams; got {type(rng.bit_generator).__name__}"
            )
        return np.random.Generator(jumped(self.rank + 1))

    def local_rows(self, n_global: int) -> int:
        """How many rows of a global batch of ``n_global`` rows belong to this rank."""
        return n_global * (self.rank + 1) // self.size - n_global * self.rank // self.size

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of the global batch ``idx`` (shape (n_global,)).

        Shares differ by at most one row. When the global batch has fewer rows than there are ranks,
        a rank with no share computes on the batch's first row instead, and
        :meth:`allreduce_mean` gives that computation a weight of zero: no rank ever runs an empty
        batch, so the loop needs no special case.
        """
        n = idx.shape[0]
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        return idx[lo:hi] if hi > lo else idx[:1]

    def allreduce_mean(
        self, grads: Array, value: float, n_global: int, votes: tuple[bool, ...] = ()
    ) -> tuple[float, tuple[bool, ...]]:
        """Turn this rank's mean gradient and loss into the global batch's, with one Allreduce.

        Parameters
        ----------
        grads : array of shape (n_params,)
            This rank's gradient of its mean loss; overwritten with the gradient of the global
            batch's mean loss (identical on every rank).
        value : float
            This rank's mean loss over its rows.
        n_global : int
            Rows in the global batch.
        votes : tuple of bool
            This rank's yes/no flags (requests to stop), carried in the same Allreduce.

        Returns
        -------
        value : float
            The global batch's mean loss.
        votes : tuple of bool
            For each flag, whether any rank said yes.
        """
        if self.size == 1:
            return value, tuple(bool(v) for v in votes)  # a group of one: nothing to reduce
        m, k = self.local_rows(n_global), len(votes)
        buffer = self._buffer(grads, 1 + k)
        n = grads.shape[0]
        if isinstance(grads, np.ndarray):
            np.multiply(grads, m, out=buffer[:n])  # gradient of this rank's summed loss
        else:  # a GPU gradient crosses to the host for MPI
            buffer[:n] = to_host(grads)
            buffer[:n] *= m
        buffer[n] = value * m if m else 0.0
        buffer[n + 1 :] = votes
        self.allreduce_sum(buffer)
        if isinstance(grads, np.ndarray):
            np.divide(buffer[:n], n_global, out=grads)
        else:
            grads[...] = array_namespace(grads).asarray(buffer[:n] / n_global)
        return float(buffer[n]) / n_global, tuple(bool(v > 0) for v in buffer[n + 1 :])

    def any_of(self, *flags: bool) -> tuple[bool, ...]:
        """For each flag, whether any rank's is True (one small Allreduce)."""
        if self.size == 1:
            return tuple(bool(f) for f in flags)
        buffer = np.array(flags, dtype=np.float64)
        self.allreduce_sum(buffer)
        return tuple(bool(v > 0) for v in buffer)

    def _buffer(self, grads: Array, extra: int) -> np.ndarray:
        buffer = getattr(self, "_reduce_buffer", None)
        n = grads.shape[0] + extra
        if buffer is None or buffer.shape[0] != n or buffer.dtype != grads.dtype:
            buffer = self._reduce_buffer = np.empty(n, dtype=np.dtype(grads.dtype.name))
        return buffer


def _broadcast_array(comm: Communicator, array: Array) -> None:
    """Broadcast ``array`` in place from rank 0 (through a host copy when it lives on a GPU)."""
    if isinstance(array, np.ndarray) and array.flags.c_contiguous:
        comm.broadcast(array.reshape(-1))
        return
    host = np.ascontiguousarray(to_host(array))
    comm.broadcast(host.reshape(-1))
    array[...] = array_namespace(array).asarray(host) if not isinstance(array, np.ndarray) else host


# --- MPI ------------------------------------------------------------------------------------


class MPICommunicator(Communicator):
    """The ranks of an MPI communicator (``MPI.COMM_WORLD`` by default), through mpi4py.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
    abort_on_error : bool
        Install an exception hook that, after printing the traceback, aborts every rank (as
        ``python -m mpi4py`` does), so a failure on one rank ends the job instead of leaving the
        others waiting forever in a collective.

    Raises
    ------
    OptionalDependencyError
        When mpi4py is not installed: ``pip install 'matnet[mpi]'``.
    """

    def __init__(self, comm: Any = None, *, abort_on_error: bool = True) -> None:
        mpi = import_optional("mpi4py.MPI", "mpi", "distributed training")
        self._mpi = mpi
        self.comm = mpi.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if abort_on_error and self.size > 1:
            _install_abort_hook(self.comm)

    def allreduce_sum(self, buffer):
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)

    def broadcast(self, buffer, root=0):
        self.comm.Bcast(buffer, root=root)

    def broadcast_object(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def allgather_object(self, obj):
        return self.comm.allgather(obj)

    def barrier(self) -> None:
        self.comm.Barrier()

    def __repr__(self) -> str:
        return f"MPICommunicator(rank={self.rank}, size={self.size})"


def _install_abort_hook(comm: Any) -> None:
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stderr.flush()
        comm.Abort(1)

    sys.excepthook = hook


def world() -> Communicator:
    """An :class:`MPICommunicator` over ``MPI.COMM_WORLD`` (a group of one when not under mpiexec)."""
    return MPICommunicator()


# --- k ranks as threads of one process ------------------------------------------------------


class _ThreadGroup:
    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.slots: list[Any] = [None] * size
        self.barrier = threading.Barrier(size, timeout=timeout)


class ThreadCommunicator(Communicator):
    """One of ``size`` ranks that are threads of this process; built by :func:`simulate`.

    The collectives have MPI's semantics: sums are taken in rank order, the same on every rank.
    """

    def __init__(self, group: _ThreadGroup, rank: int) -> None:
        self._group, self.rank, self.size = group, rank, group.size

    def _exchange(self, mine: Any) -> list[Any]:
        group = self._group
        group.slots[self.rank] = mine
        group.barrier.wait()
        everyone = list(group.slots)
        group.barrier.wait()  # nobody overwrites a slot before every rank has read them all
        return everyone

    def allreduce_sum(self, buffer):
        parts = self._exchange(buffer.copy())
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        buffer[...] = total

    def broadcast(self, buffer, root=0):
        parts = self._exchange(buffer.copy() if self.rank == root else None)
        buffer[...] = parts[root]

    def broadcast_object(self, obj, root=0):
        return self._exchange(obj)[root]

    def allgather_object(self, obj):
        return self._exchange(obj)

    def __repr__(self) -> str:
        return f"ThreadCommunicator(rank={self.rank}, size={self.size})"


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
    from matnet.train import fit as fit_one

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
