# Two commands for a fresh machine: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test test-fast lint typecheck format bench bench-tabular browser clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: re-install only when the package's build inputs change (the install also compiles
# matnet's optional C kernels, matnet/_kernels.c, where a C compiler exists).
BUILD_INPUTS := pyproject.toml setup.py matnet/_kernels.c

$(VENV)/.demo-installed: $(BUILD_INPUTS) | $(VENV)/bin/python
	$(PIP) -e '.[sklearn,plot,progress]'
	touch $@

$(VENV)/.dev-installed: $(BUILD_INPUTS) | $(VENV)/bin/python
	$(PIP) -e '.[dev]'
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) examples/demo.py

test: $(VENV)/.dev-installed
	$(PY) -m pytest -q

# Debian's chromium for the explain page's browser test (tests/test_explain_html.py, driven by the
# dev extra's playwright); installing it needs root. Where it is absent the test is skipped, except
# under CI=1 (.ci/run runs this target first).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Skips the slow end-to-end tests (CI runs everything through `make test`).
test-fast: $(VENV)/.dev-installed
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check matnet tests benchmarks examples
	$(VENV)/bin/ruff format --check matnet tests benchmarks examples

typecheck: $(VENV)/.dev-installed
	$(VENV)/bin/mypy

format: $(VENV)/.dev-installed
	$(VENV)/bin/ruff format matnet tests benchmarks examples
	$(VENV)/bin/ruff check --fix matnet tests benchmarks examples

$(VENV)/.bench-installed: $(BUILD_INPUTS) | $(VENV)/bin/python
	$(PIP) -e '.[bench]' torch==2.13.0
	touch $@

# Training and inference speed beside a hand-written NumPy loop, PyTorch, scikit-learn and the limit;
# writes benchmarks/RESULTS.md. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (set on some machines for older
# OpenBLAS builds) are unset for this command only, so NumPy's OpenBLAS picks its native kernel.
bench: $(VENV)/.bench-installed
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_train.py --out benchmarks/RESULTS.md

# matnet's tabular recipe (CLI and TabularClassifier/Regressor) beside scikit-learn's MLP,
# HistGradientBoosting and RealMLP-TD (pytabkit) on datasets that ship inside packages, 3 seeds;
# writes benchmarks/RESULTS-tabular.md. Long (RealMLP-TD takes a minute or more per fit on 2 cores).
bench-tabular: $(VENV)/.bench-installed
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_tabular.py --out benchmarks/RESULTS-tabular.md

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache out matnet/*.so
