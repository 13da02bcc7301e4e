# Set-up and the two README commands. Everything installs into .venv/ on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint completions clean

$(STAMP): pyproject.toml specs/examples/requirements-train.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -r specs/examples/requirements-train.txt
	touch $(STAMP)

install: $(STAMP)

# The main job: train the diabetes model, deploy it on the process target, test it.
demo: install
	$(BIN)/python specs/examples/diabetes/train.py
	$(BIN)/mlctl service delete diabetes
	$(BIN)/mlctl service deploy -f specs/examples/diabetes/service.yaml
	$(BIN)/mlctl service test diabetes

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check mlctl tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
