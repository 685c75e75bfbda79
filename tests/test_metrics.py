"""matnet.metrics against scikit-learn's numbers (to 1e-12), and the cases where a metric is undefined."""

from __future__ import annotations

import inspect
import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from matnet import metrics

TOL = 1e-12


def _sk_log_loss(y, P, labels):
    # scikit-learn 1.9 renamed the probabilities argument to y_proba (y_pred is deprecated).
    if "y_proba" in inspect.signature(skm.log_loss).parameters:
        return skm.log_loss(y, y_proba=P, labels=labels)
    return skm.log_loss(y, P, labels=labels)


def _random_problem(seed, n, k, absent=()):
    rng = np.random.default_rng(seed)
    present = [c for c in range(k) if c not in absent]
    y = rng.choice(present, size=n)
    logits = rng.standard_normal((n, k)) + 1.5 * np.eye(k)[y]
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    return y, P


def _assert_report_matches(ours, y, pred, labels, zero_division):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns about the 0/0 ratios we compare
        theirs = skm.classification_report(
            y, pred, labels=labels, output_dict=True, zero_division=zero_division
        )
    for row in ours["classes"]:
        sk = theirs[str(row["label"])]
        for name, sk_name in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            np.testing.assert_allclose(row[name], sk[sk_name], rtol=0, atol=TOL)
        assert row["support"] == sk["support"]
    for avg, sk_avg in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        for name, sk_name in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            np.testing.assert_allclose(ours[avg][name], theirs[sk_avg][sk_name], rtol=0, atol=TOL)
        assert ours[avg]["support"] == theirs[sk_avg]["support"]


@pytest.mark.parametrize("zero_division", [0.0, 1.0, np.nan])
@pytest.mark.parametrize(("k", "absent"), [(2, ()), (3, ()), (5, ()), (5, (1, 3)), (4, (0,))])
def test_classification_report_matches_scikit_learn(k, absent, zero_division):
    y, P = _random_problem(7 + k, 300, k, absent)
    pred = np.argmax(P, axis=1)
    labels = list(range(k))
    ours = metrics.classification_report(y, pred, labels, zero_division=zero_division)
    _assert_report_matches(ours, y, pred, labels, zero_division)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=TOL)
    assert metrics.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred), abs=TOL)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y, pred, labels), skm.confusion_matrix(y, pred, labels=labels)
    )
    prf = metrics.precision_recall_f1(y, pred, labels, zero_division=zero_division)
    sk = skm.precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=zero_division, average=None
    )
    for ours_values, theirs_values in zip(prf.values(), sk, strict=True):
        np.testing.assert_allclose(ours_values, theirs_values, rtol=0, atol=TOL)


def test_a_class_without_rows_has_support_zero_and_is_named():
    y = np.array(["a", "a", "c", "c", "c"])
    pred = np.array(["a", "c", "c", "c", "a"])
    ours = metrics.classification_report(y, pred, labels=["a", "b", "c"])
    _assert_report_matches(ours, y, pred, ["a", "b", "c"], 0.0)
    b = ours["classes"][1]
    assert b == {"label": "b", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert ours["undefined"] == [
        "class 'b' has no rows and is never predicted: precision, recall and F1 are 0/0, set to 0.0"
    ]
    # Without labels, the classes are those found in y_true and y_pred, sorted (scikit-learn's rule).
    assert [r["label"] for r in metrics.classification_report(y, pred)["classes"]] == ["a", "c"]


@pytest.mark.parametrize(("k", "absent"), [(2, ()), (3, ()), (6, ())])
def test_roc_auc_matches_scikit_learn(k, absent):
    y, P = _random_problem(3 * k, 400, k, absent)
    auc = metrics.roc_auc(y, P, list(range(k)))
    if k == 2:
        expected = skm.roc_auc_score(y, P[:, 1])
        assert auc["average"] == "binary"
    else:
        expected = skm.roc_auc_score(y, P, multi_class="ovr", average="macro")
        assert auc["average"] == "ovr-macro"
    assert auc["reason"] is None
    np.testing.assert_allclose(auc["value"], expected, rtol=0, atol=TOL)


def test_roc_auc_with_ties_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    score = np.round(rng.random(500) * 0.5 + 0.3 * y, 1)  # few distinct values: many ties
    P = np.column_stack([1 - score, score])
    np.testing.assert_allclose(
        metrics.roc_auc(y, P)["value"], skm.roc_auc_score(y, score), rtol=0, atol=TOL
    )
    # a 1-D score is the probability of the second class, as in scikit-learn
    assert metrics.roc_auc(y, score)["value"] == metrics.roc_auc(y, P)["value"]


def test_roc_auc_over_the_classes_present_when_one_is_absent():
    """scikit-learn's one-vs-rest macro AUC is nan (with a warning) when a class is absent; matnet
    averages the classes that have rows and names the absent ones."""
    y, P = _random_problem(1, 300, 5, absent=(2,))
    names = ["a", "b", "c", "d", "e"]
    auc = metrics.roc_auc(np.asarray(names)[y], P, names)
    expected = np.mean([skm.roc_auc_score(y == c, P[:, c]) for c in (0, 1, 3, 4)])
    np.testing.assert_allclose(auc["value"], expected, rtol=0, atol=TOL)
    assert auc["classes"] == ["a", "b", "d", "e"]
    assert "('c')" in auc["reason"] and "over the other 4" in auc["reason"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(skm.roc_auc_score(y, P, multi_class="ovr", labels=[0, 1, 2, 3, 4]))


@pytest.mark.parametrize("k", [2, 3])
def test_roc_auc_with_a_single_class_present_is_undefined_not_a_crash(k):
    y, P = _random_problem(0, 20, k, absent=tuple(range(1, k)))
    auc = metrics.roc_auc(y, P, list(range(k)))
    assert auc["value"] is None
    assert auc["reason"] == (
        "ROC-AUC is undefined: every row is of class 0, and the curve needs rows of two classes"
    )
    scores = metrics.classification_scores(y, P, list(range(k)))
    assert scores["roc_auc"]["value"] is None and scores["accuracy"] >= 0
    json.dumps(scores)  # everything, the undefined AUC included, is JSON


@pytest.mark.parametrize(("k", "absent"), [(2, ()), (4, ()), (4, (1,)), (3, (1, 2))])
def test_log_loss_matches_scikit_learn(k, absent):
    y, P = _random_problem(11 + k, 250, k, absent)
    labels = list(range(k))
    np.testing.assert_allclose(
        metrics.log_loss(y, P, labels), _sk_log_loss(y, P, labels), rtol=0, atol=TOL
    )


def test_log_loss_clips_exact_zero_and_one_as_scikit_learn_does():
    y = np.array([0, 1, 1, 0])
    P = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])  # row 1: certain and wrong
    ours = metrics.log_loss(y, P)
    np.testing.assert_allclose(ours, _sk_log_loss(y, P, [0, 1]), rtol=0, atol=TOL)
    eps = np.finfo(np.float64).eps
    assert metrics.LOG_LOSS_EPS == eps
    expected = (-np.log(1 - eps) * 2 - np.log(eps) - np.log(0.5)) / 4
    assert ours == pytest.approx(expected, rel=1e-15)
    assert np.isfinite(ours) and -np.log(eps) == pytest.approx(36.04365, abs=1e-5)
    # a 1-D array is the probability of the second class
    assert metrics.log_loss(y, P[:, 1]) == ours


def test_classification_scores_agree_with_the_single_functions():
    y, P = _random_problem(5, 200, 4, absent=(3,))
    labels = ["w", "x", "y", "z"]
    named = np.asarray(labels)[y]
    scores = metrics.classification_scores(named, P, labels)
    pred = np.argmax(P, axis=1)
    assert scores["accuracy"] == metrics.accuracy(y, pred)
    assert scores["log_loss"] == metrics.log_loss(y, P, [0, 1, 2, 3])
    assert scores["roc_auc"]["classes"] == ["w", "x", "y"]
    assert scores["labels"] == labels
    assert scores["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=[0, 1, 2, 3]).tolist()
    _assert_report_matches(scores, named, np.asarray(labels)[pred], labels, 0.0)
    assert [c["label"] for c in scores["classes"]] == labels
    assert scores["classes"][3]["support"] == 0
    json.dumps(scores)


@pytest.mark.parametrize("shape", [(200,), (200, 3)])
def test_regression_metrics_match_scikit_learn(shape):
    rng = np.random.default_rng(2)
    y = rng.standard_normal(shape) * 30 + 100
    pred = y + rng.standard_normal(shape) * 7
    pairs = [
        (metrics.mean_absolute_error, skm.mean_absolute_error),
        (metrics.mean_squared_error, skm.mean_squared_error),
        (metrics.root_mean_squared_error, skm.root_mean_squared_error),
        (metrics.r2_score, skm.r2_score),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours(y, pred), theirs(y, pred), rtol=TOL, atol=TOL)
    scores = metrics.regression_scores(y, pred)
    assert scores["rmse"] == metrics.root_mean_squared_error(y, pred)
    assert scores["undefined"] == []


@pytest.mark.parametrize("perfect", [True, False])
def test_r2_of_a_constant_target_is_as_in_scikit_learn_and_noted(perfect):
    y = np.full(10, 3.0)
    pred = y.copy() if perfect else y + np.linspace(-1, 1, 10)
    assert metrics.r2_score(y, pred) == skm.r2_score(y, pred) == (1.0 if perfect else 0.0)
    assert "constant target" in metrics.regression_scores(y, pred)["undefined"][0]


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: metrics.accuracy([0, 1], [0]), "y_pred has 1 rows but y_true has 2"),
        (lambda: metrics.accuracy([], []), "0 rows"),
        (lambda: metrics.accuracy([[0, 1]], [[0, 1]]), "1-D array"),
        (lambda: metrics.confusion_matrix([0, 3], [0, 1], [0, 1]), "the label 3"),
        (lambda: metrics.confusion_matrix([0, 1], [0, 1], [0, 0]), "repeat a class"),
        (lambda: metrics.log_loss([0, 1], [[0.5, 0.5, 0.0]] * 2), "3 columns for 2 classes"),
        (lambda: metrics.log_loss([0, 1], [[2.0, -1.0]] * 2), "not logits"),
        (lambda: metrics.log_loss([0, 1], [[np.nan, 1.0]] * 2), "NaN"),
        (lambda: metrics.roc_auc([0, 1], [[0.5, 0.5]]), "expected (2, 2)"),
        (lambda: metrics.r2_score([1.0, 2.0], [1.0]), "one prediction per target"),
        (lambda: metrics.mean_absolute_error([1.0, np.inf], [1.0, 2.0]), "NaN or infinity"),
        (lambda: metrics.classification_report([0], [0], zero_division=0.5), "zero_division"),
    ],
)
def test_bad_input_names_the_value(call, needle):
    with pytest.raises(ValueError) as info:
        call()
    assert needle in str(info.value)


def test_calibration_bins_and_expected_calibration_error():
    """Top probabilities binned into tenths; ECE = Σ (n_b / n) |acc_b − conf_b|, by hand."""
    from matnet.metrics import calibration

    # Rows 0-3 have top probability 0.95 (bin 9) and rows 4-5 0.55 (bin 5); 3 of the first four
    # and 1 of the last two are right.
    P = np.array([[0.95, 0.05]] * 4 + [[0.55, 0.45]] * 2)
    y = np.array([0, 0, 0, 1, 0, 1])
    result = calibration(y, P)
    assert [(b["low"], b["count"]) for b in result["bins"]] == [(0.5, 2), (0.9, 4)]
    assert result["bins"][1]["accuracy"] == 0.75 and result["bins"][1]["confidence"] == 0.95
    expected = 4 / 6 * abs(0.75 - 0.95) + 2 / 6 * abs(0.5 - 0.55)
    assert result["ece"] == pytest.approx(expected, rel=1e-12)
    # Probabilities that mean what they say: every row of confidence 0.8, 80% of them right.
    P = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert calibration(y, P)["ece"] == pytest.approx(0.0, abs=1e-12)
    # A bin's edge: 0.9 belongs to (0.8, 0.9], 1.0 to the last bin, 0 to the first.
    edges = calibration([0, 0, 0], np.array([[0.9, 0.1], [1.0, 0.0], [0.5, 0.5]]), labels=[0, 1])
    assert [b["low"] for b in edges["bins"]] == [0.4, 0.8, 0.9]
    with pytest.raises(ValueError, match="n_bins=0 must be a positive integer"):
        calibration(y, P, n_bins=0)
