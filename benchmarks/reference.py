"""The peers matnet is timed against, each written the way a user of that library would write it.

* :class:`Reference`: a minimal hand-written NumPy loop of the same network (the article's formulas,
  plain expressions that allocate their results, ``X[idx]`` to gather a batch);
* :class:`Torch`: PyTorch on the CPU, ``nn.Sequential`` with ``CrossEntropyLoss`` and ``torch.optim``;
* :class:`Sklearn`: scikit-learn's ``MLPClassifier`` with ``max_iter=1``;
* :class:`Limit`: the same step's matrix products alone, at their shapes, into preallocated outputs:
  the time no implementation of this network can beat on this BLAS.

Each class trains one epoch per :meth:`run` call and keeps its state between calls.
"""

from __future__ import annotations

import warnings

import numpy as np

SIZES = (784, 256, 128, 10)


def batch_sizes(n: int, batch: int) -> list[int]:
    """The batch sizes of one epoch: full batches, then the remainder."""
    return [min(batch, n - start) for start in range(0, n, batch)]


class Reference:
    """A minimal hand-written NumPy loop: 784-256-128-10, ReLU, softmax cross-entropy, plain SGD."""

    name = "hand-written NumPy"

    def __init__(self, X, y, batch: int, lr: float, seed: int = 0) -> None:
        self.X, self.y, self.batch, self.lr = X, y, batch, lr
        self.rng = np.random.default_rng(seed)
        init = np.random.default_rng(seed)
        self.params = []
        for n_in, n_out in zip(SIZES[:-1], SIZES[1:], strict=True):
            W = init.normal(0.0, np.sqrt(2.0 / n_in), size=(n_in, n_out)).astype(X.dtype)
            self.params += [W, np.zeros((1, n_out), dtype=X.dtype)]
        self.loss = float("nan")

    def run(self) -> None:
        X, y, B, lr = self.X, self.y, self.batch, self.lr
        W1, b1, W2, b2, W3, b3 = self.params
        perm = self.rng.permutation(len(X))
        total = 0.0
        for start in range(0, len(X), B):
            idx = perm[start : start + B]
            A0, labels, n = X[idx], y[idx], len(idx)
            Z1 = A0 @ W1 + b1
            A1 = np.maximum(Z1, 0)
            Z2 = A1 @ W2 + b2
            A2 = np.maximum(Z2, 0)
            Z3 = A2 @ W3 + b3
            shifted = Z3 - Z3.max(axis=1, keepdims=True)
            E = np.exp(shifted)
            S = E.sum(axis=1, keepdims=True)
            total += float(np.sum(np.log(S[:, 0]) - shifted[np.arange(n), labels]))
            P = E / S
            P[np.arange(n), labels] -= 1
            dZ3 = P / n
            dW3, db3 = A2.T @ dZ3, dZ3.sum(axis=0, keepdims=True)
            dZ2 = (dZ3 @ W3.T) * (Z2 > 0)
            dW2, db2 = A1.T @ dZ2, dZ2.sum(axis=0, keepdims=True)
            dZ1 = (dZ2 @ W2.T) * (Z1 > 0)
            dW1, db1 = A0.T @ dZ1, dZ1.sum(axis=0, keepdims=True)
            for p, g in zip(self.params, (dW1, db1, dW2, db2, dW3, db3), strict=True):
                p -= lr * g
        self.loss = total / len(X)

    def forward(self, X):
        W1, b1, W2, b2, W3, b3 = self.params
        return np.maximum(np.maximum(X @ W1 + b1, 0) @ W2 + b2, 0) @ W3 + b3


class Limit:
    """The step's matrix products alone: 3 forward, 3 weight-gradient and 2 input-gradient products
    (the first layer needs no input gradient), at the shapes and layouts of the step, into
    preallocated outputs, for the same batch sizes as one epoch."""

    name = "matrix products alone"

    def __init__(self, n: int, batch: int, dtype, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.sizes = batch_sizes(n, batch)
        self.Ws = [
            rng.standard_normal((a, b)).astype(dtype)
            for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)
        ]
        self.X = rng.standard_normal((batch, SIZES[0])).astype(dtype)
        self.Zs = [np.empty((batch, b), dtype=dtype) for b in SIZES[1:]]
        self.dWs = [np.empty_like(W) for W in self.Ws]
        self.dAs = [np.empty((batch, a), dtype=dtype) for a in SIZES[:-1]]

    def step(self, m: int) -> None:
        A = self.X[:m]
        acts = [A]
        for W, Z in zip(self.Ws, self.Zs, strict=True):
            A = np.matmul(A, W, out=Z[:m])  # Z = A_prev @ W
            acts.append(A)
        for i in (2, 1, 0):
            dZ = acts[i + 1]
            np.matmul(acts[i].T, dZ, out=self.dWs[i])  # dW = A_prev.T @ dZ
            if i > 0:
                np.matmul(dZ, self.Ws[i].T, out=self.dAs[i][:m])  # dA_prev = dZ @ W.T

    def run(self) -> None:
        for m in self.sizes:
            self.step(m)


class LimitForward:
    """Inference's matrix products alone: three products at the shapes of one forward pass."""

    name = "forward products alone"

    def __init__(self, n: int, dtype, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.Ws = [
            rng.standard_normal((a, b)).astype(dtype)
            for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)
        ]
        self.X = rng.standard_normal((n, SIZES[0])).astype(dtype)
        self.Zs = [np.empty((n, b), dtype=dtype) for b in SIZES[1:]]

    def run(self) -> None:
        A = self.X
        for W, Z in zip(self.Ws, self.Zs, strict=True):
            A = np.matmul(A, W, out=Z)


class Torch:
    """PyTorch CPU: the usual training loop with ``torch.optim``."""

    name = "PyTorch CPU"

    def __init__(self, X, y, batch: int, optimizer: str, lr: float, seed: int = 0) -> None:
        import torch
        from torch import nn

        self.torch = torch
        torch.manual_seed(seed)
        dtype = torch.float64 if X.dtype == np.float64 else torch.float32
        layers = []
        for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(SIZES) - 2:
                layers.append(nn.ReLU())
        self.model = nn.Sequential(*layers).to(dtype)
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)
        self.batch = batch
        params = self.model.parameters()
        if optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=lr)
        else:
            self.opt = torch.optim.Adam(params, lr=lr)
        self.loss_fn = nn.CrossEntropyLoss()
        self.gen = torch.Generator().manual_seed(seed)
        self.loss = float("nan")

    def run(self) -> None:
        torch, X, y, B = self.torch, self.X, self.y, self.batch
        n = X.shape[0]
        perm = torch.randperm(n, generator=self.gen)
        total = torch.zeros(())
        for start in range(0, n, B):
            idx = perm[start : start + B]
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(X[idx]), y[idx])
            loss.backward()
            self.opt.step()
            total += loss.detach() * idx.shape[0]
        self.loss = float(total) / n

    def forward(self, X):
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(X))


class Sklearn:
    """scikit-learn's MLPClassifier, one epoch per ``fit`` (``max_iter=1``), no L2 penalty, plain SGD
    (momentum 0) or Adam, as close to the other implementations as its options allow."""

    name = "scikit-learn MLPClassifier"

    def __init__(self, X, y, batch: int, optimizer: str, lr: float, seed: int = 0) -> None:
        from sklearn.neural_network import MLPClassifier

        options = {"momentum": 0.0, "nesterovs_momentum": False} if optimizer == "sgd" else {}
        self.clf = MLPClassifier(
            hidden_layer_sizes=SIZES[1:-1],
            activation="relu",
            solver=optimizer,
            alpha=0.0,
            batch_size=batch,
            learning_rate_init=lr,
            max_iter=1,
            shuffle=True,
            random_state=seed,
            **options,
        )
        self.X, self.y = X, y
        self.loss = float("nan")

    def run(self) -> None:
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.clf.fit(self.X, self.y)
        self.loss = float(self.clf.loss_)

    def forward(self, X):
        return self.clf.predict_proba(X)
