# Two commands for a fresh machine with Python 3.11:  `make run`  and  `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PORT   ?= 8501
TEST_WORKERS ?= 2  # pytest-xdist processes; browser tests share one of them (xdist_group)

.PHONY: run test test-fast lint bench clean

$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

run: $(VENV)/.installed  ## set up and start the app on the embedded Fashion-MNIST sample
	$(PY) -m streamlit run app.py --server.port $(PORT)

test: $(VENV)/.installed-dev  ## set up and run the whole suite: lint, types (mypy on core/), unit, AppTest, real browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

test-fast: $(VENV)/.installed-dev  ## the inner loop (<= 2 minutes): lint and every test not marked slow or e2e
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow and not e2e" -q

bench: $(VENV)/.installed-dev
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
