"""Shared fixtures: one real local Ray instance per test session, real MLflow stores in tmp dirs."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # tests/fake_datasets.py, by plain import


@pytest.fixture(scope="session")
def ray_local():
    """A local 2-CPU Ray, shared by every test that trains through Ray Train."""
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if not ray.is_initialized():
        # "local": a Ray of our own, never one that another `ray start` left on this machine.
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def mlflow_uri(tmp_path):
    return "sqlite:///" + str(tmp_path / "mlflow.db")


def run_cli(*args, cwd=None, env=None, timeout=300):
    """Run ``dcgan-lab`` as a user would, in a fresh process."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd or ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


FIGURES = []   # (test id, figure): printed in pytest's summary, with or without -s


@pytest.fixture
def figure(request, record_property):
    """Report a fault test's figure (steps lost, metrics lost, errors raised): printed, in the
    JUnit XML as a property, and in a "figures" section at the end of the pytest run."""
    def report(text):
        print(f"\n{text}")
        record_property("figure", text)
        FIGURES.append((request.node.nodeid, text))
    return report


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("figures")
        for nodeid, text in FIGURES:
            terminalreporter.write_line(f"{nodeid}: {text}")
