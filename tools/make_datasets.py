"""Regenerate matnet's bundled datasets (matnet/data/*.npz) from scikit-learn's copies.

Run once, from the repository root, with scikit-learn installed::

    python tools/make_datasets.py

Each file is a compressed ``.npz`` of plain arrays only (no object arrays, so it loads with
``numpy.load(..., allow_pickle=False)``): ``X`` (n_samples, n_features), ``y`` (n_samples,),
``feature_names``, ``target_name``, ``task`` ("classification" or "regression"), ``target_names`` (class
names, classification only), ``source``. matnet reads them with NumPy alone, so ``matnet train digits`` works
on a fresh ``pip install matnet``. Provenance and licences are in matnet/data/README.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sklearn import datasets

OUT = Path(__file__).resolve().parent.parent / "matnet" / "data"

SOURCES = {
    "digits": (
        datasets.load_digits,
        "UCI Optical Recognition of Handwritten Digits (test set), 8x8 images, via scikit-learn",
    ),
    "iris": (datasets.load_iris, "Fisher's Iris data (UCI), via scikit-learn"),
    "wine": (datasets.load_wine, "UCI Wine recognition data, via scikit-learn"),
    "breast_cancer": (
        datasets.load_breast_cancer,
        "UCI Breast Cancer Wisconsin (Diagnostic), via scikit-learn",
    ),
    "diabetes": (
        lambda: datasets.load_diabetes(scaled=False),
        "Diabetes data of Efron, Hastie, Johnstone and Tibshirani (2004), unscaled, via scikit-learn",
    ),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (loader, source) in SOURCES.items():
        bunch = loader()
        X = np.asarray(bunch.data)
        y = np.asarray(bunch.target)
        arrays = {
            "feature_names": np.asarray([str(f) for f in bunch.feature_names], dtype=str),
            "source": np.asarray(source),
        }
        if name == "diabetes":
            arrays.update(
                X=X.astype(np.float64),
                y=y.astype(np.float64),
                task=np.asarray("regression"),
                target_name=np.asarray("progression"),
            )
        else:
            # digits are integer pixel intensities 0..16: uint8 holds them exactly and compresses well.
            X = X.astype(np.uint8) if name == "digits" else X.astype(np.float64)
            arrays.update(
                X=X,
                y=y.astype(np.int64),
                task=np.asarray("classification"),
                target_name=np.asarray("target"),
                target_names=np.asarray([str(t) for t in bunch.target_names], dtype=str),
            )
        path = OUT / f"{name}.npz"
        np.savez_compressed(path, **arrays)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        print(f"{path.relative_to(OUT.parent.parent)}: X {X.shape} {X.dtype}, sha256 {digest}...")


if __name__ == "__main__":
    main()
