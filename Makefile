# Two commands for a newcomer: `make run` brings the whole system up, `make test` runs every test.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv test lint format run demo bench stop migrate clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) is missing; install Python 3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# First what the tests need beyond pip (Python 3.11, Chromium): one line and a stop if it is missing.
# Then every test, on TEST_WORKERS xdist workers, each with its own test database, Temporal dev
# server and workers; tests that start a system of their own share one worker (tests/conftest.py).
TEST_WORKERS ?= 3
test:
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/test_prerequisites.sh
	@$(MAKE) --no-print-directory venv
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The team's habits (pyproject.toml), as CI checks them: ruff's lint rules and format, and mypy on
# temporal_app (Django-free and typed). `make format` applies ruff's fixes and format.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Everything in one terminal (Postgres, Temporal + Web UI, migrations, demo users, workers, web);
# one Ctrl-C stops it all. Ports and paths: see "Configuration" in README.md.
run: venv
	@$(PY) scripts/run_system.py

# The seed's demo against the running system (make run in another terminal).
demo: venv
	$(PY) manage.py demo_order $(DEMO_ARGS)

# End-to-end benchmark against TEMPORAL_ADDRESS; it starts its own workers.
BENCH_ORDERS ?= 200
bench: venv
	$(PY) manage.py bench_orders --orders $(BENCH_ORDERS) $(BENCH_ARGS)

# Stops an embedded Postgres under var/ that a test session or a manage.py command left running.
stop:
	@$(PY) scripts/run_system.py --stop-postgres

migrate: venv
	$(PY) manage.py migrate

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
