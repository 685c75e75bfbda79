"""scikit-learn's own estimator contract, run on matnet's estimators with no expected failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from matnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


def _run_array_api_check_in_fresh_interpreter(estimator, check) -> None:
    """check_array_api_input needs SCIPY_ARRAY_API=1 set before SciPy is first imported; this
    process imported SciPy long ago, so the check runs, unchanged, in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from sklearn.utils.estimator_checks import check_array_api_input\n"
        "import matnet.sklearn\n"
        "cls, params, args, kwargs = json.loads(sys.argv[1])\n"
        "estimator = getattr(matnet.sklearn, cls)(**params)\n"
        "check_array_api_input(*args, estimator, **kwargs)\n"
        "print('check passed')\n"
    )
    payload = json.dumps(
        [type(estimator).__name__, estimator.get_params(), list(check.args), check.keywords]
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code, payload],
        env={**os.environ, "SCIPY_ARRAY_API": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "check passed" in done.stdout


@pytest.mark.slow
@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_estimator_contract(estimator, check):
    name = getattr(check, "func", check).__name__
    if name == "check_array_api_input" and os.environ.get("SCIPY_ARRAY_API") != "1":
        _run_array_api_check_in_fresh_interpreter(estimator, check)
    else:
        check(estimator)
