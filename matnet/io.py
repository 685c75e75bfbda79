"""Model files in the safetensors layout, written and read with NumPy alone; never pickle.

Layout (https://github.com/huggingface/safetensors)::

    8 bytes   N, the header length, unsigned little-endian
    N bytes   JSON: {"<key>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
                     "__metadata__": {"<str>": "<str>", ...}}   (space-padded to a multiple of 8)
    rest      the tensors' raw little-endian bytes, back to back, offsets relative to this section

matnet keeps in ``__metadata__`` (whose values must be strings) the architecture as JSON, its own and the
format's version, a SHA-256 of the data section (so a flipped bit is caught), and any user metadata such as
an input scaler or label names. Loading rebuilds layers from matnet's own registry and never imports or
unpickles anything named in the file. Every defect raises :class:`matnet.errors.ModelFileError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import reprlib
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from matnet.backend import to_host
from matnet.errors import ModelFileError

__all__ = [
    "save",
    "load",
    "save_tensors",
    "load_tensors",
    "atomic_write",
    "remove_abandoned_temporaries",
    "model_bytes",
    "FORMAT_VERSION",
]

# 2: non-trainable state tensors, classes, feature names and target scaling (matnet 0.2).
FORMAT_VERSION = 2
MAX_HEADER_BYTES = 100 * 1024 * 1024
# A header may describe at most this many tensors (JSON objects, counted while it is parsed, so a
# 100 MB header of millions of empty tensors stops early): a matnet model holds 2-3 per layer, a
# checkpoint a handful, and a large language model's safetensors file a few thousand.
MAX_TENSORS = 100_000

_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}


def _umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(umask)
    return umask


def _writer_tag() -> str:
    """Who writes a temporary file: this process's id and a hash of the machine's name, so a later
    write can tell an abandoned temporary (its writer is gone) from one being written right now."""
    host = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
    return f"{os.getpid()}@{host}"


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this machine (POSIX; elsewhere nothing counts as gone)."""
    if os.name != "posix" or pid <= 0:
        return False  # on Windows os.kill(pid, 0) would terminate the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process, say: it exists
        return False
    return False


def remove_abandoned_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that writes of ``path`` left behind when their process died (a
    SIGKILL, a power cut) and return their paths.

    :func:`atomic_write` names them ``.<name>.<pid>@<host>.<random>.tmp``; only those written on
    this machine by a process that no longer runs are deleted, so a write in progress (another
    thread or process) keeps its file.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    ours = _writer_tag().split("@")[1]
    prefix = f".{path.name}."
    removed: list[Path] = []
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        tag, dot, rest = name[len(prefix) : -len(".tmp")].partition(".")  # <pid>@<host>.<random>
        pid, _, host = tag.partition("@")
        if not dot or "." in rest:
            continue
        if host == ours and pid.isdigit() and _process_gone(int(pid)):
            try:
                os.unlink(folder / name)
            except OSError:
                continue
            removed.append(folder / name)
    return removed


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one, whole.

    The bytes go to a temporary file in the same folder, which is flushed and fsynced and then renamed
    over ``path`` with ``os.replace``; the folder is fsynced so the rename itself survives a power cut.
    Temporaries of earlier writes of ``path`` whose process was killed are deleted afterwards
    (:func:`remove_abandoned_temporaries`).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp creates the file private (0600); give it the mode a plain open() would have,
        # or keep the mode of the file it replaces.
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        dir_fd = None
    if dir_fd is not None:
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
    remove_abandoned_temporaries(path)


def encode_tensors(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` and string ``metadata``."""
    header: dict[str, Any] = {}
    chunks = []
    offset = 0
    for key, array in tensors.items():
        if not isinstance(key, str) or key == "__metadata__":
            raise ValueError(f"tensor name {key!r} is not allowed")
        array = np.asarray(array)
        code = _CODES.get(array.dtype.newbyteorder("<"))
        if code is None:
            raise ValueError(
                f"tensor {key!r} has dtype {array.dtype}, which the format cannot hold"
            )
        raw = np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()
        header[key] = {
            "dtype": code,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    data = b"".join(chunks)
    meta = dict(metadata or {})
    meta["matnet.sha256"] = hashlib.sha256(data).hexdigest()
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ValueError("safetensors metadata keys and values must all be strings")
    header["__metadata__"] = meta
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)  # align the data section to 8 bytes, as safetensors does
    return len(text).to_bytes(8, "little") + text + data


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` (and string metadata) to ``path`` in the safetensors layout, atomically."""
    atomic_write(path, encode_tensors(tensors, metadata))


# What a message may quote of a file's own text: hostile files hold 10 MB names, terminal escape
# sequences and millions of entries, and the one line the command line prints must stay readable.
_EXCERPT = reprlib.Repr()
_EXCERPT.maxstring = _EXCERPT.maxother = 60
_EXCERPT.maxlist = _EXCERPT.maxdict = _EXCERPT.maxtuple = 6
_EXCERPT.maxlevel = 3
MAX_PROBLEM_CHARS = 400


def excerpt(value: Any) -> str:
    """A short (at most about 60 characters), escaped ``repr`` of a value read from a file, for
    messages: control characters and terminal escapes come out as ``\\x1b``, long strings and
    lists are cut in the middle."""
    return _EXCERPT.repr(value)


def excerpt_text(text: str, limit: int | None = 160) -> str:
    """``text`` (a label, a name, a message quoting a file) cut to ``limit`` characters and with
    every control or other non-printable character escaped (``\\x1b[31m``, ``\\u202e``), so that
    what a file says cannot drive the terminal it is printed on."""
    if limit is not None and len(text) > limit:  # cut first: bounded work whatever the file holds
        text = text[: limit - 3] + "..."
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _fail(path: Any, problem: str) -> ModelFileError:
    if len(problem) > MAX_PROBLEM_CHARS:  # a last guard; each quoted value is an excerpt already
        problem = problem[: MAX_PROBLEM_CHARS - 3] + "..."
    return ModelFileError(f"{path}: {problem}")


def _nbytes(shape: list[int], itemsize: int, limit: int) -> int | None:
    """The byte size of a tensor of ``shape``, or None when it exceeds ``limit``."""
    if 0 in shape:
        return 0
    total = itemsize
    for d in shape:
        total *= d
        if total > limit:
            return None
    return total


def _header_length(head: bytes, size: int, source: Any) -> int:
    """The header length in the file's first 8 bytes, checked against the limit and ``size``."""
    if len(head) < 8:
        raise _fail(source, f"file of {size} bytes is too short to be a model file (truncated?)")
    n = int.from_bytes(head[:8], "little")
    if n > MAX_HEADER_BYTES:
        raise _fail(
            source,
            f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit "
            "(100 MB; not a safetensors model file?)",
        )
    if 8 + n > size:
        raise _fail(
            source, f"header length {n} runs past the end of the {size}-byte file (truncated?)"
        )
    return n


_ENTRY_FIELDS = {"dtype", "shape", "data_offsets"}
#: A checked header entry: name, dtype code, shape, and the byte span in the data section.
_Entry = tuple[str, str, list[int], int, int]


def _check_entry(key: str, entry: Any, data_size: int, source: Any) -> _Entry:
    """One tensor's header entry, checked in constant work (plus its shape's length)."""
    if not isinstance(entry, dict) or entry.keys() != _ENTRY_FIELDS:
        raise _fail(source, f"tensor {excerpt(key)} needs exactly dtype, shape and data_offsets")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(code, str) or code not in _DTYPES:
        raise _fail(source, f"tensor {excerpt(key)} has unknown dtype {excerpt(code)}")
    if not (
        isinstance(shape, list)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise _fail(source, f"tensor {excerpt(key)} has an invalid shape {excerpt(shape)}")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise _fail(source, f"tensor {excerpt(key)} has invalid data_offsets {excerpt(offsets)}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        hint = " (truncated file?)" if 0 <= begin <= end else " (begin after end)"
        raise _fail(
            source,
            f"tensor {excerpt(key)} data_offsets {excerpt(offsets)} lie outside the "
            f"{data_size}-byte data section{hint}",
        )
    # Python integers, and a product cut short once past the file: a lying shape cannot
    # overflow, cost time in giant-number arithmetic, or cause an allocation.
    expected = _nbytes(shape, _DTYPES[code].itemsize, data_size)
    if end - begin != expected:
        needs = "more bytes than the file has" if expected is None else f"{expected} bytes"
        raise _fail(
            source,
            f"tensor {excerpt(key)} of {len(shape)}-D shape and dtype {code} needs {needs} "
            f"but its offsets span {end - begin}",
        )
    return key, code, shape, begin, end


def _parse_header(
    text: bytes | bytearray, data_size: int, source: Any
) -> tuple[list[_Entry], dict[str, str]]:
    """The header's tensor entries (checked against a data section of ``data_size`` bytes, which
    need not have been read yet) and its metadata."""
    objects = 0

    def counted(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal objects
        objects += 1
        if objects > MAX_TENSORS + 2:  # + 2: the __metadata__ object and the header itself
            raise _fail(
                source,
                f"the header describes more than {MAX_TENSORS} objects (tensors); not a model file",
            )
        return dict(pairs)

    try:
        header = json.loads(text.decode("utf-8"), object_pairs_hook=counted)
    except ModelFileError:  # from counted(), which stops the parser early
        raise
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, too deep, a 5000-digit int
        raise _fail(source, f"header is not valid JSON ({excerpt(str(exc))})") from None
    except MemoryError:
        raise _fail(source, f"the {len(text)}-byte header does not fit in memory") from None
    if not isinstance(header, dict):
        raise _fail(source, "header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _fail(source, "__metadata__ must map strings to strings")
    entries = [_check_entry(key, entry, data_size, source) for key, entry in header.items()]
    position = 0
    for key, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin < position:
            raise _fail(source, f"tensor {excerpt(key)} overlaps the tensor before it")
        if begin > position:
            raise _fail(
                source, f"bytes {position}..{begin} of the data section belong to no tensor"
            )
        position = end
    if position != data_size:
        raise _fail(source, f"the data section has {data_size - position} trailing bytes")
    return entries, metadata


def _tensors(
    entries: list[_Entry], data: Any, metadata: dict[str, str], source: Any, copy: bool
) -> dict[str, np.ndarray]:
    """The tensors of a checked header over ``data`` (the data section), after its checksum."""
    digest = metadata.get("matnet.sha256")
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise _fail(
            source, "checksum mismatch: the tensor data is corrupted (bit flip or partial write)"
        )
    tensors = {}
    for key, code, shape, begin, end in entries:
        array = np.frombuffer(
            data, dtype=_DTYPES[code], count=(end - begin) // _DTYPES[code].itemsize, offset=begin
        )
        tensors[key] = array.reshape(shape).copy() if copy else array.reshape(shape)
    return tensors


def decode_tensors(
    blob: bytes, source: Any = "<bytes>"
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse and check the bytes of a safetensors file; see :func:`load_tensors`."""
    n = _header_length(blob[:8], len(blob), source)
    entries, metadata = _parse_header(blob[8 : 8 + n], len(blob) - 8 - n, source)
    return _tensors(entries, memoryview(blob)[8 + n :], metadata, source, copy=True), metadata


def _read_exactly(f: Any, count: int, source: Any, what: str) -> bytearray:
    """``count`` bytes from ``f``, in a buffer allocated once (its size is the file's own)."""
    try:
        buffer = bytearray(count)
    except MemoryError:
        raise _fail(
            source, f"the {count}-byte {what} does not fit in this process's memory"
        ) from None
    view = memoryview(buffer)
    done = 0
    while done < count:
        got = f.readinto(view[done:])
        if not got:
            raise _fail(
                source,
                f"the file ended after {done} of the {what}'s {count} bytes (truncated while being read?)",
            )
        done += got
    return buffer


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file, checking every offset, shape and dtype before using it.

    The 8-byte header length is checked against the file's size, and the header against the size
    of the data section, before the data is read: a device such as ``/dev/zero``, a data file
    given in place of a model, or a huge sparse file fails at once, without reading it.

    Returns
    -------
    tensors : dict of str to ndarray
    metadata : dict of str to str

    Raises
    ------
    ModelFileError
        For a missing, unreadable, truncated, corrupted or inconsistent file, or one that is not a
        regular file (a device, pipe or socket).
    """
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise _fail(
                    path, "is not a regular file (a device, pipe or socket); give a model file"
                )
            size = info.st_size
            n = _header_length(f.read(8), size, path)
            text = _read_exactly(f, n, path, "header")
            entries, metadata = _parse_header(text, size - 8 - n, path)
            del text
            data = _read_exactly(f, size - 8 - n, path, "data section")
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror})") from None
    # The arrays are views of the one buffer just read (writable, owned by nobody else): no copy.
    return _tensors(entries, data, metadata, path, copy=False), metadata


def model_metadata(model: Any, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The ``__metadata__`` strings that describe ``model`` (architecture, versions, user data)."""
    from matnet import __version__

    meta = {
        "format": "matnet",
        "format_version": str(FORMAT_VERSION),
        "matnet_version": __version__,
        "model": json.dumps(model.config()),
    }
    # What turns raw rows into the answer belongs to the model: its labels, its input columns and a
    # regressor's target scaling (the preprocessing layers' state travels as tensors).
    if model.classes is not None:
        meta["classes"] = json.dumps(list(model.classes))
    if model.feature_names is not None:
        meta["feature_names"] = json.dumps(list(model.feature_names))
    if model.target_scaling is not None:
        mean, scale = model.target_scaling
        meta["target_scaling"] = json.dumps(
            {"mean": np.asarray(mean).tolist(), "scale": np.asarray(scale).tolist()}
        )
    user = {**getattr(model, "metadata", {}), **(extra or {})}
    if user:
        meta["user"] = json.dumps(user)
    return meta


def save(model: Any, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None) -> None:
    """Write a model to ``path`` (atomically) in the safetensors layout.

    Parameters
    ----------
    model : Sequential
    path : str or path-like
    metadata : dict, optional
        Extra JSON-serializable information (an input scaler, label names, a training config); merged
        over ``model.metadata`` and returned by :func:`load` as ``model.metadata``.
    """
    atomic_write(path, model_bytes(model, metadata=metadata))


def model_bytes(model: Any, *, metadata: dict[str, Any] | None = None) -> bytes:
    """The bytes :func:`save` writes: encode first, write later, so nothing is left half-done when
    a later step (another file, a plot) fails."""
    tensors = {key: to_host(value) for key, value in model.params.items()}  # GPU models too
    tensors.update({key: to_host(value) for key, value in model.state.items()})
    return encode_tensors(tensors, model_metadata(model, metadata))


def model_from_tensors(
    tensors: dict[str, np.ndarray], metadata: dict[str, str], source: Any
) -> Any:
    """Rebuild a :class:`~matnet.model.Sequential` from decoded tensors and metadata."""
    from matnet.layers import layer_from_config
    from matnet.model import Sequential

    if metadata.get("format") == "matnet-checkpoint":
        raise _fail(
            source,
            "not a matnet model file but a training checkpoint (continue it with "
            "fit(..., checkpoint=..., resume=True), or save the trained model with matnet.save)",
        )
    if metadata.get("format") != "matnet" or "model" not in metadata:
        raise _fail(source, "not a matnet model file (no matnet architecture in its metadata)")
    version = metadata.get("format_version", "")
    if not (version.isascii() and version.isdigit() and len(version) < 10):
        raise _fail(source, f"format_version {version!r} is not an integer")
    if int(version) > FORMAT_VERSION:
        raise _fail(
            source,
            f"format version {version} is newer than this matnet reads "
            f"({FORMAT_VERSION}); upgrade matnet",
        )
    try:
        config = json.loads(metadata["model"])
        user = json.loads(metadata.get("user", "{}"))
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("the architecture must be an object with a list of layers")
        if not isinstance(user, dict):
            raise ValueError("user metadata must be an object")
        if int(version) == 1:
            config, tensors, metadata, user = _upgrade_format_1(config, tensors, metadata, user)
        # The shapes the architecture needs, from the layers alone: a file that lies about its
        # widths must not make us allocate a model that its tensors cannot fill.
        layers = [layer_from_config(c) for c in config["layers"]]
        expected = {
            f"{i}.{name}": tuple(shape)
            for i, layer in enumerate(layers)
            for name, shape, *_ in layer.param_specs() + layer.state_specs()
        }
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise _fail(
            source, f"the architecture in the file cannot be built: {excerpt_text(str(exc))}"
        ) from None
    found = {key: tuple(t.shape) for key, t in tensors.items()}
    if expected != found:
        raise _fail(source, _mismatch(found, expected))
    try:
        model = Sequential.from_config(config)
    except (ValueError, TypeError, KeyError) as exc:
        raise _fail(
            source, f"the architecture in the file cannot be built: {excerpt_text(str(exc))}"
        ) from None
    for key, tensor in tensors.items():
        if tensor.dtype.kind != "f":
            raise _fail(source, f"parameter {excerpt(key)} has non-float dtype {tensor.dtype}")
    for key, tensor in tensors.items():
        if not np.all(np.isfinite(tensor)):
            raise _fail(
                source,
                f"tensor {excerpt(key)} holds NaN or infinity; the file is not a usable model",
            )
    model.set_weights({key: tensors[key] for key in model.params})
    for key in model.state:
        model.state[key][...] = tensors[key]
    _check_input_scaling(model, source)
    _read_model_concept(model, metadata, source)
    model.metadata = user
    return model


def _mismatch(found: dict[str, tuple], expected: dict[str, tuple]) -> str:
    """How the file's tensors differ from the architecture's, in a line of bounded length: counts
    and the first example of each difference (a hostile file may hold millions of tensors)."""
    missing = [key for key in expected if key not in found]
    extra = [key for key in found if key not in expected]
    reshaped = [key for key in expected if key in found and found[key] != expected[key]]
    parts = []
    if missing:
        parts.append(
            f"{len(missing)} missing (first {excerpt(missing[0])} of shape {expected[missing[0]]})"
        )
    if extra:
        parts.append(f"{len(extra)} not in the architecture (first {excerpt(extra[0])})")
    if reshaped:
        key = reshaped[0]
        parts.append(
            f"{len(reshaped)} of another shape (first {excerpt(key)}: {excerpt(found[key])} "
            f"in the file, {excerpt(expected[key])} in the architecture)"
        )
    return (
        f"the file's {len(found)} tensors do not match the architecture, which needs "
        f"{len(expected)}: " + "; ".join(parts)
    )


def _check_input_scaling(model: Any, source: Any) -> None:
    """A Standardize layer whose statistics overflow the model's dtype (a mean of 1e308 over a
    scale of 1e-308) would turn every row into infinities: refuse the file instead."""
    from matnet.layers import Standardize
    from matnet.validation import standardization_overflows

    for i, layer in enumerate(model.layers):
        if isinstance(layer, Standardize):
            problem = standardization_overflows(layer.mean, layer.scale)
            if problem is not None:
                raise _fail(source, f"the input scaling (layer {i}, Standardize) {problem}")


def _upgrade_format_1(
    config: dict[str, Any], tensors: dict[str, np.ndarray], metadata: dict[str, str], user: dict
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str], dict]:
    """A format-1 file (matnet 0.1) as format 2. Its command line kept the input scaler, class
    labels, column names and target scaling in the user metadata, applied by the command line
    alone; they become the model's own: a Standardize layer in front, classes, feature names and
    target scaling, so every reader gives the command line's answers."""
    from matnet.validation import standardization_overflows

    user = dict(user)
    scaler, labels = user.pop("scaler", None), user.pop("labels", None)
    features, target = user.pop("features", None), user.pop("target_scaler", None)
    metadata = dict(metadata)
    if labels is not None:
        metadata["classes"] = json.dumps(labels)
    if features is not None:
        metadata["feature_names"] = json.dumps(features)
    if target is not None:
        metadata["target_scaling"] = json.dumps(
            {"mean": [target["mean"]], "scale": [target["scale"]]}
        )
    if scaler is not None:
        mean = np.asarray(scaler["mean"], dtype=np.float64)
        scale = np.asarray(scaler["scale"], dtype=np.float64)
        d = mean.size
        if mean.shape != (d,) or scale.shape != (d,) or not np.all(scale != 0):
            raise ValueError("the scaler needs equal-length 'mean' and non-zero 'scale' lists")
        dtype = next(iter(tensors.values())).dtype if tensors else np.dtype(np.float32)
        problem = standardization_overflows(mean, scale, dtype)
        if problem is not None:
            raise ValueError(f"its matnet 0.1 input scaler {problem}")
        config = {**config, "layers": [{"type": "Standardize", "n_features": d}, *config["layers"]]}
        shifted = {}
        for key, tensor in tensors.items():
            index, name = key.split(".", 1)
            shifted[f"{int(index) + 1}.{name}"] = tensor
        shifted["0.mean"] = mean.reshape(1, d).astype(dtype)
        shifted["0.scale"] = scale.reshape(1, d).astype(dtype)
        shifted["0.n_seen"] = np.ones(1, dtype=dtype)
        tensors = shifted
    return config, tensors, metadata, user


def _read_model_concept(model: Any, metadata: dict[str, str], source: Any) -> None:
    """Classes, feature names and target scaling from the metadata, each checked against the model."""
    try:
        classes = json.loads(metadata["classes"]) if "classes" in metadata else None
        names = json.loads(metadata["feature_names"]) if "feature_names" in metadata else None
        scaling = json.loads(metadata["target_scaling"]) if "target_scaling" in metadata else None
    except (ValueError, RecursionError) as exc:
        raise _fail(source, f"the model's labels or columns are not valid JSON: {exc}") from None
    k = model.n_outputs
    if classes is not None:
        ok = isinstance(classes, list) and len(classes) in (k, 2 if k == 1 else k)
        ok = ok and all(isinstance(c, (str, int, float, bool)) for c in classes)
        if not ok or len({json.dumps(c) for c in classes}) != len(classes):
            raise _fail(source, f"'classes' must list {k} distinct labels (strings or numbers)")
        model.classes = classes
    if names is not None:
        if not (
            isinstance(names, list)
            and len(names) == model.n_features
            and all(isinstance(n, str) for n in names)
            and len(set(names)) == len(names)
        ):
            raise _fail(source, f"'feature_names' must list {model.n_features} distinct names")
        model.feature_names = names
    if scaling is not None:
        try:
            mean = np.asarray(scaling["mean"], dtype=np.float64).reshape(-1)
            scale = np.asarray(scaling["scale"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, KeyError):
            mean = scale = np.zeros(0)
        if not (
            mean.shape == scale.shape == (k,)
            and np.all(np.isfinite(mean))
            and np.all(np.isfinite(scale))
            and np.all(scale != 0)
        ):
            raise _fail(
                source, f"'target_scaling' must hold {k} finite means and {k} non-zero scales"
            )
        model.target_scaling = (mean, scale)


def load(path: str | os.PathLike) -> Any:
    """Read a model written by :func:`save`.

    Returns
    -------
    Sequential
        With ``model.metadata`` holding the user metadata saved with it.

    Raises
    ------
    ModelFileError
        For a file that is missing, truncated, corrupted, of a newer format version, not a matnet
        model, or whose tensors do not match its architecture.
    """
    tensors, metadata = load_tensors(path)
    return model_from_tensors(tensors, metadata, path)
