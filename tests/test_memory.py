"""Training allocates nothing that survives a step once warm, and one epoch needs little beyond the data."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import matnet


class _Tracer(matnet.Callback):
    """Records traced memory after each optimizer step."""

    def __init__(self, steps: int) -> None:
        # Preallocated, so recording allocates nothing that would itself count as growth.
        self.current = np.zeros(steps, dtype=np.int64)
        self.step = 0

    def on_batch_end(self, step, logs):
        self.current[self.step] = tracemalloc.get_traced_memory()[0]
        self.step += 1


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_no_memory_growth_over_100_warm_steps(optimizer, dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8 * 130, 32)).astype(dtype)
    y = rng.integers(0, 10, X.shape[0])
    model = matnet.MLP([32, 64, 48, 10], loss="cross_entropy", dtype=dtype, seed=0)
    opt = matnet.SGD(0.01) if optimizer == "sgd" else matnet.Adam(1e-3)
    model.fit(X, y, epochs=1, batch_size=8, optimizer=opt, verbose=0)  # warm: buffers exist
    tracer = _Tracer(130)
    tracemalloc.start()
    try:
        model.fit(X, y, epochs=1, batch_size=8, optimizer=opt, verbose=0, callbacks=[tracer])
    finally:
        tracemalloc.stop()
    assert tracer.step == 130
    steps = tracer.current[20:121]
    growth = steps[-1] - steps[0]
    assert growth <= 4096, f"traced memory grew by {growth} bytes over 100 steps"


_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import matnet

    def kib(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])

    baseline = kib("VmRSS")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20000, 784), dtype=np.float32)
    y = rng.integers(0, 10, X.shape[0])
    model = matnet.MLP([784, 256, 128, 10], loss="cross_entropy", seed=0)
    model.fit(X, y, epochs=1, batch_size=128, optimizer=matnet.SGD(0.01), verbose=0)
    print(json.dumps({"growth_kib": kib("VmHWM") - baseline, "data": X.nbytes + y.nbytes}))
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_rss_of_an_epoch_is_data_plus_30_mib():
    """A fresh process: peak RSS after one epoch minus RSS before the data <= data + 30 MiB."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=120
    )
    fig = json.loads(proc.stdout.strip().splitlines()[-1])
    over = fig["growth_kib"] * 1024 - fig["data"]
    assert over <= 30 * 2**20, f"peak RSS exceeded the data by {over / 2**20:.1f} MiB"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_check_is_exact_and_needs_no_copy_of_the_data(dtype):
    from matnet.validation import check_features

    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 50)).astype(dtype)
    tracemalloc.start()
    try:
        check_features(X, 50, dtype)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes // 8, f"the finite check allocated {peak} bytes for {X.nbytes} of data"
    big = X.copy()
    big[5, 7] = np.finfo(dtype).max / 2  # finite, but its square overflows: the exact check decides
    assert check_features(big, 50, dtype) is big
    for bad in (np.nan, np.inf, -np.inf):
        for row in (0, 2999):
            Xb = big.copy()
            Xb[row, 3] = bad
            with pytest.raises(ValueError, match=f"row {row}, column 3"):
                check_features(Xb, 50, dtype)
