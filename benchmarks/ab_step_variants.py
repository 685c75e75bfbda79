"""A/B of training-step variants that were measured and not shipped, against matnet's own step.

Every variant trains the benchmark network (784-256-128-10, ReLU, softmax cross-entropy, plain SGD) for
one epoch per round on the same gathered batches, in one process, rounds interleaved with the limit
(the step's matrix products alone)::

    .venv/bin/python benchmarks/ab_step_variants.py --batch 128 --threads 2 --rounds 9

* ``matnet``: matnet's forward, loss, backward and ``SGD.step`` (what ``fit`` runs per batch);
* ``bias-in-product``: the hidden layers' bias folded into their product through a column of ones
  (``[A, 1] @ [W; b]``), which also makes ``db`` part of the ``dW`` product; the first layer keeps its
  bias add, since the gathered batch has no spare column;
* ``sgd-in-product``: plain SGD inside the weight-gradient product, ``W -= lr * A_prev.T @ dZ`` as one
  ``gemm`` with ``beta = 1`` (ctypes, NumPy's bundled OpenBLAS), so neither ``dW`` nor the SGD pass over
  the flat vector is needed;
* ``prefetch``: the next batch gathered by a background thread while this step computes.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading

import bench_train as bt
import numpy as np
from threadpoolctl import threadpool_limits

import matnet

SIZES = bt.SIZES


def _sgemm():
    """cblas_sgemm from the OpenBLAS that NumPy's wheel bundles (the library matnet._blas uses)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    (path,) = glob.glob(os.path.join(root, "numpy.libs", "libscipy_openblas64_*"))
    func = ctypes.CDLL(path).scipy_cblas_sgemm64_
    i64, f32, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
    func.argtypes = [ctypes.c_int] * 3 + [i64] * 3 + [f32, ptr, i64, ptr, i64, f32, ptr, i64]
    func.restype = None
    return func


class Epoch:
    """One epoch of ``step(xb, yb)`` over batches gathered with ``np.take(..., out=)`` as fit does."""

    def __init__(self, X, y, batch: int, seed: int = 0) -> None:
        self.X, self.y, self.batch = X, y, batch
        self.rng = np.random.default_rng(seed)
        self.X_buf = np.empty((batch, X.shape[1]), X.dtype)
        self.y_buf = np.empty(batch, y.dtype)

    def batches(self):
        perm = self.rng.permutation(len(self.X))
        for start in range(0, len(self.X) - self.batch + 1, self.batch):
            idx = perm[start : start + self.batch]
            xb = np.take(self.X, idx, axis=0, out=self.X_buf, mode="clip")
            yield xb, np.take(self.y, idx, out=self.y_buf, mode="clip")

    def run(self) -> None:
        for xb, yb in self.batches():
            self.step(xb, yb)


class Matnet(Epoch):
    def __init__(self, X, y, batch: int, lr: float) -> None:
        super().__init__(X, y, batch)
        self.model = matnet.MLP(list(SIZES), loss="cross_entropy")
        self.opt = matnet.SGD(lr)
        self.opt.prepare(self.model.flat_params, self.model.n_decay)

    def step(self, xb, yb) -> None:
        model = self.model
        Z, backward = model.forward(xb, training=True)
        _, dZ = model.loss(Z, yb)
        backward(dZ)
        self.opt.step(model.flat_params, model.flat_grads)


class Prefetch(Matnet):
    """matnet's step; the next batch is gathered by a second thread meanwhile (np.take frees the GIL)."""

    def __init__(self, X, y, batch: int, lr: float) -> None:
        super().__init__(X, y, batch, lr)
        self.bufs = [np.empty_like(self.X_buf) for _ in range(2)]
        self.go, self.done = threading.Semaphore(0), threading.Semaphore(0)
        self.job = None
        threading.Thread(target=self._gather, daemon=True).start()

    def _gather(self) -> None:
        while True:
            self.go.acquire()
            idx, k = self.job
            np.take(self.X, idx, axis=0, out=self.bufs[k], mode="clip")
            self.done.release()

    def run(self) -> None:
        perm = self.rng.permutation(len(self.X))
        starts = list(range(0, len(self.X) - self.batch + 1, self.batch))
        self.job = (perm[: self.batch], 0)
        self.go.release()
        for j, start in enumerate(starts):
            self.done.acquire()
            xb = self.bufs[j % 2]
            if j + 1 < len(starts):
                self.job = (perm[starts[j + 1] : starts[j + 1] + self.batch], (j + 1) % 2)
                self.go.release()
            yb = np.take(self.y, perm[start : start + self.batch], out=self.y_buf, mode="clip")
            self.step(xb, yb)


class BiasInProduct(Epoch):
    """Hidden layers as ``[A, 1] @ [W; b]``: the ones column lives in the previous layer's buffer."""

    def __init__(self, X, y, batch: int, lr: float) -> None:
        super().__init__(X, y, batch)
        ref = matnet.MLP(list(SIZES), loss="cross_entropy")
        self.loss, self.lr = ref.loss, lr
        n0, n1, n2, n3 = SIZES
        shapes = [(n0, n1), (1, n1), (n1 + 1, n2), (n2 + 1, n3)]
        self.p = np.zeros(sum(a * b for a, b in shapes), np.float32)
        self.g = np.zeros_like(self.p)
        views, offset = [], 0
        for a, b in shapes:
            views.append(
                (
                    self.p[offset : offset + a * b].reshape(a, b),
                    self.g[offset : offset + a * b].reshape(a, b),
                )
            )
            offset += a * b
        (self.W1, self.dW1), (self.b1, self.db1), (self.W2b, self.dW2b), (self.W3b, self.dW3b) = (
            views
        )
        self.W1[...] = ref.params["0.W"]
        self.W2b[:n1] = ref.params["2.W"]
        self.W3b[:n2] = ref.params["4.W"]
        self.Z1a = np.ones((batch, n1 + 1), np.float32)  # last column stays 1
        self.Z2a = np.ones((batch, n2 + 1), np.float32)
        self.Z3 = np.empty((batch, n3), np.float32)
        self.dA1, self.dA2 = np.empty((batch, n1), np.float32), np.empty((batch, n2), np.float32)
        self.ones = np.ones((1, batch), np.float32)
        self.zeros1, self.zeros2 = np.zeros((1, n1), np.float32), np.zeros((1, n2), np.float32)

    def step(self, xb, yb) -> None:
        n1, n2 = SIZES[1], SIZES[2]
        Z1 = np.matmul(xb, self.W1, out=self.Z1a[:, :n1])
        Z1 += self.b1
        np.maximum(Z1, self.zeros1, out=Z1)
        Z2 = np.matmul(self.Z1a, self.W2b, out=self.Z2a[:, :n2])
        np.maximum(Z2, self.zeros2, out=Z2)
        np.matmul(self.Z2a, self.W3b, out=self.Z3)
        _, dZ = self.loss(self.Z3, yb)
        np.matmul(self.Z2a.T, dZ, out=self.dW3b)  # [dW3; db3] in one product
        dZ2 = np.matmul(dZ, self.W3b[:n2].T, out=self.dA2)
        np.multiply(dZ2, Z2 > 0, out=dZ2)
        np.matmul(self.Z1a.T, dZ2, out=self.dW2b)
        dZ1 = np.matmul(dZ2, self.W2b[:n1].T, out=self.dA1)
        np.multiply(dZ1, Z1 > 0, out=dZ1)
        np.matmul(xb.T, dZ1, out=self.dW1)
        np.matmul(self.ones, dZ1, out=self.db1)
        matnet._blas.axpy(-self.lr, self.g, self.p)


class SgdInProduct(Matnet):
    """matnet's forward and loss; backward by hand with ``W += -lr * A_prev.T @ dZ`` in one gemm."""

    def __init__(self, X, y, batch: int, lr: float) -> None:
        super().__init__(X, y, batch, lr)
        self.sgemm, self.lr = _sgemm(), lr
        self.ones = np.ones((1, batch), np.float32)
        self.dA = [None] + [np.empty((batch, width), np.float32) for width in SIZES[1:-1]]

    def _add_product(self, A_stored, dZ, W) -> None:  # W += -lr * A_stored.T @ dZ
        k, m = A_stored.shape
        n = dZ.shape[1]
        self.sgemm(101, 112, 111, m, n, k, -self.lr, A_stored.ctypes.data, m, dZ.ctypes.data, n, 1.0,
                   W.ctypes.data, n)  # fmt: skip

    def step(self, xb, yb) -> None:
        model = self.model
        dense = model.dense_layers
        A, acts = xb, [xb]  # the input of each Dense layer
        for layer in model.layers:
            A, _ = layer.forward(A)
            if isinstance(layer, matnet.layers.Activation):
                acts.append(A)
        _, dZ = model.loss(A, yb)
        for i in (2, 1, 0):
            layer = dense[i]
            dA = np.matmul(dZ, layer.W.T, out=self.dA[i][: dZ.shape[0]]) if i else None  # old W
            self._add_product(acts[i], dZ, layer.W)
            db = np.matmul(self.ones[:, : dZ.shape[0]], dZ, out=layer.db)
            db *= self.lr
            layer.b -= db
            if i:
                dZ = np.multiply(dA, acts[i] > 0, out=dA)


def main() -> None:
    args = bt.ab_arguments(__doc__, rounds=9)
    X, y = bt.make_data(args.n)
    lr = bt.LR["sgd"]
    impls = {
        "matnet": Matnet(X, y, args.batch, lr),
        "bias-in-product": BiasInProduct(X, y, args.batch, lr),
        "sgd-in-product": SgdInProduct(X, y, args.batch, lr),
        "prefetch": Prefetch(X, y, args.batch, lr),
        "limit": bt.Limit(args.n, args.batch, np.float32),
    }
    with threadpool_limits(args.threads):
        for impl in impls.values():
            impl.run()  # warm-up
        times = bt.interleaved(impls, args.rounds)
    for key in impls:
        if key != "limit":
            print(
                f"batch {args.batch}, {args.threads} threads, {key:16s}: "
                f"speed / matnet {bt.median_ratio(times['matnet'], times[key]):.3f}, "
                f"fraction {bt.median_ratio(times['limit'], times[key]):.3f}"
            )


if __name__ == "__main__":
    main()
