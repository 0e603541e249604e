# Two entry points: `make run` (the app on the embedded demo models) and `make test` (everything).
# Both create the virtual environment on first use; nothing is downloaded at run time.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# The address the app listens on: loopback by default. To serve other machines on the network (read
# docs/security.md first): `make run HOST=0.0.0.0`.
HOST ?= 127.0.0.1

.PHONY: run test lint bench clean-venv browser screenshots

$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . || $(PY) -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT)

# Chromium for the browser tests: Debian's package, installed when we are root with apt.
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null && echo "installed $$(/usr/bin/chromium --version)"; \
	else echo "chromium is not installed and cannot be installed here (needs root + apt): the browser tests will fail"; fi

test: $(VENV)/.dev browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

# The tests write screenshots only under test-artifacts/; this refreshes docs/img/ on purpose, one picture per
# page (the README's home.png among them), for a commit that changes how the pages look: the browser tests that
# take them (three files, a few minutes), then tests/e2e/docs_img.py copies them.
SCREENSHOT_TESTS := test_home_shows_the_gallery or test_every_analysis_page or test_hyperplane_page or test_models_page \
	or test_attack_lab_lecture_mode or test_attack_lab_audit_panel_and_replay
screenshots: $(VENV)/.dev browser
	MLVIS_UPDATE_DOCS_IMG=1 $(PY) -m pytest -q tests/e2e/test_browser.py -k "$(SCREENSHOT_TESTS)"
	$(PY) -m pytest -q tests/e2e/test_offline.py -k test_every_page_is_offline_clean
	$(PY) -m pytest -q tests/e2e/test_queue_e2e.py
	$(PY) tests/e2e/docs_img.py

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(VENV)/.dev
	$(PY) benchmarks/data.py
	$(PY) benchmarks/models.py

clean-venv:
	rm -rf $(VENV)
