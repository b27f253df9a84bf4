# The two commands of the README: `make run` (the app on the embedded demo) and `make test`
# (every test: unit, page and real-browser). Both create the virtual environment when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
PORT ?= 8501

.PHONY: run test bench demo screenshots clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(PY) -m streamlit run app.py --server.port $(PORT) $(ARGS)

test: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/scan.py
	$(PY) bench/threshold.py
	$(PY) bench/train.py
	$(PY) bench/cam.py

demo: $(STAMP)
	$(PY) scripts/make_demo.py
	$(PY) scripts/make_demo_run.py

screenshots: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(PY) scripts/screenshots.py

clean:
	rm -rf $(VENV) workspace test-artifacts
