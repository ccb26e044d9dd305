"""Shared fixtures: one real local Ray instance per test session, real MLflow stores in tmp dirs."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The suite runs more torch threads than the machine has cores (two test processes, three slow
# lanes, trials inside them). OpenMP's threads spin while they wait for work by default, which
# then burns the cores another process needs; told to sleep instead, the fast tier took 130 s, not
# 150 s, and 13 % less CPU (254 s against 292 s). Set before torch loads here (every process the
# tests start inherits it); the results do not change: only how an idle thread waits.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))  # tests/fake_datasets.py, by plain import


@pytest.fixture(scope="session")
def ray_local():
    """A local 2-CPU Ray, shared by every test that trains through Ray Train."""
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if not ray.is_initialized():
        # "local": a Ray of our own, never one that another `ray start` left on this machine.
        from orchestrator.ray_run import start_local_ray

        start_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def forks(tmp_path_factory):
    """One CLI fork server per test process (tests/cli_forks.py): ``forks.cli(*args, cwd=, env=)`` runs
    ``dcgan-lab ARGS`` as ``run_cli`` does, without paying the libraries' imports again."""
    from cli_forks import Forks

    server = Forks(tmp_path_factory.mktemp("cli-forks") / "fork-server.log", jobs=3)
    yield server
    server.close()


@pytest.fixture
def mlflow_uri(tmp_path):
    return "sqlite:///" + str(tmp_path / "mlflow.db")


def ray_node(env, *args):
    """One node of a local cluster, held by ``ray start --block`` in its own process group, so a
    test stops exactly its own nodes (``os.killpg``; never ``ray stop``, which ends every Ray on
    the machine, this session's included)."""
    import subprocess

    ray_bin = str(Path(sys.executable).parent / "ray")
    return subprocess.Popen([ray_bin, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                             "--disable-usage-stats", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def wait_for_nodes(env, address, n, timeout_s=120):
    """Until the cluster at ``address`` has ``n`` live nodes (``ray start --block`` returns nothing)."""
    import subprocess
    import time

    ray_bin = str(Path(sys.executable).parent / "ray")
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        r = subprocess.run([ray_bin, "status", f"--address={address}"], capture_output=True, text=True, env=env,
                           timeout=60)
        if r.returncode == 0 and r.stdout.count("node_") >= n:
            return
        time.sleep(1)
    raise AssertionError(f"the cluster at {address} did not reach {n} nodes in {timeout_s} s")


def stop_nodes(*procs):
    import signal

    for proc in procs:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def run_cli(*args, cwd=None, env=None, timeout=300):
    """Run ``dcgan-lab`` as a user would, in a fresh process."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd or ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


FIGURES = []   # (test id, figure): printed in pytest's summary, with or without -s


@pytest.fixture
def figure(record_property):
    """Report a fault test's figure (steps lost, metrics lost, errors raised): printed, in the
    JUnit XML as a property, and in a "figures" section at the end of the pytest run."""
    def report(text):
        print(f"\n{text}")
        record_property("figure", text)
    return report


def pytest_runtest_logreport(report):
    """Figures from the report (so from every pytest-xdist worker too), once per test."""
    if report.when == "teardown":
        FIGURES.extend((report.nodeid, value) for name, value in report.user_properties if name == "figure")


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("figures")
        for nodeid, text in FIGURES:
            terminalreporter.write_line(f"{nodeid}: {text}")
