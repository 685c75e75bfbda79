"""The benchmark runs end to end on tiny data, so it cannot rot. No timing is asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_train_smoke(tmp_path):
    out, js = tmp_path / "RESULTS.md", tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_train.py"),
            "--smoke",
            "--out",
            str(out),
            "--json",
            str(js),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for heading in (
        "## Machine and command",
        "## Training",
        "## Inference",
        "## Peak RSS",
        "## Targets",
    ):
        assert heading in text
    assert "Smoke run" in text
    results = json.loads(js.read_text())
    configs = {(r["dtype"], r["batch"], r["optimizer"]) for r in results["train"]}
    assert configs == {
        ("float32", 128, "sgd"),
        ("float32", 512, "sgd"),
        ("float32", 128, "adam"),
        ("float32", 512, "adam"),
        ("float64", 128, "sgd"),
        ("float64", 512, "sgd"),
    }
    for r in results["train"]:
        assert {"matnet", "sklearn"} <= set(r["samples_per_s"])
        if r["optimizer"] == "sgd":
            assert {"reference", "limit"} <= set(r["samples_per_s"])
        assert all(v > 0 for v in r["samples_per_s"].values())
        # Every implementation really trained: a finite loss, below chance (log 10) after 2 epochs
        # of a learnable teacher.
        for key, loss in r["loss"].items():
            if loss is not None:
                assert math.isfinite(loss) and loss < math.log(10) * 1.5, (key, loss)
    assert {"matnet predict_proba", "matnet forward", "limit"} <= set(
        results["inference"]["samples_per_s"]
    )
    rss = results["rss"]
    assert (
        "error" not in rss["matnet"] and rss["matnet"]["peak_kib"] > rss["matnet"]["baseline_kib"]
    )
