"""Rows of a data set taken by index, never copied as a whole.

A validation split of a memory-mapped X of several GiB must not copy its rows: :func:`matnet.fit`
(``validation_fraction``, ``rows``) and the scikit-learn estimators' early stopping keep X as given
and hold the held-out rows as a :class:`Rows`, which computes the logits one block of rows at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["Rows"]

# Rows gathered per block: a block of a 1000-feature float64 X is 32 MiB at most.
BLOCK = 4096


class Rows:
    """Rows ``index`` of the 2-D array ``X`` (a NumPy array, memmap or SciPy sparse matrix).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    index : int array of shape (n_rows,)
        Row numbers into ``X``, in the order these rows are taken.

    Attributes
    ----------
    shape : tuple (n_rows, n_features)
    dtype : numpy.dtype
    """

    def __init__(self, X: Any, index: np.ndarray) -> None:
        self.X, self.index = X, np.asarray(index, dtype=np.int64)
        self.shape = (int(self.index.shape[0]), int(X.shape[1]))
        self.dtype = X.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def blocks(self, size: int = BLOCK) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rows)`` for consecutive blocks of at most ``size`` rows, as dense arrays."""
        for start in range(0, self.shape[0], size):
            block = self.X[self.index[start : start + size]]
            yield start, (block.toarray() if hasattr(block, "toarray") else np.asarray(block))

    def logits(self, model: Any) -> np.ndarray:
        """``model.logits`` of these rows, shape (n_rows, n_outputs), one block at a time. ``X``
        is in the layers' form already (``model.input_matrix``'s output: a table model's category
        codes), so the blocks go to ``model.logits_from_matrix``, which does not encode them again."""
        out = np.empty((self.shape[0], model.n_outputs), dtype=model.dtype)
        for start, block in self.blocks():
            out[start : start + block.shape[0]] = model.logits_from_matrix(block)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        # For code that needs the rows as one array (a user's callback, say): that is a copy.
        rows = self.X[self.index]
        rows = rows.toarray() if hasattr(rows, "toarray") else np.asarray(rows)
        return rows if dtype is None else rows.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"Rows({self.shape[0]} of {self.X.shape[0]} rows)"
