# dcgan-lab: `make sweep` runs the main job, `make test` the test suite, `make check` the linter and
# the fast tier (no Ray, no server, no browser); all set up .venv first, with the versions of
# requirements.lock. `make lock` refreshes the lock from a fresh resolve; `make drift` tries the newest
# versions pyproject.toml allows in a scratch venv (the fast tier and the browser test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: sweep test check bench install lock drift clean

# The lock's versions first, then the project itself without resolving anything again.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
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

lock:
	PYTHON=$(PYTHON) bash .ci/lock

drift:
	PYTHON=$(PYTHON) bash .ci/drift

clean:
	rm -rf $(VENV) .venv-lock .venv-drift mlflow.db mlartifacts ray_results sweeps
