"""Weights: sample_weight and class_weight on the tabular estimators and `matnet train`, the weighted
loss proven by central differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import matnet
from matnet.cli import main
from matnet.layers import Activation, Dense
from matnet.tabular.build import row_weights

sklearn_front = pytest.importorskip("matnet.sklearn")


@pytest.mark.parametrize(
    "name", ["softmax_cross_entropy", "binary_cross_entropy", "mse", "poisson"]
)
@pytest.mark.parametrize("batch", [1, 7])
def test_the_weighted_loss_passes_gradcheck(name, batch):
    loss = matnet.losses.get_loss(name)
    k = 3 if name in ("softmax_cross_entropy", "mse") else 1
    rng = np.random.default_rng(batch)
    model = matnet.Sequential([Dense(3, 5), Activation("tanh"), Dense(5, k)], dtype="float64",
                              seed=2, loss=name)  # fmt: skip
    X = rng.normal(size=(batch, 3))
    y = loss.sample_targets(rng, batch, k)
    y = np.abs(np.round(y)) if name == "poisson" else y
    w = rng.uniform(0.1, 3.0, batch)
    assert matnet.gradcheck(model, X, y, sample_weight=w) <= 1e-6


def test_a_wrong_weighted_gradient_is_caught():
    """The check can fail: a loss whose gradient ignores the weights is reported."""
    from matnet.losses import MeanSquaredError

    class UnweightedSquaredError(MeanSquaredError):
        def __call__(self, Z, Y, sample_weight=None):
            value, _ = super().__call__(Z, Y, sample_weight)
            _, dZ = super().__call__(Z, Y, None)
            return value, dZ

    model = matnet.Sequential([Dense(3, 2)], dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    X, y, w = rng.normal(size=(6, 3)), rng.normal(size=(6, 2)), rng.uniform(0.1, 3, 6)
    assert matnet.gradcheck(model, X, y, UnweightedSquaredError(), sample_weight=w) > 1e-3


def _imbalanced(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.where(X[:, 0] + 0.5 * rng.normal(size=n) > 1.2, "rare", "common")
    return pd.DataFrame(X, columns=["a", "b", "c"]), y


def test_balanced_class_weights_follow_scikit_learns_rule():
    y = np.array([0, 0, 0, 1, 0, 1])
    train = np.arange(6)
    w = row_weights(6, y, ["no", "yes"], train, class_weight="balanced")
    np.testing.assert_allclose(w, np.where(y == 0, 6 / (2 * 4), 6 / (2 * 2)))
    w = row_weights(6, y, ["no", "yes"], train, np.full(6, 2.0), {"yes": 5})
    np.testing.assert_allclose(w, np.where(y == 0, 2.0, 10.0))
    with pytest.raises(ValueError, match="class_weight names 'maybe', which is no class"):
        row_weights(6, y, ["no", "yes"], train, class_weight={"maybe": 2})
    with pytest.raises(ValueError, match="class_weight applies to classification"):
        row_weights(6, None, None, train, class_weight="balanced")


def test_class_weight_trains_as_the_equal_sample_weights():
    X, y = _imbalanced()
    a = sklearn_front.TabularClassifier(class_weight="balanced", random_state=1, max_iter=3)
    a.fit(X, y)
    counts = {label: int((y == label).sum()) for label in np.unique(y)}
    # Over the training rows, as the builder counts them: the split is the same for both fits.
    from matnet.tabular.build import split_rows

    codes = np.unique(y, return_inverse=True)[1]
    train, _ = split_rows(len(y), 0.2, codes, 1, stratify=True)
    in_train = {label: int((y[train] == label).sum()) for label in counts}
    weights = np.asarray([len(train) / (2 * in_train[label]) for label in y])
    b = sklearn_front.TabularClassifier(random_state=1, max_iter=3)
    b.fit(X, y, sample_weight=weights)
    np.testing.assert_array_equal(a.model_.flat_params, b.model_.flat_params)
    plain = sklearn_front.TabularClassifier(random_state=1, max_iter=3).fit(X, y)
    assert not np.array_equal(plain.model_.flat_params, a.model_.flat_params)


def test_weights_of_one_train_as_no_weights():
    X, y = _imbalanced()
    values = X["a"].to_numpy() * 2 + X["b"].to_numpy()
    a = sklearn_front.TabularRegressor(random_state=2, max_iter=2).fit(X, values)
    b = sklearn_front.TabularRegressor(random_state=2, max_iter=2).fit(
        X, values, sample_weight=np.ones(len(values))
    )
    scale = np.abs(a.model_.flat_params).max()
    np.testing.assert_allclose(
        b.model_.flat_params, a.model_.flat_params, rtol=0, atol=1e-6 * scale
    )
    with pytest.raises(ValueError, match="class_weight applies to classification"):
        sklearn_front.TabularRegressor(class_weight="balanced", max_iter=1).fit(X, values)


def test_cli_weights_equal_the_estimators(tmp_path, capsys):
    X, y = _imbalanced()
    w = np.round(np.random.default_rng(5).uniform(0.5, 2.0, len(y)), 3)
    X.assign(w=w, y=y).to_csv(tmp_path / "t.csv", index=False)
    code = main(["train", str(tmp_path / "t.csv"), "--target", "y", "--sample-weight", "w",
                 "--class-weight", "balanced", "--epochs", "3", "--seed", "4", "--quiet",
                 "--out", str(tmp_path / "m.st")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    model = matnet.load(tmp_path / "m.st")
    assert model.feature_names == ["a", "b", "c"]  # the weight column is no feature
    est = sklearn_front.TabularClassifier(class_weight="balanced", random_state=4, max_iter=3)
    est.fit(pd.read_csv(tmp_path / "t.csv")[["a", "b", "c"]], y, sample_weight=w)
    np.testing.assert_array_equal(model.flat_params, est.model_.flat_params)


def test_cli_weight_errors_name_the_line_and_the_option(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a,w,y\n1,1,p\n2,-1,q\n3,1,p\n4,1,q\n")
    code = main(["train", str(tmp_path / "t.csv"), "--target", "y", "--sample-weight", "w",
                 "--out", str(tmp_path / "m.st")])  # fmt: skip
    err = capsys.readouterr().err
    assert (
        code == 2 and "t.csv, line 3, column 'w': '-1" in err and "not a non-negative number" in err
    )
    code = main(["train", str(tmp_path / "t.csv"), "--target", "y", "--sample-weight", "v",
                 "--out", str(tmp_path / "m.st")])  # fmt: skip
    assert code == 2 and "--sample-weight v" in capsys.readouterr().err
    (tmp_path / "r.csv").write_text("a,y\n" + "".join(f"{i % 7},{i * 1.5}\n" for i in range(30)))
    code = main(["train", str(tmp_path / "r.csv"), "--target", "y", "--class-weight", "balanced",
                 "--out", str(tmp_path / "m.st")])  # fmt: skip
    assert code == 2 and "--class-weight weighs classes" in capsys.readouterr().err
