"""scikit-learn's rules as pieces of matnet's loop (matnet.sklearn.rules), and the estimators'
prediction through the model's own inference forward pass."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.sparse as sp  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import matnet.sklearn.estimators as estimators  # noqa: E402
from matnet.losses import MeanSquaredError, SoftmaxCrossEntropy  # noqa: E402
from matnet.mlp import MLP
from matnet.model import Sequential  # noqa: E402
from matnet.optim import SGD  # noqa: E402
from matnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from matnet.sklearn.rules import SklearnLoss, SklearnRate  # noqa: E402


def _blobs(n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, np.argmax(X[:, :3], axis=1)


@pytest.fixture
def logits_calls(monkeypatch):
    """The rows each call of Sequential.logits_from_matrix received: the forward pass behind
    logits (predictions) and behind the validation score during training."""
    calls = []
    original = Sequential.logits_from_matrix

    def spy(self, X):
        calls.append(np.asarray(X).shape[0])
        return original(self, X)

    monkeypatch.setattr(Sequential, "logits_from_matrix", spy)
    return calls


def test_every_prediction_and_validation_score_runs_the_models_forward(logits_calls):
    X, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((5,), max_iter=4, early_stopping=True, random_state=0).fit(X, y)
    assert logits_calls == [9] * 4  # the validation score of each epoch (10% of 90 rows)
    logits_calls.clear()
    proba = clf.predict_proba(X)
    clf.predict(X)
    clf.score(X, y)
    assert logits_calls == [90, 90, 90]
    np.testing.assert_allclose(proba, clf._model.predict_proba(X))


def test_sparse_input_predicts_block_by_block_as_dense(logits_calls, monkeypatch):
    X, y = _blobs()
    reg = MLPRegressor(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, X[:, 0] - y)
    dense = reg.predict(X)
    logits_calls.clear()
    monkeypatch.setattr(estimators, "_SPARSE_BLOCK", 40)
    sparse = reg.predict(sp.csr_matrix(X))
    assert logits_calls == [40, 40, 10]
    np.testing.assert_allclose(sparse, dense, rtol=1e-12, atol=1e-12)


def test_poisson_regressor_predicts_the_exp_of_the_models_logits():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = rng.poisson(np.exp(0.5 * X[:, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(4,), loss="poisson", max_iter=5, random_state=0)
        reg.fit(X, y)
    np.testing.assert_array_equal(reg.predict(X), np.exp(reg._model.logits(X))[:, 0])


def _loss(alpha=0.5, base=None):
    model = MLP([3, 4, 2], dtype="float64", seed=0)
    opt = SGD(0.1)
    opt.setup(model.flat_params, model.n_decay)
    return SklearnLoss(base or SoftmaxCrossEntropy(), model, alpha, opt), model, opt


def test_loss_wrapper_divides_by_the_sum_of_weights_and_sets_the_step_penalty():
    loss, model, opt = _loss()
    rng = np.random.default_rng(1)
    Z, Y = rng.normal(size=(6, 2)), rng.integers(0, 2, 6)
    w = rng.uniform(0.5, 2.0, 6)
    value, dZ = loss(Z, Y, w)
    plain, plain_dZ = SoftmaxCrossEntropy()(Z, Y, w)  # divides by n = 6
    W = model.flat_params[: model.n_decay]
    assert value == pytest.approx(plain * 6 / w.sum() + 0.25 * np.dot(W, W) / w.sum(), rel=1e-12)
    np.testing.assert_allclose(dZ, plain_dZ * 6 / w.sum(), rtol=1e-12)
    assert opt.l2 == loss.l2 == pytest.approx(0.5 / w.sum())


def test_loss_wrapper_is_sklearns_half_squared_error_whose_gradient_sums_over_outputs():
    loss, _, _ = _loss(alpha=0.0, base=MeanSquaredError())
    Z, Y = np.array([[1.0, 2.0], [0.0, -1.0]]), np.array([[0.0, 0.0], [1.0, 1.0]])
    value, dZ = loss(Z, Y)
    assert value == pytest.approx(np.mean((Z - Y) ** 2) / 2, rel=1e-12)
    np.testing.assert_allclose(dZ, (Z - Y) / 2, rtol=1e-12)  # / n only, not / (n k)


def test_validation_loss_leaves_the_optimizers_penalty_alone():
    loss, _, opt = _loss()
    Z, Y = np.zeros((3, 2)), np.array([0, 1, 1])
    loss(Z, Y)
    before = opt.l2
    loss.evaluate(Z[:2], Y[:2], np.array([5.0, 5.0]))
    assert opt.l2 == before == pytest.approx(0.5 / 3)


def test_a_batch_whose_weights_are_all_zero_contributes_nothing():
    loss, _, opt = _loss()
    Z, Y = np.ones((3, 2)), np.array([0, 1, 1])
    value, dZ = loss(Z, Y, np.zeros(3))
    assert value == 0.0 and opt.l2 == 0.0
    assert not np.any(dZ)


def test_invscaling_rate_comes_from_the_samples_seen():
    rate = SklearnRate("invscaling", 0.2, 0.5)
    assert rate.learning_rate(0, 0.2) == 0.2  # before any epoch: the optimizer's own rate
    assert rate.samples_seen(99, 0.2) == pytest.approx(0.2 / 10)
    assert rate.learning_rate(1, 0.2) == pytest.approx(0.02)


def test_constant_rate_keeps_the_optimizers_and_adaptive_divides_by_five_down_to_a_floor():
    rate = SklearnRate("adaptive", 0.1, 0.5)
    assert rate.samples_seen(1000, 0.1) == 0.1
    assert rate.learning_rate(3, 0.1) == 0.1
    assert rate.divide(0.1) == pytest.approx(0.02)
    assert rate.learning_rate(4, 0.1) == pytest.approx(0.02)
    assert rate.divide(1e-6) is None  # at scikit-learn's floor a plateau stops training


def test_adaptive_rate_carries_over_between_partial_fit_calls_as_sklearns():
    from sklearn.neural_network import MLPRegressor as SkRegressor

    X, y = _blobs()
    params = {
        "hidden_layer_sizes": (4,),
        "solver": "sgd",
        "learning_rate": "adaptive",
        "tol": 10.0,  # no epoch improves by this much: every other epoch ends a plateau
        "n_iter_no_change": 1,
        "random_state": 0,
    }
    rates = {}
    for name, cls in (("matnet", MLPRegressor), ("sklearn", SkRegressor)):
        reg, rates[name] = cls(**params), []
        for _ in range(5):
            reg.partial_fit(X, X[:, 0] - y)
            rates[name].append(reg._optimizer.learning_rate)
    assert rates["matnet"] == pytest.approx([1e-3, 1e-3, 2e-4, 2e-4, 4e-5], rel=1e-12)
    assert rates["matnet"] == pytest.approx(rates["sklearn"], rel=1e-12)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_warnings_name_the_callers_line_however_deep_the_loop(solver):
    X, y = _blobs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier((3,), solver=solver, max_iter=2, batch_size=500, random_state=0).fit(X, y)
    assert {w.category.__name__ for w in caught} >= {"ConvergenceWarning"}
    assert all(w.filename == __file__ for w in caught), [(w.filename, w.lineno) for w in caught]


def test_stochastic_solvers_train_through_matnets_one_loop(monkeypatch):
    import matnet.training

    calls = []

    def spy(model, X, y, **options):
        calls.append(options)
        return matnet.training.fit(model, X, y, **options)

    monkeypatch.setattr(estimators, "fit", spy)
    X, y = _blobs()
    clf = MLPClassifier((4,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    clf.partial_fit(X, y)
    assert [c["epochs"] for c in calls] == [3, 3]  # partial_fit: its callback stops after one
    assert all(c["optimizer"] is clf._optimizer for c in calls)  # moments kept across calls
    assert isinstance(calls[0]["loss"], SklearnLoss)
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 4
    assert type(clf._model.loss) is SoftmaxCrossEntropy  # the plain loss is back on the model


def test_a_stop_inside_an_epoch_counts_only_the_rows_trained_on():
    import matnet

    class StopAtStep2(matnet.Callback):
        def on_batch_end(self, step, logs):
            self.losses = [*getattr(self, "losses", []), logs["loss"]]
            return step == 2

    X, y = _blobs()
    stopper = StopAtStep2()
    clf = MLPClassifier((4,), batch_size=10, max_iter=5, random_state=0, callbacks=stopper)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error", ConvergenceWarning
        )  # a requested stop is no convergence issue
        clf.fit(X, y)
    assert clf.n_iter_ == 1 and clf.t_ == 20
    assert clf.loss_curve_ == [pytest.approx(np.mean(stopper.losses), rel=1e-12)]


def test_a_rate_set_by_a_user_callback_holds_for_the_next_epochs():
    import matnet

    class Halve(matnet.Callback):
        def on_epoch_end(self, epoch, logs):
            self.trainer.optimizer.learning_rate /= 2

    X, y = _blobs()
    seen = []
    clf = MLPClassifier(
        (4,),
        solver="sgd",
        learning_rate_init=0.1,
        max_iter=3,
        random_state=0,
        callbacks=[Halve(), lambda epoch, logs: seen.append(logs["learning_rate"])],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert seen == pytest.approx([0.1, 0.05, 0.025])
    assert clf._optimizer.learning_rate == pytest.approx(0.0125)


def _diverging(**params):
    X = np.random.default_rng(0).normal(size=(50, 3))
    reg = MLPRegressor(
        hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=10.0, random_state=0, **params
    )
    return reg, X, X[:, 0] * 1e3


def test_divergence_is_refused_in_sklearns_words_with_the_estimators_fixes():
    from matnet.errors import TrainingDivergedError

    reg, X, y = _diverging(max_iter=20)
    with pytest.raises(TrainingDivergedError, match="non-finite parameter weights") as info:
        reg.fit(X, y)
    assert isinstance(info.value, ValueError)  # what scikit-learn raises there
    assert "learning_rate_init" in str(info.value) and "clip_norm" not in str(info.value)
    assert all(np.isfinite(c).all() for c in reg.coefs_)  # the last finite epoch's weights
    assert len(reg.loss_curve_) == reg.n_iter_ and np.isfinite(reg.loss_curve_).all()


def test_divergence_with_early_stopping_keeps_the_best_validation_weights():
    reg, X, y = _diverging(max_iter=20, early_stopping=True)
    with pytest.warns(ConvergenceWarning, match="best validation epoch were kept"):
        reg.fit(X, y)
    np.testing.assert_array_equal(reg._model.flat_params, reg._best_params)
    assert reg.best_validation_score_ == np.nanmax(reg.validation_scores_)
    assert np.isfinite(reg.predict(X)).all()
