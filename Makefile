# dcgan-lab: `make sweep` runs the main job, `make test` the test suite, `make check` the linter and
# the fast tier (no Ray, no server, no browser); all set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: sweep test check bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

sweep: $(STAMP)
	$(BIN)/dcgan-lab sweep --preset quick

# Two processes, a test file each at a time: most slow tests wait on process start-ups, not CPU.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 -m "not slow" tests

bench: $(STAMP)
	$(BIN)/dcgan-lab bench

clean:
	rm -rf $(VENV) mlflow.db mlartifacts ray_results sweeps
