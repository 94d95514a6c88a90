# The two commands of the README, and the steps they are made of.
#   make demo   set up, run collector + SDK + example traffic on embedded defaults, stop
#   make test   set up, then lint, format check, type check and the whole test suite

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
USERS  ?= 200

.PHONY: demo test system-deps lint typecheck pytest schema openapi clean

$(BIN)/activate:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "journeykit needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# An editable install, so that examples and tests run the code in this tree.
$(VENV)/.runtime: pyproject.toml | $(BIN)/activate
	$(PY) -m pip install --quiet -e ".[collector]"
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime
	$(PY) -m pip install --quiet --group dev
	@touch $@

demo: $(VENV)/.runtime
	$(PY) examples/demo.py --users $(USERS)

test: system-deps lint typecheck pytest

# redis-server and Chromium, which the tests start for real (apt-get, only when missing).
system-deps:
	.ci/system-deps

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow setuptools' editable finder; a tree of symlinks gives it the installed
# layout (journeykit.sdk -> sdk/, ...) while checking the sources themselves.
typecheck: $(VENV)/.dev
	@mkdir -p .typecheck/journeykit
	@for p in sdk collector consent; do ln -sfn ../../$$p .typecheck/journeykit/$$p; done
	MYPYPATH=.typecheck $(BIN)/mypy --strict -p journeykit.sdk -p journeykit.consent -p journeykit.collector

pytest: $(VENV)/.dev
	$(BIN)/pytest

# Regenerate the committed JSON Schema after changing the wire models.
schema: $(VENV)/.runtime
	$(BIN)/journeykit protocol schema > docs/protocol.schema.json

# Regenerate the committed OpenAPI document after changing routes, models or default limits.
openapi: $(VENV)/.runtime
	$(BIN)/journeykit collector openapi > docs/openapi.json

clean:
	rm -rf $(VENV) .typecheck .mypy_cache .ruff_cache .pytest_cache build *.egg-info
