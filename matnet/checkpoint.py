"""Training checkpoints: everything :func:`matnet.fit` needs to continue a run exactly where it stopped.

A checkpoint is a model file (the safetensors layout of :mod:`matnet.io`, written atomically) whose
``__metadata__`` says ``"format": "matnet-checkpoint"``. It holds

- tensors: ``params`` (the model's flat parameter vector), ``state`` (its non-trainable state,
  ``model.flat_state``, when it has any), ``optimizer.<name>`` for each array of the
  optimizer's state (Adam's ``m`` and ``v``, SGD's ``velocity``), ``best_params`` (early stopping),
  ``perm`` (the row order of the epoch in progress, when a checkpoint falls mid-epoch) and ``val_idx``
  (the rows held out by ``validation_fraction``);
- metadata (JSON strings): the model's architecture, the optimizer's configuration and scalar state, the
  schedule's state, the random generator's ``bit_generator.state``, and :class:`TrainState` (epoch, batch
  within the epoch, step, history, early-stopping bookkeeping).

Because the generator state, the permutation and the optimizer moments are all saved, a run resumed from
a checkpoint takes exactly the steps the uninterrupted run would have taken: the final weights are
bit-identical (same data, seed, BLAS build and thread count). Because the file is replaced atomically, a
run killed at any moment leaves either the previous checkpoint or the new one, whole.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matnet.errors import CheckpointInUseError, ModelFileError
from matnet.io import load_tensors, save_tensors

__all__ = [
    "TrainState",
    "Checkpoint",
    "CheckpointLock",
    "write_checkpoint",
    "read_checkpoint",
    "load_model",
]

CHECKPOINT_FORMAT = "matnet-checkpoint"
CHECKPOINT_VERSION = 1

# Bit generators a checkpoint may name; anything else is refused rather than looked up by name.
_BIT_GENERATORS = {
    "PCG64": np.random.PCG64,
    "PCG64DXSM": np.random.PCG64DXSM,
    "MT19937": np.random.MT19937,
    "Philox": np.random.Philox,
    "SFC64": np.random.SFC64,
}


@dataclass
class TrainState:
    """Where a :func:`matnet.fit` run stands, besides the model, optimizer, schedule and generator.

    ``epoch`` is the 1-based epoch in progress (or next to run) and ``batch`` the number of its
    mini-batches already done; ``perm`` is that epoch's row order once drawn (``batch > 0``), and
    ``loss_sum`` the sum of ``batch_loss * batch_rows`` over the done batches.
    """

    epoch: int = 1
    batch: int = 0
    step: int = 0
    perm: np.ndarray | None = None
    loss_sum: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float = math.inf
    best_params: np.ndarray | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    #: Training ended before ``epochs`` (early stopping or a callback); resuming does not continue it.
    stopped: bool = False
    base_lr: float = 0.0

    def end_epoch(self) -> None:
        """Move to the start of the next epoch."""
        self.epoch += 1
        self.batch = 0
        self.perm = None
        self.loss_sum = 0.0


@dataclass
class Checkpoint:
    """A decoded checkpoint file; see :func:`read_checkpoint`."""

    state: TrainState
    params: np.ndarray
    model_config: dict[str, Any]
    optimizer_config: dict[str, Any]
    optimizer_state: dict[str, Any]
    schedule_state: dict[str, Any]
    rng_state: dict[str, Any]
    val_idx: np.ndarray | None
    data: dict[str, Any]
    #: The model's non-trainable state (``model.flat_state``); empty when it has none.
    flat_state: np.ndarray = field(default_factory=lambda: np.empty(0))


def data_fingerprint(X: np.ndarray, Y: np.ndarray) -> dict[str, Any]:
    """Shapes and a CRC-32 of the training data, so a run is not resumed on other data by mistake."""
    crc = zlib.crc32(np.ascontiguousarray(X).data.cast("B"))
    crc = zlib.crc32(np.ascontiguousarray(Y).data.cast("B"), crc)
    return {"n_samples": int(X.shape[0]), "n_features": int(X.shape[1]), "crc32": crc}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def write_checkpoint(
    path: str | os.PathLike,
    model: Any,
    optimizer: Any,
    schedule: Any,
    rng: np.random.Generator,
    state: TrainState,
    *,
    val_idx: np.ndarray | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Write the whole state of a training run to ``path``, atomically (see :mod:`matnet.io`)."""
    from matnet import __version__

    tensors: dict[str, np.ndarray] = {"params": model.flat_params}
    if model.flat_state.shape[0]:
        tensors["state"] = model.flat_state
    scalars: dict[str, Any] = {}
    for key, value in optimizer.state_dict().items():
        if isinstance(value, np.ndarray):
            tensors[f"optimizer.{key}"] = value
        else:
            scalars[key] = value
    if state.best_params is not None:
        tensors["best_params"] = state.best_params
    if state.perm is not None:
        tensors["perm"] = state.perm.astype(np.int64, copy=False)
    if val_idx is not None:
        tensors["val_idx"] = val_idx.astype(np.int64, copy=False)
    fields = {
        "epoch": state.epoch,
        "batch": state.batch,
        "step": state.step,
        "loss_sum": state.loss_sum,
        "records": state.records,
        "best_epoch": state.best_epoch,
        "best_value": None if math.isinf(state.best_value) else state.best_value,
        "bad_epochs": state.bad_epochs,
        "stopped_early": state.stopped_early,
        "stopped": state.stopped,
        "base_lr": state.base_lr,
    }
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "format_version": str(CHECKPOINT_VERSION),
        "matnet_version": __version__,
        "model": _dumps(model.config()),
        "optimizer": _dumps({"config": optimizer.config(), "state": scalars}),
        "schedule": _dumps(schedule.state_dict()),
        "rng": _dumps(rng.bit_generator.state),
        "state": _dumps(fields),
        "data": _dumps(data or {}),
    }
    try:
        save_tensors(path, tensors, metadata)
    except OSError as exc:
        # A full disk says "[Errno 28] No space left on device" without a file name: name it.
        raise type(exc)(
            exc.errno, f"could not write the checkpoint {str(path)!r}: {exc.strerror or exc}"
        ) from exc


# A lock left by a process that died between creating it and writing its holder is stale after this.
_EMPTY_LOCK_SECONDS = 10.0


class CheckpointLock:
    """An exclusive lock on a checkpoint path: the file ``<path>.lock``, created with
    ``O_CREAT | O_EXCL`` and holding the holder's pid and host, removed on release.

    Two runs writing one checkpoint would delete each other's temporary files and interleave their
    states; the second is refused instead (:class:`~matnet.errors.CheckpointInUseError`, naming the
    holder). A lock whose holder is gone (a pid that no longer runs on this host, after a SIGKILL,
    say) is stale and taken over. A holder on another host cannot be checked from here: the error
    says to delete the lock file once that run is known to be over.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(f"{os.fspath(path)}.lock")
        self.held = False

    def _holder(self) -> dict[str, Any] | None:
        """The holder the lock file names, or None when it cannot be read (yet)."""
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8")[:1000])
        except (OSError, ValueError):
            return None
        ok = isinstance(holder, dict) and isinstance(holder.get("pid"), int)
        return holder if ok else None

    def _stale(self, holder: dict[str, Any] | None) -> bool:
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except OSError:
                return False  # gone already: the next attempt takes it
            return age > _EMPTY_LOCK_SECONDS
        if holder.get("host") != socket.gethostname():
            return False
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError, ValueError):
            return False  # a live process of another user
        return False

    def acquire(self) -> None:
        """Take the lock or raise CheckpointInUseError naming the process that holds it."""
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if self._stale(holder):
                    try:
                        self.path.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                who = (
                    f"process {holder['pid']} on {holder.get('host')!r}"
                    if holder is not None
                    else "another process"
                )
                raise CheckpointInUseError(
                    f"checkpoint {str(self.path)[:-5]!r} is in use by {who} (lock file "
                    f"{str(self.path)!r}); wait for that run to end, or give another checkpoint "
                    "path (delete the lock file only if that run is no longer running)"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(me))
            self.held = True
            return
        raise CheckpointInUseError(f"could not take the lock {str(self.path)!r}; try again")

    def release(self) -> None:
        """Remove the lock file, if this process still holds it."""
        if not self.held:
            return
        self.held = False
        holder = self._holder()
        if holder is not None and holder.get("pid") == os.getpid():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> CheckpointLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Delete temporary files that a run killed in the middle of writing ``path`` left behind.

    :func:`matnet.io.atomic_write` names them ``.<name>.<random>.tmp`` in the same folder; the
    checkpoint file itself is never among them.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    for stale in folder.glob(f".{path.name}.*.tmp"):
        try:
            stale.unlink()
        except OSError:
            pass


def _need(condition: bool, source: Any, problem: str) -> None:
    if not condition:
        raise ModelFileError(f"{source}: {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint written by :func:`matnet.fit` (``checkpoint=...``).

    Raises
    ------
    ModelFileError
        For a missing, truncated, corrupted or inconsistent file, a newer format version, or a file
        that is not a matnet checkpoint.
    """
    tensors, meta = load_tensors(path)
    _check_format(meta, path)
    try:
        parsed = {
            key: json.loads(meta[key])
            for key in ("model", "optimizer", "schedule", "rng", "state", "data")
        }
    except KeyError as exc:
        raise ModelFileError(f"{path}: checkpoint metadata lacks {exc.args[0]!r}") from None
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: checkpoint metadata is not valid JSON ({exc})") from None
    for key, value in parsed.items():
        _need(isinstance(value, dict), path, f"checkpoint {key!r} metadata must be a JSON object")
    fields, opt = parsed["state"], parsed["optimizer"]
    state = _train_state(fields, opt, path)
    params = tensors.pop("params", None)
    if params is None or not (params.ndim == 1 and params.dtype.kind == "f"):
        raise ModelFileError(f"{path}: checkpoint has no flat float 'params' tensor")
    _need(bool(np.all(np.isfinite(params))), path, "checkpoint parameters are not all finite")
    best = tensors.pop("best_params", None)
    _need(
        best is None or (best.shape == params.shape and best.dtype == params.dtype),
        path,
        "best_params do not match params in shape or dtype",
    )
    state.best_params = best
    flat_state = tensors.pop("state", None)
    _need(
        flat_state is None or (flat_state.ndim == 1 and flat_state.dtype == params.dtype),
        path,
        "the state tensor must be 1-D with the parameters' dtype",
    )
    _need(
        flat_state is None or bool(np.all(np.isfinite(flat_state))),
        path,
        "checkpoint state values are not all finite",
    )
    perm = tensors.pop("perm", None)
    _need(
        (perm is None) == (state.batch == 0),
        path,
        "a mid-epoch checkpoint needs the epoch's permutation, and only it",
    )
    _need(
        perm is None or (perm.ndim == 1 and perm.dtype.kind == "i"),
        path,
        "perm must be a 1-D integer tensor",
    )
    state.perm = perm
    val_idx = tensors.pop("val_idx", None)
    _need(
        val_idx is None or (val_idx.ndim == 1 and val_idx.dtype.kind == "i"),
        path,
        "val_idx must be a 1-D integer tensor",
    )
    optimizer_state = dict(opt["state"])
    for key in list(tensors):
        _need(key.startswith("optimizer."), path, f"unexpected tensor {key!r}")
        array = tensors.pop(key)
        _need(
            array.shape == params.shape and array.dtype == params.dtype,
            path,
            f"optimizer tensor {key!r} does not match params in shape or dtype",
        )
        optimizer_state[key.removeprefix("optimizer.")] = array
    return Checkpoint(
        state=state,
        params=params,
        model_config=parsed["model"],
        optimizer_config=opt["config"],
        optimizer_state=optimizer_state,
        schedule_state=parsed["schedule"],
        rng_state=parsed["rng"],
        val_idx=val_idx,
        data=parsed["data"],
        flat_state=np.empty(0, params.dtype) if flat_state is None else flat_state,
    )


def _check_format(meta: dict[str, Any], path: Any) -> None:
    """A matnet checkpoint, in a format version this matnet reads."""
    _need(
        meta.get("format") == CHECKPOINT_FORMAT,
        path,
        "not a matnet checkpoint (a model file? checkpoints are written by fit(checkpoint=...))",
    )
    version = meta.get("format_version", "")
    _need(
        version.isascii() and version.isdigit() and len(version) < 10,
        path,
        f"format_version {version!r} is not an integer",
    )
    _need(
        int(version) <= CHECKPOINT_VERSION,
        path,
        f"checkpoint format version {version} is newer than this matnet reads "
        f"({CHECKPOINT_VERSION}); upgrade matnet",
    )


def _train_state(fields: dict[str, Any], opt: dict[str, Any], path: Any) -> TrainState:
    """The :class:`TrainState` of a checkpoint's ``state`` metadata, every field checked."""
    try:
        _need(
            all(_is_int(fields[k]) and fields[k] >= 0 for k in ("epoch", "batch", "step")),
            path,
            "epoch, batch and step must be non-negative integers",
        )
        _need(fields["epoch"] >= 1, path, "epoch must be at least 1")
        _need(_is_number(fields["loss_sum"]), path, "loss_sum must be a number")
        _need(
            _is_number(fields["base_lr"]) and 0 < fields["base_lr"] < math.inf,
            path,
            "base_lr must be a positive number",
        )
        _need(
            isinstance(fields["records"], list)
            and all(isinstance(r, dict) for r in fields["records"]),
            path,
            "records must be a list of objects",
        )
        _need(
            fields["best_epoch"] is None or _is_int(fields["best_epoch"]),
            path,
            "best_epoch must be an integer or null",
        )
        _need(
            fields["best_value"] is None or _is_number(fields["best_value"]),
            path,
            "best_value must be a number or null",
        )
        _need(
            _is_int(fields["bad_epochs"]) and fields["bad_epochs"] >= 0,
            path,
            "bad_epochs must be a non-negative integer",
        )
        _need(
            isinstance(opt.get("config"), dict) and isinstance(opt.get("state"), dict),
            path,
            "optimizer metadata needs a config and a state",
        )
        state = TrainState(
            epoch=fields["epoch"],
            batch=fields["batch"],
            step=fields["step"],
            loss_sum=float(fields["loss_sum"]),
            records=fields["records"],
            best_epoch=fields["best_epoch"],
            best_value=math.inf if fields["best_value"] is None else float(fields["best_value"]),
            bad_epochs=fields["bad_epochs"],
            stopped_early=bool(fields["stopped_early"]),
            stopped=bool(fields["stopped"]),
            base_lr=float(fields["base_lr"]),
        )
    except KeyError as exc:
        raise ModelFileError(f"{path}: checkpoint state lacks {exc.args[0]!r}") from None
    except OverflowError as exc:
        raise ModelFileError(
            f"{path}: a number in the checkpoint state is out of range ({exc})"
        ) from None
    return state


def restore_generator(rng: np.random.Generator, state: dict[str, Any], source: Any) -> Any:
    """Put ``state`` (a ``bit_generator.state``) into ``rng``, or into a new generator of the named
    kind when ``rng``'s bit generator differs; returns the generator to use."""
    name = state.get("bit_generator")
    if not isinstance(name, str) or name not in _BIT_GENERATORS:
        raise ModelFileError(
            f"{source}: unknown random bit generator {name!r}; expected one of "
            f"{', '.join(_BIT_GENERATORS)}"
        )
    if type(rng.bit_generator).__name__ != name:
        rng = np.random.Generator(_BIT_GENERATORS[name]())
    try:
        rng.bit_generator.state = state
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ModelFileError(f"{source}: the random generator state is invalid ({exc})") from None
    return rng


def load_model(path: str | os.PathLike) -> Any:
    """The model of a checkpoint, with the checkpoint's current parameters (not the early-stopping
    best; ``fit(..., resume=path)`` restores those at the end of training).

    Returns
    -------
    Sequential
    """
    from matnet.layers import layer_from_config
    from matnet.model import Sequential

    ckpt = read_checkpoint(path)
    try:
        # Count the parameters from the layers alone before allocating anything the file describes.
        layers = [layer_from_config(c) for c in ckpt.model_config["layers"]]
        n_params = sum(math.prod(s) for layer in layers for _, s, _ in layer.param_specs())
        if n_params != ckpt.params.size:
            raise ModelFileError(
                f"{path}: {ckpt.params.size} parameters do not fit the architecture, which has "
                f"{n_params}"
            )
        model = Sequential.from_config(ckpt.model_config)
    except ModelFileError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path}: the architecture cannot be built: {exc}") from None
    if model.flat_params.dtype != ckpt.params.dtype:
        raise ModelFileError(
            f"{path}: parameters of dtype {ckpt.params.dtype} in a {model.flat_params.dtype} model"
        )
    if ckpt.flat_state.shape != tuple(model.flat_state.shape):
        raise ModelFileError(
            f"{path}: {ckpt.flat_state.size} values of non-trainable state do not fit the "
            f"architecture, which has {model.flat_state.shape[0]}"
        )
    model.flat_params[...] = ckpt.params
    model.flat_state[...] = ckpt.flat_state
    return model
