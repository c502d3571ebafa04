# The two set-up commands: `make demo` and `make test` each create .venv and install what they need.
PYTHON3 ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test ui lint clean

$(INSTALLED): pyproject.toml
	$(PYTHON3) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(VENV)/bin/vlmstudy demo

test: $(INSTALLED)
	$(PYTHON) -m pytest

ui: $(INSTALLED)
	$(VENV)/bin/vlmstudy ui

lint: $(INSTALLED)
	$(VENV)/bin/ruff check study analysis tests

clean:
	rm -rf .vlmstudy mlruns.db mlartifacts reports/*/
