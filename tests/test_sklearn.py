"""matnet.sklearn: targets, scikit-learn tooling, model files, bad input, and matnet's extras."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from tolerance import assert_close

pytest.importorskip("sklearn")

import scipy.sparse as sp  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import matnet  # noqa: E402
from matnet.sklearn import MLPClassifier, MLPRegressor, load  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def blobs(n=120, k=3, d=4, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    y = rng.integers(0, k, n)
    X = centers[y] + rng.normal(size=(n, d))
    if labels is not None:
        y = np.asarray(labels)[y]
    return X, y


def regression(n=120, d=4, k=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    Y = np.tanh(X @ rng.normal(size=(d, k))) + 0.05 * rng.normal(size=(n, k))
    return X, (Y[:, 0] if k == 1 else Y)


# --- packaging ---------------------------------------------------------------------------------


def test_import_matnet_does_not_import_sklearn():
    code = (
        "import sys, matnet; assert 'sklearn' not in sys.modules, 'sklearn imported'; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_missing_sklearn_names_the_extra():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'sklearn' or name.startswith('sklearn.'):\n"
        "            raise ImportError('No module named ' + repr(name))\n"
        "sys.meta_path.insert(0, Block())\n"
        "try:\n"
        "    import matnet.sklearn\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pip install 'matnet[sklearn]'" in done.stdout


# --- targets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [None, ["cat", "dog", "emu"], [-5, 10, 7]])
def test_multiclass_string_and_integer_labels(labels):
    X, y = blobs(labels=labels)
    clf = MLPClassifier((16,), random_state=0, max_iter=300).fit(X, y)
    assert clf.out_activation_ == "softmax"
    assert clf.n_outputs_ == 3
    np.testing.assert_array_equal(clf.classes_, np.unique(y))
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    pred = clf.predict(X)
    np.testing.assert_array_equal(pred, clf.classes_[np.argmax(proba, axis=1)])
    assert pred.dtype == clf.classes_.dtype
    assert clf.score(X, y) > 0.95
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))


def test_binary_has_one_logistic_output():
    X, y = blobs(k=2, labels=["no", "yes"])
    clf = MLPClassifier((8,), random_state=0).fit(X, y)
    assert clf.out_activation_ == "logistic"
    assert clf.n_outputs_ == 1
    assert clf.coefs_[-1].shape == (8, 1)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), np.where(proba[:, 1] > 0.5, "yes", "no"))


def test_multilabel_indicator_targets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < -0.5], axis=1).astype(int)
    clf = MLPClassifier((32,), random_state=0, max_iter=500).fit(X, Y)
    assert clf.out_activation_ == "logistic"
    assert clf.n_outputs_ == 3
    pred = clf.predict(X)
    assert pred.shape == Y.shape
    assert set(np.unique(pred)) <= {0, 1}
    proba = clf.predict_proba(X)
    assert proba.shape == Y.shape
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    assert clf.score(X, Y) > 0.85  # subset accuracy


@pytest.mark.parametrize("k", [1, 3])
def test_regression_single_and_multi_output(k):
    X, y = regression(k=k)
    reg = MLPRegressor(hidden_layer_sizes=(32,), random_state=0, max_iter=500).fit(X, y)
    assert reg.out_activation_ == "identity"
    assert reg.n_outputs_ == k
    pred = reg.predict(X)
    assert pred.shape == y.shape
    assert reg.score(X, y) > 0.8


def test_poisson_regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = rng.poisson(np.exp(0.5 * X[:, 0] + 0.2))
    reg = MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), random_state=0).fit(X, y)
    assert reg.out_activation_ == "exp"
    assert np.all(reg.predict(X) > 0)
    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson").fit(X, y - 3.0)


def test_fitted_attributes_like_sklearn():
    X, y = blobs()
    clf = MLPClassifier((10, 6), random_state=0, max_iter=50).fit(X, y)
    assert [c.shape for c in clf.coefs_] == [(4, 10), (10, 6), (6, 3)]
    assert [b.shape for b in clf.intercepts_] == [(10,), (6,), (3,)]
    assert clf.n_layers_ == 4
    assert clf.n_features_in_ == 4
    assert clf.n_iter_ == len(clf.loss_curve_) <= 50
    assert clf.t_ == clf.n_iter_ * len(y)
    assert clf.loss_ == clf.loss_curve_[-1]
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.validation_loss_curve_ is None
    assert clf.loss == "log_loss"


def test_early_stopping_restores_best_and_records_validation_loss():
    X, y = blobs(n=300, seed=1)
    clf = MLPClassifier((16,), early_stopping=True, random_state=0, max_iter=300).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == len(clf.validation_loss_curve_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert all(np.isfinite(clf.validation_loss_curve_))
    # The restored weights are those of the best validation score: later epochs did not improve.
    best = int(np.argmax(clf.validation_scores_))
    assert clf.n_iter_ - 1 - best >= clf.n_iter_no_change or clf.n_iter_ == 300


def test_partial_fit_classes_and_unknown_labels():
    X, y = blobs(labels=["a", "b", "c"])
    clf = MLPClassifier((8,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:40], y[:40], classes=["a", "b", "c", "d"])
    assert list(clf.classes_) == ["a", "b", "c", "d"] and clf.n_outputs_ == 4
    for _ in range(3):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 1 and clf.t_ == 40 + 3 * len(y)
    assert len(clf.loss_curve_) == 4
    with pytest.raises(ValueError, match="classes not in `self.classes_`"):
        clf.partial_fit(X[:5], np.array(["a", "b", "zebra", "a", "a"]))
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(X, y, classes=["a", "b"])
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):
        MLPClassifier(solver="lbfgs").partial_fit(X, y, classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(*regression())


def test_partial_fit_equals_one_epoch_of_fit():
    X, y = regression()
    a = MLPRegressor(hidden_layer_sizes=(8,), random_state=0, shuffle=False, max_iter=1)
    b = clone(a)
    a.fit(X, y)
    b.partial_fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_warm_start_continues():
    X, y = blobs()
    clf = MLPClassifier((8,), random_state=0, warm_start=True, max_iter=5).fit(X, y)
    first = clf.coefs_[0].copy()
    clf.fit(X, y)
    assert len(clf.loss_curve_) == 10
    assert not np.array_equal(first, clf.coefs_[0])
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 2], y[y < 2])


def test_coefs_are_views_and_replacements_are_honoured():
    X, y = regression()
    reg = MLPRegressor(hidden_layer_sizes=(4,), random_state=0, max_iter=20).fit(X, y)
    before = reg.predict(X)
    reg.intercepts_[-1] += 1.0  # in place: a view into the model's flat vector
    np.testing.assert_allclose(reg.predict(X), before + 1.0)
    reg.coefs_[-1] = np.zeros((4, 1))  # a new array: copied into the model at predict time
    np.testing.assert_allclose(reg.predict(X), reg.intercepts_[-1][0])
    reg.coefs_[0] = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"coefs_\[0\] has shape"):
        reg.predict(X)


def test_lbfgs_solver_and_max_fun():
    X, y = blobs()
    clf = MLPClassifier((8,), solver="lbfgs", random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.95
    assert not hasattr(clf, "loss_curve_")
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        short = MLPClassifier((8,), solver="lbfgs", max_iter=200, max_fun=3, random_state=0)
        short.fit(X, y)
    assert short.n_iter_ <= 3


def test_sgd_learning_rate_schedules_run():
    X, y = blobs()
    for schedule in ("constant", "invscaling", "adaptive"):
        clf = MLPClassifier(
            (8,), solver="sgd", learning_rate=schedule, learning_rate_init=0.05, random_state=0
        ).fit(X, y)
        # invscaling's rate decays with the samples seen (t_), as scikit-learn's, so it learns slowly.
        assert clf.score(X, y) > (0.5 if schedule == "invscaling" else 0.9), schedule
        lr = clf._optimizer.learning_rate
        if schedule == "invscaling":
            assert lr == pytest.approx(0.05 / (clf.t_ + 1) ** clf.power_t)
        else:
            assert lr <= 0.05


def test_sparse_input_matches_dense():
    X, y = blobs()
    X[np.abs(X) < 1] = 0
    dense = MLPClassifier((8,), random_state=0, max_iter=30).fit(X, y)
    for container in (sp.csr_matrix, sp.csc_array):
        sparse = MLPClassifier((8,), random_state=0, max_iter=30).fit(container(X), y)
        np.testing.assert_allclose(sparse.predict_proba(container(X)), dense.predict_proba(X))


# --- scikit-learn tooling ----------------------------------------------------------------------


def test_pipeline_gridsearch_cross_val_score():
    X, y = blobs(n=150)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((8,), random_state=0, max_iter=300))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.9
    grid = GridSearchCV(
        pipe,
        {"mlpclassifier__alpha": [1e-4, 1e-1], "mlpclassifier__activation": ["relu", "gelu"]},
        cv=3,
    ).fit(X, y)
    assert grid.best_score_ > 0.9
    assert set(grid.best_params_) == {"mlpclassifier__alpha", "mlpclassifier__activation"}
    X_r, y_r = regression()
    assert (
        cross_val_score(
            MLPRegressor(hidden_layer_sizes=(16,), random_state=0), X_r, y_r, cv=3
        ).mean()
        > 0.5
    )


def test_clone_and_pickle_round_trip():
    X, y = blobs(labels=["a", "b", "c"])
    clf = MLPClassifier((8,), random_state=0, max_iter=20, dropout=0.1).fit(X, y)
    fresh = clone(clf)
    assert fresh.get_params() == clf.get_params()
    assert not hasattr(fresh, "coefs_")
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    # The optimizer's moments survive: continuing both gives the same weights.
    clf.partial_fit(X, y)
    restored.partial_fit(X, y)
    for a, b in zip(clf.coefs_, restored.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)
    # And coefs_ are views into the restored model again.
    restored.coefs_[0][...] = 0
    assert np.all(restored._model.flat_params[: restored.coefs_[0].size] == 0)


# --- model files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: (MLPClassifier((8,), random_state=0, max_iter=30), *blobs(labels=["x", "y", "z"])),
        lambda: (
            MLPClassifier((8,), random_state=0, max_iter=30, class_weight={3: 2.0, 9: 0.5}),
            *blobs(k=2, labels=[3, 9]),
        ),
        lambda: (
            MLPClassifier((8,), random_state=0, max_iter=30, dtype="float32"),
            *blobs(labels=[1.0, 2.0, 3.0]),
        ),
        lambda: (
            MLPClassifier((8,), random_state=0, max_iter=30),
            blobs()[0],
            (blobs()[0][:, :2] > 0).astype(int),
        ),
        lambda: (
            MLPRegressor(hidden_layer_sizes=(8,), random_state=0, max_iter=30),
            *regression(k=2),
        ),
        lambda: (
            MLPRegressor(
                hidden_layer_sizes=(8, 4),
                activation=["gelu", "tanh"],
                early_stopping=True,
                random_state=0,
            ),
            *regression(),
        ),
    ],
    ids=["strings", "binary", "float32", "multilabel", "multioutput", "early-stopping"],
)
def test_save_load_predicts_bit_identically(tmp_path, make):
    est, X, y = make()
    est.fit(X, y)
    path = tmp_path / "model.safetensors"
    est.save(path)
    back = type(est).load(path)
    assert type(back) is type(est)
    assert back.get_params() == {**est.get_params(), "callbacks": None}
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    if hasattr(est, "predict_proba"):
        np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
        np.testing.assert_array_equal(back.classes_, est.classes_)
        assert back.classes_.dtype == est.classes_.dtype
    for name in ("n_features_in_", "n_outputs_", "n_layers_", "out_activation_", "n_iter_", "t_"):
        assert getattr(back, name) == getattr(est, name)
    assert back.loss_curve_ == est.loss_curve_
    assert back.coefs_[0].dtype == est.coefs_[0].dtype
    # The same file is a plain matnet network too.
    net = matnet.load(path)
    np.testing.assert_array_equal(net.flat_params, est._model.flat_params)


def test_save_load_keeps_feature_names(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = blobs()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = MLPClassifier((4,), random_state=0, max_iter=10).fit(frame, y)
    clf.save(tmp_path / "m.safetensors")
    back = load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(back.feature_names_in_, ["a", "b", "c", "d"])
    np.testing.assert_array_equal(back.predict(frame), clf.predict(frame))
    with pytest.raises(ValueError, match="feature names"):
        back.predict(frame.rename(columns={"a": "z"}))


def test_load_rejects_wrong_class_and_bare_networks(tmp_path):
    X, y = regression()
    reg = MLPRegressor(hidden_layer_sizes=(4,), random_state=0, max_iter=5).fit(X, y)
    reg.save(tmp_path / "reg.safetensors")
    with pytest.raises(matnet.ModelFileError, match="not a MLPClassifier"):
        MLPClassifier.load(tmp_path / "reg.safetensors")
    net = matnet.MLP([4, 3, 1], loss="mse")
    matnet.save(net, tmp_path / "net.safetensors")
    with pytest.raises(matnet.ModelFileError, match="bare matnet network"):
        load(tmp_path / "net.safetensors")
    with pytest.raises(NotFittedError):
        MLPRegressor().save(tmp_path / "unfitted.safetensors")


# --- bad input ---------------------------------------------------------------------------------


def test_bad_input_gives_sklearns_errors():
    X, y = blobs()
    clf = MLPClassifier((4,), random_state=0, max_iter=5)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        clf.predict(X)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(bad, y)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        clf.fit(bad, y)
    clf.fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, np.linspace(0, 1, len(y)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        clf.fit(X, y[:-1])
    with pytest.raises(ValueError, match="sample_weight"):
        clf.fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="at least one non-zero"):
        clf.fit(X, y, sample_weight=np.zeros(len(y)))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"activation": "swish"}, "activation"),
        ({"activation": ["relu"], "hidden_layer_sizes": (4, 4)}, "1 entries for 2 hidden layers"),
        ({"solver": "rmsprop"}, "solver"),
        ({"hidden_layer_sizes": (4, 0)}, "must be > 0"),
        ({"learning_rate_init": 0.0}, "learning_rate_init"),
        ({"batch_size": 0}, "batch_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": 0.2, "solver": "lbfgs"}, "stochastic solver"),
        ({"optimizer": "adamw", "solver": "sgd"}, "needs solver='adam'"),
        ({"optimizer": "lion"}, "optimizer"),
        ({"dtype": "int32"}, "dtype"),
        ({"class_weight": "heavy"}, "class_weight"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"callbacks": [3]}, "neither a matnet.Callback nor callable"),
    ],
)
def test_bad_parameters_are_rejected_before_training(params, match):
    X, y = blobs()
    clf = MLPClassifier(**params)
    with pytest.raises((ValueError, TypeError), match=match):
        clf.fit(X, y)
    assert not hasattr(clf, "coefs_")


# --- matnet's extras ---------------------------------------------------------------------------


def test_dropout_trains_and_is_off_at_prediction():
    X, y = blobs(n=200)
    clf = MLPClassifier((32, 16), dropout=[0.3, 0.1], random_state=0, max_iter=200).fit(X, y)
    kinds = [type(layer).__name__ for layer in clf._model.layers]
    assert kinds.count("Dropout") == 2
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))
    assert clf.score(X, y) > 0.95
    plain = MLPClassifier((32, 16), random_state=0, max_iter=200).fit(X, y)
    assert plain.loss_curve_[5] != clf.loss_curve_[5]


def test_more_activations_and_per_layer_list():
    X, y = regression()
    for activation in ("leaky_relu", "gelu", ["tanh", "gelu"]):
        reg = MLPRegressor(
            hidden_layer_sizes=(16, 8), activation=activation, random_state=0, max_iter=300
        )
        reg.fit(X, y)
        assert reg.score(X, y) > 0.8, activation
    names = [layer.fn.name for layer in reg._model.layers if hasattr(layer, "fn")]
    assert names == ["tanh", "gelu"]


def test_adamw_decays_weights():
    X, y = blobs()
    adam = MLPClassifier((32,), alpha=0.0, random_state=0, max_iter=100).fit(X, y)
    adamw = MLPClassifier(
        (32,), alpha=0.0, optimizer="adamw", weight_decay=5.0, random_state=0, max_iter=100
    ).fit(X, y)
    assert np.linalg.norm(adamw.coefs_[0]) < 0.9 * np.linalg.norm(adam.coefs_[0])
    assert adamw.score(X, y) > 0.9


def test_class_weight_equals_sample_weight_and_balanced_helps_minority():
    X, y = blobs(n=200, k=2, seed=3)
    weights = {0: 1.0, 1: 3.0}
    a = MLPClassifier((8,), class_weight=weights, random_state=0, max_iter=30).fit(X, y)
    b = MLPClassifier((8,), random_state=0, max_iter=30).fit(
        X, y, sample_weight=np.where(y == 1, 3.0, 1.0)
    )
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    # A rare, overlapping class: 'balanced' raises its recall.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 2))
    y = (X[:, 0] + 0.8 * rng.normal(size=600) > 1.6).astype(int)
    plain = MLPClassifier((8,), random_state=0, max_iter=100).fit(X, y)
    balanced = MLPClassifier((8,), class_weight="balanced", random_state=0, max_iter=100)
    balanced.fit(X, y)
    recall = lambda m: np.mean(m.predict(X)[y == 1] == 1)  # noqa: E731
    assert recall(balanced) > recall(plain) + 0.1
    with pytest.raises(ValueError, match="not supported for partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])


def test_dtype_follows_input_or_the_parameter():
    X, y = blobs()
    assert MLPClassifier((4,), max_iter=3).fit(X, y).coefs_[0].dtype == np.float64
    clf32 = MLPClassifier((4,), max_iter=3).fit(X.astype(np.float32), y)
    assert clf32.coefs_[0].dtype == np.float32
    assert clf32.predict_proba(X).dtype == np.float32
    forced = MLPClassifier((4,), max_iter=3, dtype="float32").fit(X, y)
    assert forced.coefs_[0].dtype == np.float32
    forced64 = MLPClassifier((4,), max_iter=3, dtype="float64").fit(X.astype(np.float32), y)
    assert forced64.coefs_[0].dtype == np.float64
    # float32 and float64 from one seed start from the same weights and end close.
    a = MLPClassifier((8,), random_state=0, max_iter=50, dtype="float32").fit(X, y)
    b = MLPClassifier((8,), random_state=0, max_iter=50, dtype="float64").fit(X, y)
    assert_close(a.predict_proba(X), b.predict_proba(X), rtol=1e-3)


def test_same_seed_same_weights():
    X, y = blobs()
    for dtype in ("float32", "float64"):
        a = MLPClassifier((8,), random_state=7, max_iter=20, dropout=0.2, dtype=dtype).fit(X, y)
        b = MLPClassifier((8,), random_state=7, max_iter=20, dropout=0.2, dtype=dtype).fit(X, y)
        for p, q in zip(a.coefs_, b.coefs_, strict=True):
            np.testing.assert_array_equal(p, q)


def test_callbacks_see_logs_and_can_stop():
    X, y = blobs(n=200)
    seen = []

    class Recorder(matnet.Callback):
        def __init__(self):
            self.batches = 0

        def on_batch_end(self, step, logs):
            self.batches += 1

        def on_epoch_end(self, epoch, logs):
            seen.append((epoch, dict(logs)))

    recorder = Recorder()
    stop_at_3 = lambda epoch, logs: epoch >= 3  # noqa: E731
    clf = MLPClassifier(
        (8,), early_stopping=True, batch_size=50, random_state=0, callbacks=[recorder, stop_at_3]
    ).fit(X, y)
    assert clf.n_iter_ == 3
    assert [e for e, _ in seen] == [1, 2, 3]
    assert set(seen[0][1]) >= {"loss", "validation_score", "validation_loss", "learning_rate"}
    assert seen[-1][1]["validation_loss"] == clf.validation_loss_curve_[-1]
    assert recorder.batches == 3 * 4  # 180 training rows in batches of 50
    lbfgs = MLPClassifier((8,), solver="lbfgs", random_state=0, callbacks=stop_at_3).fit(X, y)
    assert lbfgs.n_iter_ == 3


def test_verbose_progress(capsys):
    X, y = blobs(n=60)
    MLPClassifier((4,), max_iter=3, verbose=2, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 3, loss = " in out
    MLPClassifier((4,), max_iter=3, verbose=1, early_stopping=True, random_state=0).fit(X, y)
    err = capsys.readouterr().err
    assert "3/3" in err and "validation_score" in err  # tqdm's bar with the epoch's numbers


def test_random_state_accepts_generators_and_never_touches_global_state():
    X, y = blobs()
    state = np.random.get_state()[1].copy()  # noqa: NPY002
    MLPClassifier((4,), max_iter=3).fit(X, y)
    MLPClassifier((4,), max_iter=3, random_state=np.random.default_rng(0)).fit(X, y)
    MLPClassifier((4,), max_iter=3, random_state=np.random.RandomState(0)).fit(X, y)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002


def test_batch_size_larger_than_data_warns_and_clips():
    X, y = blobs(n=30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier((4,), batch_size=100, max_iter=2).fit(X, y)
    assert any("batch_size" in str(w.message) for w in caught)


def test_failed_fit_leaves_a_fitted_estimator_unchanged():
    X, y = blobs(labels=["a", "b", "c"])
    clf = MLPClassifier((8,), random_state=0, max_iter=20, early_stopping=True).fit(X, y)
    before = clf.predict_proba(X)
    X2, y2 = blobs(n=50, d=6, k=2, labels=["p", "q"])
    with pytest.raises(ValueError, match="sample_weight"):
        clf.fit(X2, y2, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="test_size"):  # scikit-learn's split refuses
        clf.set_params(validation_fraction=0.01).fit(X2[:20], y2[:20])
    assert list(clf.classes_) == ["a", "b", "c"] and clf.n_features_in_ == 4
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_threads_may_predict_concurrently():
    from concurrent.futures import ThreadPoolExecutor

    X, y = blobs(n=400)
    clf = MLPClassifier((64, 32), random_state=0, max_iter=20, dropout=0.1).fit(X, y)
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(int(rng.integers(1, 300)), 4)) for _ in range(64)]
    expected = [clf.predict_proba(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(clf.predict_proba, batches))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_verbose_without_tqdm_prints_lines(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    X, y = blobs(n=60)
    MLPClassifier((4,), max_iter=2, verbose=1, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 2, loss = " in out


def test_early_stopping_on_validation_loss():
    X, y = blobs(n=300, seed=2)
    clf = MLPClassifier(
        (16,), early_stopping=True, early_stopping_on="loss", random_state=0, max_iter=400
    ).fit(X, y)
    losses = clf.validation_loss_curve_
    assert clf.best_validation_loss_ == min(losses)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # It stopped because each of the last n_iter_no_change + 1 epochs failed to beat the best loss
    # before it by tol.
    assert clf.n_iter_ < 400
    for i in range(len(losses) - clf.n_iter_no_change - 1, len(losses)):
        assert losses[i] > min(losses[:i]) - clf.tol
    score_based = MLPClassifier((16,), early_stopping=True, random_state=0, max_iter=400).fit(X, y)
    assert score_based.best_validation_loss_ == min(score_based.validation_loss_curve_)


@pytest.mark.parametrize("on", ["score", "loss"])
def test_early_stopping_restores_the_best_epochs_weights(on):
    X, y = blobs(n=300, seed=2)
    clf = MLPClassifier((16,), early_stopping=True, early_stopping_on=on, random_state=0)
    snapshots = []
    clf.set_params(callbacks=lambda epoch, logs: snapshots.append(clf.coefs_[0].copy()))
    clf.fit(X, y)
    if on == "loss":
        best = int(np.argmin(clf.validation_loss_curve_))
    else:
        best = int(np.argmax(clf.validation_scores_))
    assert len(snapshots) == clf.n_iter_
    np.testing.assert_array_equal(clf.coefs_[0], snapshots[best])


def test_warm_start_may_switch_solver_and_early_stopping():
    X, y = blobs(n=200)
    clf = MLPClassifier((8,), solver="lbfgs", warm_start=True, max_iter=20, random_state=0)
    clf.fit(X, y)
    clf.set_params(solver="adam", early_stopping=True).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    clf.set_params(early_stopping=False).fit(X, y)
    assert clf.best_loss_ == min(clf.loss_curve_[-clf.n_iter_ :])
