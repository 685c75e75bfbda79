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
    "model_bytes",
    "FORMAT_VERSION",
]

# 2: non-trainable state tensors, classes, feature names and target scaling (matnet 0.2).
FORMAT_VERSION = 2
MAX_HEADER_BYTES = 100 * 1024 * 1024

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


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one, whole.

    The bytes go to a temporary file in the same folder, which is flushed and fsynced and then renamed
    over ``path`` with ``os.replace``; the folder is fsynced so the rename itself survives a power cut.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
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
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


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


def _fail(path: Any, problem: str) -> ModelFileError:
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


def decode_tensors(
    blob: bytes, source: Any = "<bytes>"
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse and check the bytes of a safetensors file; see :func:`load_tensors`."""
    size = len(blob)
    if size < 8:
        raise _fail(source, f"file of {size} bytes is too short to be a model file (truncated?)")
    n = int.from_bytes(blob[:8], "little")
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
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, too deep, a 5000-digit int
        raise _fail(source, f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _fail(source, "header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _fail(source, "__metadata__ must map strings to strings")
    data = memoryview(blob)[8 + n :]
    spans = []
    for key, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _fail(source, f"tensor {key!r} needs exactly dtype, shape and data_offsets")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(code, str) or code not in _DTYPES:
            raise _fail(source, f"tensor {key!r} has unknown dtype {code!r}")
        if not (
            isinstance(shape, list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            raise _fail(source, f"tensor {key!r} has an invalid shape {shape!r}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise _fail(source, f"tensor {key!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end <= len(data):
            hint = " (truncated file?)" if 0 <= begin <= end else " (begin after end)"
            raise _fail(
                source,
                f"tensor {key!r} data_offsets {offsets} lie outside the "
                f"{len(data)}-byte data section{hint}",
            )
        # Python integers, and a product cut short once past the file: a lying shape cannot
        # overflow, cost time in giant-number arithmetic, or cause an allocation.
        expected = _nbytes(shape, _DTYPES[code].itemsize, len(data))
        if end - begin != expected:
            needs = "more bytes than the file has" if expected is None else f"{expected} bytes"
            raise _fail(
                source,
                f"tensor {key!r} of {len(shape)}-D shape and dtype {code} needs {needs} "
                f"but its offsets span {end - begin}",
            )
        spans.append((begin, end, key))
    spans.sort()
    position = 0
    for begin, end, key in spans:
        if begin < position:
            raise _fail(source, f"tensor {key!r} overlaps the tensor before it")
        if begin > position:
            raise _fail(
                source, f"bytes {position}..{begin} of the data section belong to no tensor"
            )
        position = end
    if position != len(data):
        raise _fail(source, f"the data section has {len(data) - position} trailing bytes")
    digest = metadata.get("matnet.sha256")
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise _fail(
            source, "checksum mismatch: the tensor data is corrupted (bit flip or partial write)"
        )
    tensors = {}
    for key, entry in header.items():
        begin, end = entry["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=_DTYPES[entry["dtype"]])
        tensors[key] = array.reshape(entry["shape"]).copy()
    return tensors, metadata


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file, checking every offset, shape and dtype before using it.

    Returns
    -------
    tensors : dict of str to ndarray
    metadata : dict of str to str

    Raises
    ------
    ModelFileError
        For a missing, unreadable, truncated, corrupted or inconsistent file.
    """
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror})") from None
    return decode_tensors(blob, path)


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
        raise _fail(source, f"the architecture in the file cannot be built: {exc}") from None
    found = {key: tuple(t.shape) for key, t in tensors.items()}
    if expected != found:
        raise _fail(
            source, f"tensors {found} do not match the architecture, which needs {expected}"
        )
    try:
        model = Sequential.from_config(config)
    except (ValueError, TypeError, KeyError) as exc:
        raise _fail(source, f"the architecture in the file cannot be built: {exc}") from None
    for key, tensor in tensors.items():
        if tensor.dtype.kind != "f":
            raise _fail(source, f"parameter {key!r} has non-float dtype {tensor.dtype}")
    for key, tensor in tensors.items():
        if not np.all(np.isfinite(tensor)):
            raise _fail(
                source, f"tensor {key!r} holds NaN or infinity; the file is not a usable model"
            )
    model.set_weights({key: tensors[key] for key in model.params})
    for key in model.state:
        model.state[key][...] = tensors[key]
    _read_model_concept(model, metadata, source)
    model.metadata = user
    return model


def _upgrade_format_1(
    config: dict[str, Any], tensors: dict[str, np.ndarray], metadata: dict[str, str], user: dict
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str], dict]:
    """A format-1 file (matnet 0.1) as format 2. Its command line kept the input scaler, class
    labels, column names and target scaling in the user metadata, applied by the command line
    alone; they become the model's own: a Standardize layer in front, classes, feature names and
    target scaling, so every reader gives the command line's answers."""
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
        config = {**config, "layers": [{"type": "Standardize", "n_features": d}, *config["layers"]]}
        dtype = next(iter(tensors.values())).dtype if tensors else np.float32
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
