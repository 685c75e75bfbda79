"""scikit-learn's own estimator contract, run on matnet's estimators with no expected failures."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from matnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.mark.slow
@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


@pytest.mark.slow
def test_array_api_check_with_scipy_array_api_enabled():
    """The one check the suite above cannot run in-process: it needs SCIPY_ARRAY_API=1 set before
    SciPy is imported, so it runs in a fresh interpreter."""
    import os
    import subprocess
    import sys

    code = (
        "from sklearn.utils.estimator_checks import check_array_api_input\n"
        "from matnet.sklearn import MLPClassifier, MLPRegressor\n"
        "for est in (MLPClassifier(), MLPRegressor()):\n"
        "    check_array_api_input(type(est).__name__, est, array_namespace='numpy',\n"
        "                          expect_only_array_outputs=False)\n"
        "print('array api ok')\n"
    )
    env = {**os.environ, "SCIPY_ARRAY_API": "1"}
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "array api ok" in done.stdout
