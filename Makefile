# The two commands a newcomer types: `make lab` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test lint clean

$(STAMP): requirements/cpu.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/cpu.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# The main job: the cpu-quick ablation matrix on the embedded sample corpus, then its table.
lab: $(STAMP)
	$(BIN)/gocram lab --matrix cpu-quick

test: $(STAMP)
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check gocram tests

clean:
	rm -rf $(VENV) runs .pytest_cache
