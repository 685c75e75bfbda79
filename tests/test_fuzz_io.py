"""Fuzzing the model-file and checkpoint readers: whatever the bytes, only matnet.ModelFileError.

Mutations: byte flips, truncation, inserted and appended bytes, a rewritten header length, and edits of
the JSON header (giant or negative shapes, offsets, dtypes, nesting, wrong types, architectures that
lie). Each read must either succeed or raise ModelFileError, and must not allocate memory in proportion
to a size claimed by the header: tracemalloc (which sees NumPy's allocations) bounds the peak.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import matnet
from matnet.checkpoint import load_model, read_checkpoint
from matnet.io import decode_tensors, model_from_tensors

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MEMORY_LIMIT = 8 * 1024 * 1024  # bytes; the valid files here are a few kB


def _model_bytes():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        model = matnet.MLP([5, 7, 3], loss="cross_entropy", seed=0)
        model.metadata = {"labels": ["a", "b", "c"]}
        matnet.save(model, Path(folder) / "m.safetensors")
        model_blob = (Path(folder) / "m.safetensors").read_bytes()
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(30, 5)), rng.integers(0, 3, 30)

        class Crash(matnet.Callback):  # leaves the mid-epoch checkpoint of step 10 (epoch 2)
            def on_batch_end(self, step, logs):
                if step == 11:
                    raise RuntimeError

        path = Path(folder) / "run.ckpt"
        with pytest.raises(RuntimeError):
            matnet.MLP([5, 7, 3], loss="cross_entropy", seed=0).fit(
                X,
                y,
                batch_size=4,
                epochs=3,
                verbose=0,
                validation_fraction=0.2,
                checkpoint=path,
                checkpoint_every=2,
                callbacks=Crash(),
                early_stopping=True,
            )
        assert read_checkpoint(path).state.perm is not None
        return model_blob, path.read_bytes()


MODEL, CHECKPOINT = _model_bytes()


def read_model(blob: bytes) -> None:
    tensors, meta = decode_tensors(blob, "fuzzed")
    model_from_tensors(tensors, meta, "fuzzed")


def read_checkpoint_bytes(blob: bytes, tmp_path) -> None:
    path = tmp_path / "fuzzed.ckpt"
    path.write_bytes(blob)
    read_checkpoint(path)
    load_model(path)


def only_model_file_error(read, blob) -> None:
    tracemalloc.start()
    try:
        read(blob)
    except matnet.ModelFileError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT + 4 * len(blob), f"peak {peak} bytes for a {len(blob)}-byte file"


def split(blob):
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def join(header, data):
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


# --- byte-level mutations ---------------------------------------------------------------------


@st.composite
def byte_mutations(draw, blob):
    data = bytearray(blob)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "append", "length"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif kind == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "append":
        data += draw(st.binary(min_size=1, max_size=64))
    else:
        n = draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, len(data) + 16)))
        data[:8] = n.to_bytes(8, "little")
    return bytes(data)


@FUZZ
@given(blob=byte_mutations(MODEL))
def test_model_file_byte_mutations(blob):
    only_model_file_error(read_model, blob)


@FUZZ
@given(blob=byte_mutations(CHECKPOINT))
def test_checkpoint_byte_mutations(tmp_path, blob):
    only_model_file_error(lambda b: read_checkpoint_bytes(b, tmp_path), blob)


# --- header edits -----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
GIANT = st.integers(2**31, 2**64)


@st.composite
def header_edits(draw, blob, tensor_keys):
    header, data = split(blob)
    key = draw(st.sampled_from(tensor_keys))
    field = draw(st.sampled_from(["shape", "data_offsets", "dtype", "entry", "meta", "drop"]))
    if field == "shape":
        header[key]["shape"] = draw(
            st.one_of(
                st.lists(GIANT, min_size=1, max_size=4),
                st.lists(st.integers(-5, 50), max_size=4),
                JSON_VALUES,
            )
        )
    elif field == "data_offsets":
        header[key]["data_offsets"] = draw(
            st.one_of(st.lists(st.one_of(GIANT, st.integers(-10, 2000)), max_size=3), JSON_VALUES)
        )
    elif field == "dtype":
        header[key]["dtype"] = draw(
            st.one_of(st.sampled_from(["F128", "BF16", "C64", "I8"]), JSON_VALUES)
        )
    elif field == "entry":
        header[key] = draw(JSON_VALUES)
    elif field == "meta":
        meta = header["__metadata__"]
        name = draw(st.sampled_from(sorted(meta)))
        meta[name] = draw(st.one_of(JSON_VALUES.map(json.dumps), JSON_VALUES))
    else:
        del header[key]
    return join(header, data)


@FUZZ
@given(blob=header_edits(MODEL, ["0.W", "0.b", "2.W", "2.b"]))
def test_model_file_header_edits(blob):
    only_model_file_error(read_model, blob)


@FUZZ
@given(blob=header_edits(CHECKPOINT, ["params", "optimizer.m", "perm", "best_params", "val_idx"]))
def test_checkpoint_header_edits(tmp_path, blob):
    only_model_file_error(lambda b: read_checkpoint_bytes(b, tmp_path), blob)


# --- lying architectures ----------------------------------------------------------------------


@st.composite
def lying_architectures(draw):
    header, data = split(MODEL)
    config = json.loads(header["__metadata__"]["model"])
    layer = draw(st.sampled_from([0, 2]))
    config["layers"][layer][draw(st.sampled_from(["n_in", "n_out"]))] = draw(
        st.one_of(GIANT, st.integers(-3, 12), JSON_VALUES)
    )
    if draw(st.booleans()):
        config["layers"].insert(draw(st.integers(0, 3)), draw(JSON_VALUES))
    header["__metadata__"]["model"] = json.dumps(config)
    del header["__metadata__"]["matnet.sha256"]  # the checksum covers the data, not the header
    return join(header, data)


@FUZZ
@given(blob=lying_architectures())
def test_lying_architecture_never_allocates_what_it_claims(blob):
    only_model_file_error(read_model, blob)


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 200_000,
        b'{"a": ' + b"1" * 5000 + b"}",
        b'{"a": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}',
        b'{"a": {"dtype": "F32", "shape": [' + b"2," * 50_000 + b'2], "data_offsets": [0, 4]}}',
        b'{"__metadata__": {"format": "matnet", "format_version": "\\u00b2", "model": "{}"}}',
        b'{"__metadata__": {"format": "matnet", "format_version": "'
        + b"9" * 5000
        + b'", "model": "{}"}}',
        b'\xff\xfe{"a": 1}',
    ],
    ids=[
        "deep-nesting",
        "5000-digit-int",
        "unhashable-dtype",
        "50000-dims",
        "unicode-digit",
        "huge-version",
        "not-utf8",
    ],
)
def test_hostile_headers(header):
    blob = len(header).to_bytes(8, "little") + header + b"\0" * 4
    with pytest.raises(matnet.ModelFileError):
        only_model_file_error(read_model, blob)
        read_model(blob)
