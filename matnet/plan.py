"""The forward plans of a chain of layers, chosen once when a model is built.

A plan is a list of steps, each called as ``step(A_prev, training, rng, rows)`` and returning
``(A, backward)``. The plain plan runs every layer on its own. With matnet's C kernels
(:mod:`matnet._accel`) a Dense layer followed by an in-place ReLU runs as one step of the fused plan
(bias and ReLU in one pass over Z; on the way back, the ReLU's mask and db in one pass); explain and
single layers still see them apart. The first Dense layer may check its own product for NaN and
infinity at inference (see :meth:`matnet.model.Sequential.logits`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from matnet.errors import NonFiniteProductError
from matnet.layers import Activation, Dense, Layer
from matnet.validation import check_finite_rows

__all__ = ["PREDICT_CHUNK", "forward_plans", "logits"]

# Rows per forward pass in predict: large enough for BLAS to run at full speed, small enough that one
# chunk's activations (2048 x 256 float32 = 2 MiB) stay in cache for the bias and activation passes
# that follow each product (measured in benchmarks/predict_chunks.py; see benchmarks/README.md).
PREDICT_CHUNK = 2048

Plan = list[tuple[Layer, bool]]


def forward_plans(
    layers: Sequence[Layer],
) -> tuple[Plan, bool, dict[tuple[bool, bool], list[Callable[..., Any]]]]:
    """``(fused_plan, checks_first, steps)``: the fused plan as ``(layer, fused with the ReLU
    after it)`` pairs, whether the first layer can check its own product, and the steps of each
    plan keyed ``(fused, checked)``."""
    plain: Plan = [(layer, False) for layer in layers]
    fused: Plan = []
    i = 0
    while i < len(layers):
        after = layers[i + 1] if i + 1 < len(layers) else None
        fuse = (
            _plain_dense(layers[i])
            and isinstance(after, Activation)
            and after.fn.name == "relu"
            and after.inplace
        )
        fused.append((layers[i], fuse))
        i += 2 if fuse else 1
    checks_first = _plain_dense(layers[0])
    steps = {
        (use_fused, checked): [
            _step(layer, relu, checked and k == 0)
            for k, (layer, relu) in enumerate(fused if use_fused else plain)
        ]
        for use_fused in (False, True)
        for checked in ((False, True) if checks_first else (False,))
    }
    return fused, checks_first, steps


def _plain_dense(layer: Layer) -> bool:
    """A Dense layer whose forward is Dense's own, so the plan may call its fused form instead."""
    return isinstance(layer, Dense) and type(layer).forward is Dense.forward


def _step(layer: Layer, relu: bool, check_finite: bool) -> Callable[..., Any]:
    """One step of a forward plan, called as ``step(A_prev, training, rng, rows)``."""
    if not (relu or check_finite):  # looked up at each call, so a layer's forward may be replaced
        return lambda A, training, rng, rows: layer.forward(A, training, rng, rows)
    fused = layer.fused_forward  # type: ignore[attr-defined]  # a plain Dense (see _plain_dense)
    return lambda A, training, rng, rows: fused(A, rows, relu=relu, check_finite=check_finite)


def logits(model: Any, X: np.ndarray) -> np.ndarray:
    """The logits of rows already in the layers' form (``model.input_matrix``'s output, what
    training runs on), in chunks of :data:`PREDICT_CHUNK` rows, as a new (n, n_outputs) array.

    A table model's matrix holds category codes, which are no raw cells: encoding them again would
    read every category as unknown, so validation during training comes here rather than to
    ``model.logits``.

    Raises
    ------
    ValueError
        For NaN or infinity in a numeric model's ``X``, naming the entry.
    """
    X = np.asarray(X, dtype=model.dtype)  # as input_matrix gives it (a block of Rows may not be)
    out = np.empty((X.shape[0], model.n_outputs), dtype=model.dtype)
    with model._lock:
        for start in range(0, X.shape[0], PREDICT_CHUNK):
            out[start : start + PREDICT_CHUNK] = _forward_checked(
                model, X[start : start + PREDICT_CHUNK], start
            )
    return out


def _forward_checked(model: Any, X: np.ndarray, first_row: int) -> Any:
    """forward() for inference on host rows ``first_row, ...``, raising ValueError for NaN or
    infinity in ``X`` on the way.

    A NaN or infinity in row i of X makes row i of the first product ``X @ W1`` non-finite (NaN and
    inf propagate through every sum of products, and 0 * inf is NaN), so when that product is the
    narrower of the two, the check runs on it, in cache (or inside the fused bias+ReLU kernel, for
    free), and scans X only to name the entry, or to find that the product overflowed from finite
    X, which is no input error. On 10,000 x 784 -> 256 that takes predict_proba from 0.85 to 0.92
    of the forward products' time.
    """
    first = model.layers[0]
    if model.takes_table:  # NaN in the codes are missing cells, which the layers impute
        Z, _ = model.forward(X)
        return Z
    if not (model.backend.is_host and model._checks_first and first.n_out <= first.n_in):
        check_finite_rows(X, first_row)
        Z, _ = model.forward(X)
    else:
        try:
            with np.errstate(invalid="ignore"):  # 0 * inf in the product: reported below
                Z, _ = model._run(X, False, None, check_first=True)
        except NonFiniteProductError:
            check_finite_rows(X, first_row)  # raises, naming the entry
            Z, _ = model.forward(X)
    return Z
