# The two commands of the README: `make run` (the app on the embedded demo) and `make test`
# (lint, then every test: unit, page and real-browser). Both create the virtual environment when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Any change to what is installed (requirements, pinned versions, packaging) reinstalls.
INSTALL_FILES := requirements.txt requirements-dev.txt constraints.txt pyproject.toml
STAMP := $(VENV)/.installed-$(shell cat $(INSTALL_FILES) | cksum | cut -d' ' -f1)
PORT ?= 8501

.PHONY: run lint test test-fast bench demo screenshots clean

$(STAMP): $(INSTALL_FILES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(PY) -m streamlit run app.py --server.port $(PORT) $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

test: lint
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest

# The inner loop: no browser, no slow tests (`-m slow` runs only those).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not browser and not slow"

bench: $(STAMP)
	$(PY) -m bench.scan
	$(PY) -m bench.threshold
	$(PY) -m bench.train
	$(PY) -m bench.cam

demo: $(STAMP)
	$(PY) scripts/make_demo.py
	$(PY) -m scripts.make_demo_run

# -m from the repository root: the script imports tests.browser.server.
screenshots: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(PY) -m scripts.screenshots

clean:
	rm -rf $(VENV) workspace test-artifacts .mypy_cache .ruff_cache lumen.egg-info
