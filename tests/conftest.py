from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(params=["kernels", "numpy"])
def compute_path(request, monkeypatch):
    """Run a test through matnet's C kernels and again through its NumPy path (matnet._accel)."""
    from matnet import _accel

    if request.param == "kernels" and _accel.kernels is None:
        pytest.skip("matnet's C kernels are not built (no C compiler at install)")
    if request.param == "numpy":
        monkeypatch.setattr(_accel, "kernels", None)
    return request.param
