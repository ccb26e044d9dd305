"""Faults, load and divergence on real components: a tracking server that goes away, eight
concurrent loggers on one store, a trial that diverges, a node that dies, a disk that fills.

(A killed Train worker: tests/test_training.py; a killed sweep driver: tests/test_sweep.py.)
"""
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, ray_node, stop_nodes
from mlflow import MlflowClient

pytestmark = pytest.mark.slow   # starts Ray, trains, serves MLflow or drives a browser

LOSS_KEYS = ("loss_d", "loss_g", "d_real", "d_fake", "d_fake_g")


def _env(**extra):
    env = {**os.environ, "MLFLOW_TRACKING_URI": "", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def _mlflow_server(port, backend, artifacts, log):
    """A real ``mlflow server`` on 127.0.0.1:port, up and answering when this returns; without
    MLflow 3's job runner, as every server dcgan-lab starts (NO_JOB_RUNNER)."""
    from orchestrator.sweep.mlflow_server import NO_JOB_RUNNER, wait_healthy

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend, "--default-artifact-root",
           artifacts, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                            env=_env(**NO_JOB_RUNNER))
    wait_healthy(f"http://127.0.0.1:{port}", proc, 180, log)
    return proc


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _last_step(client, experiment="dcgan-lab"):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    steps = [m.step for r in runs for m in client.get_metric_history(r.info.run_id, "loss_d")]
    return (runs[0].info.run_id if runs else None), max(steps, default=0)


def test_tracking_server_down_30s_during_training(tmp_path, figure):
    """Kill the MLflow server mid-run, restart it 30 s later on the same port and store: the run
    goes on (it logs steps while the server is down), warns once, and every metric arrives."""
    from orchestrator.sweep.mlflow_server import free_port

    port, backend = free_port(), "sqlite:///" + str(tmp_path / "mlflow.db")
    artifacts, log = (tmp_path / "mlartifacts").as_uri(), tmp_path / "server.log"
    uri, n_steps, outage_s = f"http://127.0.0.1:{port}", 240, 30
    server = _mlflow_server(port, backend, artifacts, log)
    train = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "train", "--preset", "smoke", "--set", f"mlflow_uri={uri}",
         "--set", f"max_steps={n_steps}", "--set", "log_every=1", "--set", "eval_every=0", "--set",
         "sample_every=100000", "--set", "checkpoint_every=60", "--set", "dataset_size=4096"],
        cwd=tmp_path, env=_env(), stdout=open(tmp_path / "train.out", "w"), stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        client, run_id, down_at = MlflowClient(uri), None, 0
        deadline = time.time() + 400
        while time.time() < deadline and train.poll() is None:
            run_id, down_at = _last_step(client)
            if down_at >= 10:
                break
            time.sleep(0.5)
        assert train.poll() is None and down_at >= 10, "training ended or never started before the outage"
        _stop(server)
        t_down = time.time() * 1000
        time.sleep(outage_s)
        t_up = time.time() * 1000
        server = _mlflow_server(port, backend, artifacts, log)
        _, stderr = train.communicate(timeout=600)
    finally:
        for proc in (train, server):
            _stop(proc)
    assert train.returncode == 0, stderr[-3000:]
    assert "warning: tracking store unavailable" in stderr and "tracking store is back" in stderr

    client = MlflowClient(backend)
    histories = {k: client.get_metric_history(run_id, k) for k in LOSS_KEYS}
    written = sum(len(h) for h in histories.values())
    during = sorted({m.step for m in histories["loss_d"] if t_down <= m.timestamp <= t_up})
    figure(f"server down {outage_s} s from step {down_at}; steps logged while down: {len(during)} "
           f"({during[0] if during else '-'}..{during[-1] if during else '-'}); metrics written / expected: "
           f"{written} / {n_steps * len(LOSS_KEYS)}")
    for key, history in histories.items():
        assert sorted(m.step for m in history) == list(range(1, n_steps + 1)), key
    assert during, "training stalled while the tracking server was down"
    assert client.get_run(run_id).data.tags["status"] == "finished"


_LOGGER = """
import sys
from trainables.run_logger import RunLogger
uri, run_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
logger = RunLogger(uri, run_id)
for step in range(1, n + 1):
    logger.metrics(step, {k: step + i / 10 for i, k in enumerate(%r)})
sys.exit(0 if logger.flush(retries=30) else 1)
""" % (LOSS_KEYS,)


def test_eight_concurrent_trials_log_every_step(tmp_path, figure):
    """Eight processes log five metrics every step through the sweep's local MLflow server on the
    default SQLite store (what eight concurrent trials do): no metric lost, no "database is locked"."""
    from orchestrator.sweep.mlflow_server import local_server
    from trainables.store import artifact_root, start_run

    store = "sqlite:///" + str(tmp_path / "mlflow.db")
    n_procs, n_steps = 8, 200
    with local_server(store, artifact_root(store), tmp_path / "server.log") as uri:
        runs = [start_run(uri, "load", f"trial-{i}", {"i": i}, {"kind": "trial"}) for i in range(n_procs)]
        t0 = time.time()
        procs = [subprocess.Popen([sys.executable, "-c", _LOGGER, uri, run_id, str(n_steps)], cwd=ROOT,
                                  env=_env(), stderr=subprocess.PIPE, text=True) for run_id in runs]
        errors = [p.communicate(timeout=600)[1] for p in procs]
        elapsed = time.time() - t0
    client = MlflowClient(store)
    written = sum(len(client.get_metric_history(r, k)) for r in runs for k in LOSS_KEYS)
    locked = sum(e.count("database is locked") for e in errors) + \
        (tmp_path / "server.log").read_text().count("database is locked")
    figure(f"{n_procs} concurrent loggers, {n_steps} steps x {len(LOSS_KEYS)} metrics each: metrics written / "
           f"expected {written} / {n_procs * n_steps * len(LOSS_KEYS)}; 'database is locked': {locked}; "
           f"{elapsed:.0f} s")
    assert [p.returncode for p in procs] == [0] * n_procs, errors
    assert locked == 0 and written == n_procs * n_steps * len(LOSS_KEYS)
    for r in runs:
        assert [m.step for m in client.get_metric_history(r, "loss_g")] == list(range(1, n_steps + 1))


def test_diverged_trial_stops_and_the_sweep_goes_on(tmp_path, figure):
    """One trial's learning rate sends its losses to NaN: it stops there, marked diverged in Tune
    (its last result) and MLflow (tag, metric, kept losses); the other trial finishes."""
    import json

    (tmp_path / "lr.yaml").write_text("params:\n  lr: {dist: grid, values: [2.0e-4, 1.0e+12]}\n")
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", "--preset", "smoke", "--space", "lr.yaml",
                        "--set", "log_every=1", "--set", "cpus_per_worker=2"],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    client = MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    exp = client.get_experiment_by_name("dcgan-lab")
    children = {float(c.data.params["lr"]): c for c in client.search_runs([exp.experiment_id], "tags.kind = 'trial'")}
    good, bad = children[2e-4], children[1e12]
    assert good.data.tags["status"] == "finished" and [m.step for m in client.get_metric_history(
        good.info.run_id, "loss_d")] == list(range(1, 13))
    kept = client.get_metric_history(bad.info.run_id, "loss_g")
    assert bad.data.tags["status"] == "diverged" and bad.data.metrics["diverged"] == 1.0
    assert kept and kept[-1].value != kept[-1].value  # NaN: the step that diverged is kept
    assert all(m.value == m.value for m in kept[:-1]) and len(kept) >= 2  # and the finite ones before it
    assert int(bad.data.tags["final_step"]) == kept[-1].step < 12

    trial_id = bad.data.tags["trial_id"]
    results = list((tmp_path / "ray_results" / "sweeps").glob(f"*/trial-{trial_id}/result.json"))
    last = json.loads(results[0].read_text().strip().splitlines()[-1])
    assert last["diverged"] is True and last["step"] == kept[-1].step
    assert "diverged" in r.stdout  # the sweep's summary counts it
    figure(f"diverged trial stopped at step {kept[-1].step} of 12 with {len(kept)} loss_g values kept; "
           f"the other trial finished all 12 steps")


def test_checkpoint_writes_are_atomic_and_damaged_files_refused(tmp_path, figure):
    """A save that fails half-way leaves the previous checkpoint whole and no partial file; a file
    cut short, as a non-atomic write leaves it after a crash, is refused, never loaded."""
    import torch

    from trainables.atomic import save_atomic
    from trainables.checkpoints import load_safe
    from trainables.errors import UserError

    path = tmp_path / "state.pt"
    save_atomic({"step": 6, "w": torch.ones(1000)}, path)
    with pytest.raises((AttributeError, pickle.PicklingError)):  # the tensors are written, then pickling the lambda fails
        save_atomic({"step": 12, "w": torch.zeros(1000), "bad": lambda: 0}, path)
    assert load_safe(path)["step"] == 6 and sorted(os.listdir(tmp_path)) == ["state.pt"]
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="cut.pt: refused: damaged or incomplete") as err:
        load_safe(cut)
    figure(f"half-written checkpoint: {err.value}")


_DISK_FULL = """
import resource, signal, sys
import torch
from trainables.errors import UserError
from orchestrator.ray_run import prepare_storage
from trainables.atomic import save_atomic
folder = sys.argv[1]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))   # no file may pass 1 KiB: a full disk
try:
    prepare_storage(folder + "/ray_results")
except UserError as err:
    print("START", err)
try:
    save_atomic({"step": 12, "w": torch.zeros(10000)}, folder + "/state.pt")
except (OSError, RuntimeError) as err:   # torch reports the short write as either
    print("SAVE failed:", str(err).splitlines()[0][:80])
"""


def test_disk_full(tmp_path, figure):
    """With no room to write: storage_path fails at the start with one line, and a checkpoint that
    cannot be written leaves the previous one whole, with no partial file beside it."""
    import torch

    from trainables.atomic import save_atomic
    from trainables.checkpoints import load_safe

    save_atomic({"step": 6, "w": torch.ones(10)}, tmp_path / "state.pt")
    r = subprocess.run([sys.executable, "-c", _DISK_FULL, str(tmp_path)], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    start = [line for line in r.stdout.splitlines() if line.startswith("START")]
    assert start and "storage_path=" in start[0] and "is not writable: File too large" in start[0], r.stdout
    assert "SAVE failed" in r.stdout
    assert load_safe(tmp_path / "state.pt")["step"] == 6
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["state.pt"]
    figure(f"disk full: {start[0][6:]}; checkpoint left whole at step 6, no partial file")


def test_worker_node_lost_mid_trial(tmp_path, figure):
    """A head and a worker node (``ray start`` on loopback, token auth on), one 2-CPU trial on each.
    The worker node dies (its raylet and workers SIGKILLed): its trial is rescheduled on the head
    from its last checkpoint and finishes, every logged step once."""
    import ray

    ray.shutdown()  # this process must not be a driver of the cluster that loses a node
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = 7379 + os.getpid() % 1000
    env = _env(RAY_AUTH_MODE="token")
    subprocess.run([ray_bin, "get-auth-token", "--generate"], capture_output=True, env=env, timeout=60, check=True)
    head = ray_node(env, "--head", f"--port={port}", "--include-dashboard=false")
    worker = sweep = None
    client = MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    try:
        time.sleep(5)
        worker = ray_node(env, f"--address=127.0.0.1:{port}")
        sweep = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "sweep", "--preset", "smoke", "--set", "cpus_per_worker=2",
             "--set", "max_steps=200", "--set", "log_every=5", "--set", "checkpoint_every=25", "--set", "eval_every=0",
             "--set", "sample_every=100000", "--set", "dataset_size=4096", "--set", "max_failures=3"],
            cwd=tmp_path, env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        killed_at, deadline = None, time.time() + 500
        while killed_at is None and time.time() < deadline and sweep.poll() is None:
            time.sleep(1)
            exp = (tmp_path / "mlflow.db").exists() and client.get_experiment_by_name("dcgan-lab")
            children = client.search_runs([exp.experiment_id], "tags.kind = 'trial'") if exp else []
            nodes = {c.data.tags.get("node_id") for c in children} - {None}
            steps = [max([m.step for m in client.get_metric_history(c.info.run_id, "loss_d")], default=0)
                     for c in children]
            if len(nodes) == 2 and min(steps) >= 30:
                os.killpg(worker.pid, signal.SIGKILL)
                killed_at = steps
        assert killed_at, "the trials did not run on both nodes at once"
        out, err = sweep.communicate(timeout=900)
    finally:
        stop_nodes(sweep, worker, head)
    assert sweep.returncode == 0, err[-3000:]
    exp = client.get_experiment_by_name("dcgan-lab")
    children = client.search_runs([exp.experiment_id], "tags.kind = 'trial'")
    steps = {c.info.run_id: [m.step for m in client.get_metric_history(c.info.run_id, "loss_d")] for c in children}
    finished = sum(c.data.tags['status'] == 'finished' for c in children)
    figure(f"worker node killed at steps {killed_at}: trials finished {finished}"
           f" / {len(children)}; duplicates {sum(len(s) - len(set(s)) for s in steps.values())}, steps lost "
           f"{sum(len(set(range(5, 201, 5)) - set(s)) for s in steps.values())}")
    assert len(children) == 2 and all(c.data.tags["status"] == "finished" for c in children)
    assert len({c.data.tags["node_id"] for c in children}) == 1  # both ended on the head
    for s in steps.values():
        assert sorted(s) == list(range(5, 201, 5))


def test_trials_logging_one_data_set_at_once_each_get_it(tmp_path, figure):
    """Twelve trials of a sweep log the same data set as their input at the same moment through the
    sweep's MLflow server, ten times over: every run gets its input and none fails. (The server
    checks for the data set and inserts it in one transaction: two such at once both insert it,
    and the second loses on the table's UNIQUE key: this test failed so before the fix.)"""
    import threading

    from orchestrator.config import resolve_config
    from orchestrator.sweep.mlflow_server import local_server
    from trainables.run_inputs import log_dataset
    from trainables.store import artifact_root, start_run

    store = "sqlite:///" + str(tmp_path / "mlflow.db")
    cfg, n, n_rounds = resolve_config("smoke"), 12, 10
    with local_server(store, artifact_root(store), tmp_path / "server.log") as uri:
        rounds = []
        for r in range(n_rounds):   # a fresh experiment per round: the data set is new to each
            runs = [start_run(uri, f"race-{r}", f"trial-{i}", {"i": i}, {"kind": "trial"}) for i in range(n)]
            barrier, errors = threading.Barrier(n), []

            def log(run_id, barrier=barrier, errors=errors):
                barrier.wait()
                try:
                    log_dataset(uri, run_id, cfg)
                except Exception as err:  # noqa: BLE001 - counted: the test's subject
                    errors.append(err)

            threads = [threading.Thread(target=log, args=(run_id,)) for run_id in runs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            client = MlflowClient(store)
            inputs = [len(client.get_run(run_id).inputs.dataset_inputs) for run_id in runs]
            rounds.append((errors, inputs))
    figure(f"{n} trials log one data set at once, {n_rounds} rounds: calls failed {sum(len(e) for e, _ in rounds)}, "
           f"runs without their input {sum(i != 1 for _, inputs in rounds for i in inputs)} of {n * n_rounds}")
    for errors, inputs in rounds:
        assert not errors, errors[0]
        assert inputs == [1] * n
