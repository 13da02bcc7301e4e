# Set-up and the two README commands. Everything installs into .venv/ on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test docker-up k8s-up azurite lint completions docs generated bench clean

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

# Docker engine + base image for the image tests (needs root; without it those tests skip, saying why).
docker-up:
	-bash scripts/docker-up.sh

# Single-node Kubernetes v1.20.2 on 127.0.0.1 + its registry (root; first run builds it, ~10-15 min).
# Not root: it says so and the Kubernetes tests skip; as root a cluster that does not come up fails.
k8s-up:
	bash scripts/k8s-up.sh

# Azurite (Azure Storage emulator, npm) into .cache/azurite for the model data collection tests.
azurite:
	bash scripts/azurite-install.sh

test: install docker-up k8s-up azurite
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check mlctl tests bench
	$(BIN)/mypy

# Generated files (tests/test_cli.py checks they are current): shell completions, command reference.
completions: install
	for shell in bash zsh fish; do _MLCTL_COMPLETE=source_$$shell $(BIN)/mlctl > completions/mlctl.$$shell; done

docs: install
	$(BIN)/typer mlctl.cli utils docs --name mlctl --title "mlctl command reference" --output docs/cli.md

generated: completions docs

# Benchmarks print numbers (they are not tests); results go in docs/benchmarks.md.
bench: install
	$(BIN)/python bench/startup.py
	bash bench/serving.sh

clean:
	rm -rf $(VENV) build *.egg-info
