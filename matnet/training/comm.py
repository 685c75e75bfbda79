"""Communicators: what :func:`matnet.fit` needs from a group of ranks, one protocol for every case.

:class:`LocalComm` is a group of one that does nothing, so single-process training runs the same loop
as data-parallel training (no ``if comm is None`` in it); :class:`MPICommunicator` spans the ranks of an
MPI job and :class:`ThreadCommunicator` simulates ranks as threads (see :func:`matnet.distributed.simulate`).
The protocol itself (:meth:`Communicator.shared_generator`, :meth:`~Communicator.start`,
:meth:`~Communicator.shard`, :meth:`~Communicator.allreduce_mean`, :meth:`~Communicator.stops`,
:meth:`~Communicator.any_of`) is described in :mod:`matnet.distributed`.
"""

from __future__ import annotations

import sys
import threading
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from matnet.backend import array_namespace, import_optional, to_host
from matnet.layers.base import BatchShare
from matnet.validation import as_generator

__all__ = ["Communicator", "LocalComm", "MPICommunicator", "ThreadCommunicator"]

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
        self,
        params: Array,
        optimizer: Any,
        rng: np.random.Generator,
        n_samples: int,
        state: Array | None = None,
        position: tuple[Any, ...] = (),
    ) -> np.random.Generator | BatchShare:
        """Check that the ranks agree, broadcast rank 0's parameters, state and optimizer state.

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
        state : array of shape (n_state,), optional
            The model's non-trainable state (``model.flat_state``), overwritten with rank 0's, so a
            scaler fitted (or restored from a checkpoint) on rank 0 is the one every rank uses.
        position : tuple, optional
            Where this rank starts: ``fit`` passes ``(epoch, batch, step, checkpoint identity)``.
            Ranks that resume from different checkpoints (a stale or node-local copy) would run
            different numbers of steps, and one would wait forever in a collective the others never
            join; so every rank compares them here and raises the same error.

        Raises
        ------
        ValueError
            On every rank, when the ranks disagree on the data, the model or the position.

        Returns
        -------
        BatchShare
            The stream random layers draw from: ``rng`` itself, shared by every rank, with this
            rank's rows of each global batch (the loop sets the batch with ``for_batch``).
        """
        n_state = 0 if state is None else int(state.shape[0])
        mine = (int(n_samples), int(params.shape[0]), n_state, np.dtype(params.dtype).name)
        everyone = self.allgather_object(mine)
        if any(other != everyone[0] for other in everyone):
            raise ValueError(
                "the ranks disagree on (training rows, parameters, state values, dtype): "
                + ", ".join(f"rank {r}: {v}" for r, v in enumerate(everyone))
                + "; every rank must load the same data and build the same model"
            )
        where = self.allgather_object(tuple(position))
        if any(other != where[0] for other in where):
            raise ValueError(
                "the ranks start from different points (epoch, batch, step, checkpoint): "
                + ", ".join(f"rank {r}: {v}" for r, v in enumerate(where))
                + "; every rank must resume from the same checkpoint file (or none)"
            )
        _broadcast_array(self, params)
        if n_state:
            _broadcast_array(self, state)
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
        # Dropout (any random layer) draws the global batch's numbers from this shared stream and
        # keeps this rank's rows: the same masks as one process (layers.base.draw_rows).
        return BatchShare(rng, self.rank, self.size)

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

    def stops(self, votes: tuple[bool, bool], trainer: Any) -> bool:
        """After a step: whether every rank leaves the epoch now, from the ``(stop, interrupt)``
        flags that :meth:`allreduce_mean` carried (each rank's requests from earlier steps).

        A rank's request made during step k rides in step k+1's Allreduce, so all ranks stop after
        the same step k+1 and none waits in a collective the others never join. Sets
        ``trainer.interrupted`` and, for a stop asked by another rank, ``trainer.stop_requested``.
        """
        if not (votes[0] or votes[1]):
            return False
        if votes[0] and not trainer.stop_requested:
            trainer.request_stop("another rank asked to stop")
        trainer.interrupted = votes[1]
        return True

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


class LocalComm(Communicator):
    """A group of one process: every collective is the identity and nothing is copied.

    :func:`matnet.fit` uses it when given no communicator. Dropout draws from the shuffling generator
    itself (every rank of a group does too, keeping its rows of the global batch), and a request to
    stop acts right after the step that made it, which is what single-process training has always
    done.
    """

    rank, size = 0, 1

    def allreduce_sum(self, buffer):
        pass

    def broadcast(self, buffer, root=0):
        pass

    def broadcast_object(self, obj, root=0):
        return obj

    def allgather_object(self, obj):
        return [obj]

    def shared_generator(self, seed):
        return as_generator(seed)

    def start(self, params, optimizer, rng, n_samples, state=None, position=()):
        return rng  # one process: dropout draws from the shuffling generator, as it always has

    def shard(self, idx):
        return idx

    def allreduce_mean(self, grads, value, n_global, votes=()):
        return value, votes

    def stops(self, votes, trainer):
        # This step's own requests count at once: there is no other rank to wait for.
        trainer.interrupted = interrupted = trainer.interrupt.requested
        return trainer.stop_requested or interrupted

    def any_of(self, *flags):
        return flags

    def __repr__(self) -> str:
        return "LocalComm()"
