# Two commands for a newcomer: `make run` brings the whole system up, `make test` runs every test.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv test run migrate clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) is missing; install Python 3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

test: venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

migrate: venv
	$(PY) manage.py migrate

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
