"""Fuzzing the model-file and checkpoint readers: whatever the bytes, only matnet.ModelFileError.

Mutations: byte flips, truncation, inserted and appended bytes, a rewritten header length, and edits of
the JSON header (giant or negative shapes, offsets, dtypes, nesting, wrong types, architectures that
lie). Each read must either succeed or raise ModelFileError, and must not allocate memory in proportion
to a size claimed by the header: tracemalloc (which sees NumPy's allocations) bounds the peak.

The last test reads hostile files (``/dev/zero``, a sparse 3 GiB file, a 3 GiB tensor claim, a 100 MB
header of 1.7 million tensors, a 10 MB name, an overflowing scaler) and 300 mutations in a separate
process under a 2 GiB address-space limit (``RLIMIT_AS``) and a time limit per file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


# --- under an address-space and a time limit, in a subprocess ---------------------------------

# The child reads each file (and each mutation of a valid model file) under a 2 GiB address-space
# limit and a per-file alarm, and prints one JSON line per read: what it raised. Reading a file may
# not take memory or time in proportion to what the file claims (issue 15, cases 3-5).
LIMITED_READER = r"""
import json, random, resource, signal, sys, time
import matnet
from matnet.checkpoint import read_checkpoint
from matnet.io import decode_tensors, model_from_tensors

limit_bytes, seconds, model_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


class TimeLimit(BaseException):
    pass


def alarm(signum, frame):
    raise TimeLimit


signal.signal(signal.SIGALRM, alarm)


def attempt(name, read):
    signal.alarm(seconds)
    started = time.perf_counter()
    try:
        read()
        outcome = "ok"
    except matnet.ModelFileError as exc:
        outcome = "ModelFileError"
        message = str(exc)
    except TimeLimit:
        outcome = "time limit"
    except BaseException as exc:
        outcome = type(exc).__name__ + ": " + str(exc)[:200]
    finally:
        signal.alarm(0)
    line = {"name": name, "outcome": outcome, "seconds": time.perf_counter() - started}
    if outcome == "ModelFileError":
        line["message_chars"] = len(message)
        line["printable"] = message.isprintable()
    print(json.dumps(line), flush=True)


for path in sys.argv[4:]:
    attempt(path, lambda: matnet.load(path))
    attempt(path + " (as a checkpoint)", lambda: read_checkpoint(path))

blob = open(model_path, "rb").read()
rng = random.Random(0)
for i in range(300):
    data = bytearray(blob)
    kind = i % 4
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del data[rng.randrange(len(data)):]
    elif kind == 2:
        data[:8] = rng.choice([rng.randrange(2**64), rng.randrange(len(data) + 16)]).to_bytes(8, "little")
    else:
        at = rng.randrange(len(data))
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    data = bytes(data)

    def read(data=data):
        tensors, meta = decode_tensors(data, "mutated")
        model_from_tensors(tensors, meta, "mutated")

    attempt(f"mutation {i}", read)
"""


def _hostile_files(folder) -> list[str]:
    """The shapes of issue 15's cases 3-5, each a file in ``folder``."""
    from matnet.io import encode_tensors

    def header_file(name, header, data=b"", size=None):
        text = json.dumps(header, separators=(",", ":")).encode()
        with open(folder / name, "wb") as f:
            f.write(len(text).to_bytes(8, "little") + text + data)
            if size is not None:
                f.truncate(size)  # sparse: nothing more on disk
        return str(folder / name)

    meta = json.loads(split(MODEL)[0]["__metadata__"]["model"])
    model_meta = {"format": "matnet", "format_version": "2", "model": json.dumps(meta)}
    files = ["/dev/zero"]
    with open(folder / "zeros.bin", "wb") as f:  # case 3: a sparse 3 GiB file of zeros
        f.truncate(3 * 2**30)
    files.append(str(folder / "zeros.bin"))
    # case 3: a valid header that claims one 3 GiB tensor, over a sparse 3 GiB data section
    huge = {"0.W": {"dtype": "F32", "shape": [3 * 2**28], "data_offsets": [0, 3 * 2**30]}}
    files.append(header_file("huge.safetensors", {**huge, "__metadata__": model_meta}))
    with open(folder / "huge.safetensors", "r+b") as f:
        f.truncate(os.path.getsize(folder / "huge.safetensors") + 3 * 2**30)
    # case 4: a header at the 100 MB limit holding 1.7 million empty tensors
    entry = b'{"dtype":"F32","shape":[0],"data_offsets":[0,0]}'
    body = b",".join(b'"t%07d":%s' % (i, entry) for i in range(1_700_000))
    text = b"{" + body + b',"__metadata__":' + json.dumps(model_meta).encode() + b"}"
    assert len(text) <= 100 * 2**20
    (folder / "many.safetensors").write_bytes(len(text).to_bytes(8, "little") + text)
    files.append(str(folder / "many.safetensors"))
    # case 4: a 10 MB tensor name full of terminal escapes
    name = "\x1b[2J" * 2_500_000
    one = {name: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    files.append(header_file("name.safetensors", {**one, "__metadata__": model_meta}, b"\0" * 4))
    # case 5: a matnet 0.1 scaler that overflows, in float32 and float64
    for dtype in ("float32", "float64"):
        model = matnet.MLP([5, 7, 3], loss="cross_entropy", dtype=dtype)
        old = {"format": "matnet", "format_version": "1", "model": json.dumps(model.config())}
        old["user"] = json.dumps({"scaler": {"mean": [1e308] * 5, "scale": [1e-308] * 5}})
        (folder / f"scaler-{dtype}.safetensors").write_bytes(
            encode_tensors(model.get_weights(), old)
        )
        files.append(str(folder / f"scaler-{dtype}.safetensors"))
    return files


@pytest.mark.slow
@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RLIMIT_AS and /dev/zero as on Linux"
)
def test_hostile_files_under_an_address_space_and_a_time_limit(tmp_path):
    files = _hostile_files(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(MODEL)
    limit, seconds = 2 * 2**30, 60  # the time limit is a guard against hanging, not a benchmark
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", LIMITED_READER, str(limit), str(seconds),
         str(tmp_path / "model.safetensors"), *files],
        capture_output=True, text=True, env=env, timeout=seconds * (2 * len(files) + 300),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2 * len(files) + 300
    for line in lines:
        assert line["outcome"] in ("ok", "ModelFileError"), line
        if line["outcome"] == "ModelFileError":
            assert line["message_chars"] < 600 and line["printable"], line
    for line in lines[: 2 * len(files)]:  # every hostile file is refused
        assert line["outcome"] == "ModelFileError", line
