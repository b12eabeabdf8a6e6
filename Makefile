# `make run` and `make test` each set up .venv on a fresh machine, then do their job.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch that lies on these machines' disk; a bare `torch` pulls CUDA (GBs).
TORCH ?= torch==2.13.0

.PHONY: run test test-fast lint venv install clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q ".[transformers,test]"
	touch $@

# Install the package itself as users get it (not editable): entry points live in
# the installed metadata, and the tests import it from site-packages.
install: venv
	rm -rf build  # setuptools' staging folder keeps modules that were moved or removed
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation --force-reinstall .

run: install
	$(BIN)/python -m weasel run all .

lint: venv
	$(BIN)/ruff check spacy_ntk_ner tests benchmarks scripts
	$(BIN)/ruff format --check spacy_ntk_ner tests benchmarks scripts
	$(BIN)/mypy

test: install lint
	NTK_NER_TEST_INSTALLED=1 $(BIN)/pytest tests -q --durations=25

# While developing: everything but the tests marked slow (training runs, wheel builds).
test-fast: install lint
	NTK_NER_TEST_INSTALLED=1 $(BIN)/pytest tests -q -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info corpus training metrics packages visualize project.lock
