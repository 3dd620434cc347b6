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

# DeepSpeed's CPU all-reduce op, compiled with g++ once per venv (about ten minutes on 2 cores) for the
# slow ZeRO tests, so the suite's own time does not pay it. A lock a killed build left is removed first.
OPS := $(VENV)/.deepspeed-op

$(OPS): $(STAMP)
	find $(VENV)/torch_extensions -name lock -mmin +30 -delete 2>/dev/null || true
	TORCH_EXTENSIONS_DIR=$(VENV)/torch_extensions $(PY) -c "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder as B; B().load()"
	touch $(OPS)

run: $(STAMP)
	$(VENV)/bin/lrrules resolve examples/resnet18-discriminative.yaml --model resnet18 --num-classes 2

test: $(STAMP) $(OPS)
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
