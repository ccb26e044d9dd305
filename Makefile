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

# The fast tier on two pytest-xdist workers, then the slow tier in three lanes side by side (tests/lanes.py).
test: $(STAMP)
	$(BIN)/python tests/lanes.py

# The fast tier on two processes, a test file to each in turn (--dist loadfile: a module's fixtures,
# such as the bad-input cases and the trained evaluators, are built once, not once per worker); it
# starts no Ray and no server, so its tests cannot collide.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow" tests

bench: $(STAMP)
	$(BIN)/dcgan-lab bench

clean:
	rm -rf $(VENV) mlflow.db mlartifacts ray_results sweeps
