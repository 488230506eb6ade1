# Two commands for a new user: `make test` and `make demo`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The pinned requirements, then the project itself, editable (pyproject.toml): `python bench/x.py`,
# pytest and the `luperson` script import this checkout's packages. The build uses the venv's
# setuptools (python3.11's venv brings one, the requirements upgrade it): nothing is fetched, and
# no *.egg-info is left in the checkout.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	YOLO_OFFLINE=1 $(BIN)/python -m pytest -q

demo: $(STAMP)
	YOLO_OFFLINE=1 $(BIN)/python pipeline.py demo
