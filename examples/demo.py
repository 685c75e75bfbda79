"""`make demo`: train an MLP on scikit-learn's bundled digits (8x8 images), print test accuracy and
seconds, write the model file and a loss-curve PNG under out/."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import matnet


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    # The model standardizes its own input (a Standardize layer fitted on the training rows), so
    # the saved file takes raw pixels; its class labels travel with it.
    model = matnet.MLP(
        [64, 128, 64, 10], activation="relu", loss="cross_entropy", standardize=True, seed=0
    )
    model.classes = list(range(10))
    model.summary()
    started = time.perf_counter()
    history = model.fit(
        X_train,
        y_train,
        optimizer="adam",
        learning_rate=1e-3,
        epochs=100,
        batch_size=32,
        validation_fraction=0.1,
        early_stopping=True,
        patience=10,
        seed=0,
        verbose=1,
    )
    seconds = time.perf_counter() - started
    accuracy = float(np.mean(model.predict(X_test) == y_test))
    print(
        f"test accuracy {accuracy:.4f} on {len(y_test)} held-out digits; "
        f"trained {len(history)} epochs in {seconds:.2f} s (best epoch {history.best_epoch})"
    )

    out = Path("out")
    out.mkdir(exist_ok=True)
    matnet.save(model, out / "digits.safetensors")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["epoch"], history["loss"], label="train loss")
    ax.plot(history["epoch"], history["val_loss"], label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title(f"matnet on digits: test accuracy {accuracy:.3f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "digits-loss.png", dpi=100)
    print(f"wrote {out / 'digits.safetensors'} and {out / 'digits-loss.png'}")


if __name__ == "__main__":
    main()
