# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast schema bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/lrrules resolve examples/resnet18-discriminative.yaml --model resnet18 --num-classes 2

test: $(STAMP)
	$(PY) -m mypy lrrules
	$(PY) -m pytest

# Everything but the tests marked slow (distributed runs, examples, integrations, subprocesses).
test-fast: $(STAMP)
	$(PY) -m mypy lrrules
	$(PY) -m pytest -m "not slow"

schema: $(STAMP)
	$(PY) -c "import lrrules.language as l; print(l.json_schema_text(), end='')" > schemas/lrrules.schema.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

bench: $(STAMP)
	$(PY) -m benchmarks
