"""Model files: the safetensors layout read and written with NumPy alone, checked before use."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import matnet
from matnet.errors import ModelFileError
from matnet.io import (
    MAX_HEADER_BYTES,
    atomic_write,
    encode_tensors,
    load_tensors,
    model_metadata,
    save_tensors,
)

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def _trained_model(dtype="float32"):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    model = matnet.MLP([5, 8, 3], "tanh", loss="cross_entropy", dtype=dtype, seed=1)
    model.fit(X, y, epochs=3, batch_size=16, verbose=0)
    return model, X


def _header_blob(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


# --- interoperability with the safetensors package ------------------------------------------


def test_safetensors_package_file_loads_with_matnet(tmp_path):
    tensors = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array([1.5, -2.0], dtype=np.float64),
        "i": np.arange(5, dtype=np.int64),
        "h": np.array([[0.5]], dtype=np.float16),
    }
    path = tmp_path / "their.safetensors"
    safetensors_numpy.save_file(tensors, str(path), metadata={"who": "safetensors"})
    loaded, metadata = load_tensors(path)
    assert metadata == {"who": "safetensors"}
    assert set(loaded) == set(tensors)
    for key, value in tensors.items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)


def test_matnet_model_file_loads_with_safetensors_package(tmp_path):
    model, _ = _trained_model()
    path = tmp_path / "ours.safetensors"
    matnet.save(model, path, metadata={"labels": ["a", "b", "c"]})
    theirs = safetensors_numpy.load_file(str(path))
    assert set(theirs) == set(model.params)
    for key, value in model.params.items():
        assert theirs[key].dtype == value.dtype
        np.testing.assert_array_equal(theirs[key], value)


# --- a model survives the round trip exactly -------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_saved_and_loaded_model_predicts_bit_identically(tmp_path, dtype):
    model, X = _trained_model(dtype)
    model.metadata = {"scaler": {"mean": [0.0] * 5, "scale": [1.0] * 5}, "labels": ["x", "y", "z"]}
    path = tmp_path / "m.safetensors"
    matnet.save(model, path)
    loaded = matnet.load(path)
    assert loaded.config() == model.config()
    assert loaded.metadata == model.metadata
    assert loaded.dtype == model.dtype
    np.testing.assert_array_equal(loaded.flat_params, model.flat_params)
    # Bit-identical: compare the bytes, not approximately.
    assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()
    assert loaded.logits(X).tobytes() == model.logits(X).tobytes()


# --- every malformed file raises ModelFileError naming the problem ----------------------------


def _write(tmp_path, blob: bytes):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    return path


def test_truncated_file(tmp_path):
    model, _ = _trained_model()
    good = tmp_path / "good.safetensors"
    matnet.save(model, good)
    blob = good.read_bytes()
    with pytest.raises(ModelFileError, match="truncated"):
        matnet.load(_write(tmp_path, blob[:-10]))
    with pytest.raises(ModelFileError, match="too short"):
        matnet.load(_write(tmp_path, blob[:5]))


def test_header_length_past_the_end(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    blob = (len(header) + 100).to_bytes(8, "little") + header + b"\0" * 4
    with pytest.raises(ModelFileError, match="runs past the end"):
        load_tensors(_write(tmp_path, blob))


def test_overlapping_offsets(tmp_path):
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    with pytest.raises(ModelFileError, match="overlaps"):
        load_tensors(_write(tmp_path, _header_blob(header, b"\0" * 24)))


@pytest.mark.parametrize("offsets", [[0, 400], [8, 4], [-4, 4]])
def test_out_of_range_offsets(tmp_path, offsets):
    header = {"a": {"dtype": "U8", "shape": [4], "data_offsets": offsets}}
    with pytest.raises(ModelFileError, match="lie outside"):
        load_tensors(_write(tmp_path, _header_blob(header, b"\0" * 16)))


def test_shape_that_does_not_match_offsets(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [10**12, 10**12], "data_offsets": [0, 16]}}
    with pytest.raises(ModelFileError, match="needs .* bytes"):
        load_tensors(_write(tmp_path, _header_blob(header, b"\0" * 16)))


def test_unknown_dtype(tmp_path):
    header = {"a": {"dtype": "X99", "shape": [2], "data_offsets": [0, 8]}}
    with pytest.raises(ModelFileError, match="unknown dtype 'X99'"):
        load_tensors(_write(tmp_path, _header_blob(header, b"\0" * 8)))


def test_header_over_100_mb_is_refused_without_reading_it(tmp_path):
    # Only the 8-byte length claims 200 MB; the file itself is tiny, so nothing that size exists.
    blob = (200 * 1024 * 1024).to_bytes(8, "little") + b"{}" + b" " * 6
    assert 200 * 1024 * 1024 > MAX_HEADER_BYTES
    with pytest.raises(ModelFileError, match="exceeds the 104857600-byte"):
        load_tensors(_write(tmp_path, blob))


def test_header_that_is_not_json(tmp_path):
    blob = (8).to_bytes(8, "little") + b"not json"
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_tensors(_write(tmp_path, blob))


def test_architecture_not_matching_tensors(tmp_path):
    model, _ = _trained_model()
    meta = model_metadata(model)
    config = json.loads(meta["model"])
    config["layers"][0]["n_out"] = 9  # claims Dense(5 -> 9); the tensors say 5 -> 8
    config["layers"][2]["n_in"] = 9
    meta["model"] = json.dumps(config)
    path = tmp_path / "mismatch.safetensors"
    path.write_bytes(encode_tensors(model.get_weights(), meta))
    with pytest.raises(ModelFileError, match="do not match the architecture"):
        matnet.load(path)


def test_architecture_claiming_a_huge_layer_is_refused_before_allocating(tmp_path):
    model, _ = _trained_model()
    meta = model_metadata(model)
    config = json.loads(meta["model"])
    config["layers"][0]["n_in"] = 10**11  # 400 GB of float32 if it were allocated
    meta["model"] = json.dumps(config)
    path = tmp_path / "huge.safetensors"
    path.write_bytes(encode_tensors(model.get_weights(), meta))
    with pytest.raises(ModelFileError, match="do not match the architecture"):
        matnet.load(path)


def test_layer_type_from_the_file_is_never_imported(tmp_path):
    model, _ = _trained_model()
    meta = model_metadata(model)
    config = json.loads(meta["model"])
    config["layers"][1] = {"type": "os.system", "command": "echo pwned"}
    meta["model"] = json.dumps(config)
    path = tmp_path / "evil.safetensors"
    path.write_bytes(encode_tensors(model.get_weights(), meta))
    with pytest.raises(ModelFileError, match="unknown layer type 'os.system'"):
        matnet.load(path)


def test_plain_safetensors_file_is_not_a_matnet_model(tmp_path):
    path = tmp_path / "plain.safetensors"
    safetensors_numpy.save_file({"w": np.zeros((2, 2), np.float32)}, str(path))
    with pytest.raises(ModelFileError, match="not a matnet model file"):
        matnet.load(path)


def test_random_bytes_are_not_a_model_file(tmp_path):
    blob = np.random.default_rng(0).integers(0, 256, size=300, dtype=np.uint8).tobytes()
    with pytest.raises(ModelFileError):
        matnet.load(_write(tmp_path, blob))


def test_flipped_data_bit_fails_the_checksum(tmp_path):
    model, _ = _trained_model()
    path = tmp_path / "m.safetensors"
    matnet.save(model, path)
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x10
    with pytest.raises(ModelFileError, match="checksum"):
        matnet.load(_write(tmp_path, bytes(blob)))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        matnet.load(tmp_path / "nope.safetensors")
    with pytest.raises(ModelFileError, match="directory"):
        matnet.load(tmp_path)


# --- atomic writes ---------------------------------------------------------------------------


def test_failure_mid_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_tensors(path, {"w": np.ones(3, np.float32)})
    before = path.read_bytes()

    def crash(fd):
        raise OSError(5, "simulated I/O error during fsync")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="simulated"):
        save_tensors(path, {"w": np.zeros(1000, np.float32)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary left
    tensors, _ = load_tensors(path)
    np.testing.assert_array_equal(tensors["w"], np.ones(3, np.float32))


def test_failure_in_rename_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def crash(src, dst):
        raise OSError(28, "simulated: no space left")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="no space"):
        atomic_write(path, b"new contents")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_write_gives_new_files_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "new.bin", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "new.bin").stat().st_mode & 0o777 == 0o644
    existing = tmp_path / "existing.bin"
    existing.write_bytes(b"old")
    existing.chmod(0o640)
    atomic_write(existing, b"new")
    assert existing.stat().st_mode & 0o777 == 0o640
    assert existing.read_bytes() == b"new"


def test_a_training_checkpoint_is_named_as_such(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 3)), rng.integers(0, 2, 20)
    model = matnet.MLP([3, 4, 2], loss="cross_entropy")
    path = tmp_path / "run.ckpt"
    model.fit(X, y, epochs=1, verbose=0, checkpoint=path)
    with pytest.raises(ModelFileError, match="not a matnet model file but a training checkpoint"):
        matnet.load(path)
