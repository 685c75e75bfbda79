"""History.to_csv / to_json / to_pandas: every epoch's record, read back exactly, written atomically."""

from __future__ import annotations

import csv
import json
import math
import sys

import numpy as np
import pytest

import matnet
from matnet.errors import OptionalDependencyError
from matnet.training import History


@pytest.fixture(scope="module")
def history():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = matnet.MLP([3, 8, 2], loss="cross_entropy", seed=0)
    return model.fit(X, y, epochs=5, validation_fraction=0.25, seed=0, verbose=0)


def test_csv_reads_back_every_epoch_exactly(history, tmp_path):
    path = tmp_path / "run.csv"
    text = history.to_csv(path)
    assert path.read_text() == text
    rows = list(csv.DictReader(text.splitlines()))
    assert list(rows[0]) == history.columns() == history.keys()
    assert len(rows) == len(history) == 5
    for row, record in zip(rows, history.records, strict=True):
        assert {k: float(v) for k, v in row.items()} == record  # repr round-trips every float
    assert not list(tmp_path.glob(".*.tmp"))


def test_json_reads_back_every_epoch_and_how_the_run_ended(history, tmp_path):
    path = tmp_path / "run.json"
    text = history.to_json(path)
    assert path.read_text() == text
    document = json.loads(text)
    assert document["epochs"] == history.records
    assert document["best_epoch"] == history.best_epoch
    assert document["stopped_early"] is False and document["interrupted"] is False


def test_pandas_frame_has_a_row_per_epoch(history):
    frame = history.to_pandas()
    assert list(frame.index) == [1, 2, 3, 4, 5] and frame.index.name == "epoch"
    assert list(frame.columns) == history.columns()[1:]
    np.testing.assert_array_equal(frame["val_loss"].to_numpy(), history["val_loss"])


def test_missing_keys_and_non_finite_values():
    """Epochs with different keys (validation only in some) and a diverged loss: an empty CSV cell
    and a JSON null, since JSON has no NaN."""
    h = History([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": float("nan"), "val_loss": 0.7}])
    assert h.columns() == ["epoch", "loss", "val_loss"]
    rows = list(csv.DictReader(h.to_csv().splitlines()))
    assert rows[0]["val_loss"] == "" and math.isnan(float(rows[1]["loss"]))
    epochs = json.loads(h.to_json())["epochs"]
    assert epochs[1]["loss"] is None and "val_loss" not in epochs[0]
    frame = h.to_pandas()
    assert math.isnan(frame.loc[1, "val_loss"]) and math.isnan(frame.loc[2, "loss"])
    assert History().to_csv() == "\n" and json.loads(History().to_json())["epochs"] == []


def test_to_pandas_without_pandas_names_the_extra(history, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(OptionalDependencyError, match=r"pip install 'matnet\[pandas\]'"):
        history.to_pandas()
