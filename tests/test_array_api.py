"""Every operation in matnet.functional runs on array-api-strict and gives NumPy's numbers.

array-api-strict implements the Python array API standard and nothing more, so a NumPy-only call
(``np.maximum``, ``.astype``, ``.sum(axis=...)`` with NumPy keywords, in-place ``out=``) fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from matnet import functional as F

xps = pytest.importorskip("array_api_strict", reason="array-api-strict is in the dev extra")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return {
        "A_prev": rng.normal(size=(5, 4)),
        "W": rng.normal(size=(4, 3)),
        "b": rng.normal(size=(1, 3)),
        "dZ": rng.normal(size=(5, 3)),
        # spread over the kinks and the saturated tails of every activation
        "Z": np.concatenate([rng.normal(scale=3.0, size=(4, 3)), [[-1e4, 0.5, 1e4]]]),
    }


def to_strict(array: np.ndarray):
    return xps.asarray(array, dtype=xps.float64)


def to_numpy(array) -> np.ndarray:
    assert type(array).__module__.startswith("array_api_strict"), type(array)
    return np.asarray(array)


ELEMENTWISE = [
    name
    for name in F.__all__
    if name
    not in (
        "linear_forward",
        "linear_backward",
        "linear_activation_forward",
        "softmax_backward",
        "ACTIVATIONS",
    )
]


def test_every_functional_op_is_covered():
    covered = set(ELEMENTWISE) | {
        "linear_forward",
        "linear_backward",
        "linear_activation_forward",
        "softmax_backward",
    }
    assert covered == set(F.__all__) - {"ACTIVATIONS"}
    # every activation and every derivative in the registry is among them
    for forward, derivative in F.ACTIVATIONS.values():
        assert forward.__name__ in covered
        assert derivative is None or derivative.__name__ in covered


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_runs_on_array_api_strict(name, data):
    fn = getattr(F, name)
    expected = fn(data["Z"])
    got = to_numpy(fn(to_strict(data["Z"])))
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)


def test_linear_forward_and_backward_on_array_api_strict(data):
    A_prev, W, b, dZ = (data[k] for k in ("A_prev", "W", "b", "dZ"))
    Z = to_numpy(F.linear_forward(to_strict(A_prev), to_strict(W), to_strict(b)))
    np.testing.assert_allclose(Z, F.linear_forward(A_prev, W, b), rtol=1e-13)
    got = F.linear_backward(to_strict(dZ), to_strict(A_prev), to_strict(W))
    for g, e in zip(got, F.linear_backward(dZ, A_prev, W), strict=True):
        np.testing.assert_allclose(to_numpy(g), e, rtol=1e-13)


def test_softmax_backward_on_array_api_strict(data):
    A = F.softmax(data["Z"])
    got = to_numpy(F.softmax_backward(to_strict(data["dZ"][:, :3]), to_strict(A)))
    np.testing.assert_allclose(
        got, F.softmax_backward(data["dZ"][:, :3], A), rtol=1e-12, atol=1e-300
    )


@pytest.mark.parametrize("activation", sorted(F.ACTIVATIONS))
def test_linear_activation_forward_on_array_api_strict(activation, data):
    A_prev, W, b = (data[k] for k in ("A_prev", "W", "b"))
    got = F.linear_activation_forward(to_strict(A_prev), to_strict(W), to_strict(b), activation)
    expected = F.linear_activation_forward(A_prev, W, b, activation)
    np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-13)


def test_shape_errors_on_array_api_strict(data):
    with pytest.raises(ValueError, match=r"\(5, 4\).*\(3, 3\)"):
        F.linear_forward(to_strict(data["A_prev"]), to_strict(data["W"][:3]), to_strict(data["b"]))


def test_float32_stays_float32_on_array_api_strict(data):
    Z = xps.asarray(data["Z"], dtype=xps.float32)
    for name in ELEMENTWISE:
        assert getattr(F, name)(Z).dtype == xps.float32, name
