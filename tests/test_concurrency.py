"""Several commands at once on one local SQLite store (README, "What survives what"), as users
start them: a terminal per seed, a shell loop with ``&``.

Six ``dcgan-lab train`` in one fresh folder (the default ``./mlflow.db``), each logging every
step; then three ``evaluate`` and three ``latent sheet`` at once on the runs they made. Also
the two mechanisms on their own: a store that many processes create at the same moment, and a
write that meets a store another connection keeps locked past SQLite's busy wait.
"""
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from mlflow import MlflowClient

pytestmark = pytest.mark.slow   # starts Ray, trains, serves MLflow or drives a browser

LOSS_KEYS = ("loss_d", "loss_g", "d_real", "d_fake", "d_fake_g")
N_TRAIN, N_STEPS = 6, 12        # the smoke preset's 12 steps, each logged
RAY_ACTOR_LINE = re.compile(r"^(\x1b\[\d+m)?\(\w+ pid=\d+")   # Ray's prefix on its actors' lines


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _problems(stderr):
    """What must not reach a user's terminal: the store's lock errors anywhere, and tracebacks
    from dcgan-lab's own process (Ray's actors log their own, counted apart)."""
    own = [line for line in stderr.splitlines() if not RAY_ACTOR_LINE.match(line)]
    return {"locked": stderr.count("database is locked"),
            "tracebacks": sum("Traceback" in line for line in own),
            "ray_actor_tracebacks": sum("Traceback" in line for line in stderr.splitlines()) -
                                    sum("Traceback" in line for line in own)}


@pytest.fixture(scope="module")
def shared_ray(tmp_path_factory):
    """One Ray head that the six trainings join (``ray start --block`` on loopback, its own
    process group, stopped alone at the end): six local Rays of their own do not all start at
    once on a 2-core machine (5 of 6 timed out). Its processes carry RAY_ADDRESS, so Ray Train's
    placement-group cleaner finds this cluster, not another Ray on the same machine."""
    import signal

    ray_bin = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_ADDRESS": f"127.0.0.1:{port}"}
    subprocess.run([ray_bin, "get-auth-token", "--generate"], capture_output=True, env=env, timeout=60, check=True)
    head = subprocess.Popen([ray_bin, "start", "--block", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                             f"--num-cpus={N_TRAIN}", "--dashboard-host=127.0.0.1", f"--dashboard-port={_free_port()}",
                             "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        yield {"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token"}
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)


@pytest.fixture(scope="module")
def trained(shared_ray, tmp_path_factory):
    """Six smoke trainings started together in one fresh folder, each logging every step."""
    folder = tmp_path_factory.mktemp("six-trainings")
    env = {**shared_ray, "MLFLOW_TRACKING_URI": ""}
    argv = ["train", "--preset", "smoke", "--set", "log_every=1", "--set", "eval_every=0"]
    with ThreadPoolExecutor(N_TRAIN) as pool:
        results = list(pool.map(lambda seed: run_cli(*argv, "--set", f"seed={seed}", cwd=folder, env=env, timeout=600),
                                range(N_TRAIN)))
    for seed, r in enumerate(results):   # kept for a failure's post-mortem: pytest shows only one
        (folder / f"train-{seed}.stderr").write_text(r.stderr)
    return folder, results


def test_six_trainings_at_once_on_one_fresh_store(trained, figure):
    folder, results = trained
    client = MlflowClient("sqlite:///" + str(folder / "mlflow.db"))
    runs = client.search_runs([client.get_experiment_by_name("dcgan-lab").experiment_id])
    finished = [r for r in runs if r.info.status == "FINISHED" and r.data.tags.get("status") == "finished"]
    logged = {(r.info.run_id, key): [m.step for m in client.get_metric_history(r.info.run_id, key)]
              for r in runs for key in LOSS_KEYS}
    once = sum(sorted(steps) == list(range(1, N_STEPS + 1)) for steps in logged.values())
    problems = [_problems(r.stderr) for r in results]
    figure(f"{N_TRAIN} trainings at once on one fresh SQLite store, every step logged: {len(finished)} / {N_TRAIN} "
           f"finished; metric histories with each of the {N_STEPS} steps exactly once {once} / "
           f"{N_TRAIN * len(LOSS_KEYS)}; 'database is locked' {sum(p['locked'] for p in problems)}, tracebacks "
           f"{sum(p['tracebacks'] for p in problems)} (from Ray's actors: {sum(p['ray_actor_tracebacks'] for p in problems)})")
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    assert len(runs) == N_TRAIN and len(finished) == N_TRAIN
    assert once == N_TRAIN * len(LOSS_KEYS), {k: v for k, v in logged.items() if sorted(v) != list(range(1, 13))}
    assert all(p["locked"] == 0 and p["tracebacks"] == 0 for p in problems), [r.stderr[-3000:] for r in results]


@pytest.fixture(scope="module")
def evaluator_cache(tmp_path_factory):
    """A private cache, empty: the commands below build the reference embeddings of the shipped
    faces evaluator there together."""
    return str(tmp_path_factory.mktemp("evaluator-cache"))


def test_evaluate_and_latent_sheet_at_once_on_one_store(trained, evaluator_cache, figure):
    folder, _ = trained
    client = MlflowClient("sqlite:///" + str(folder / "mlflow.db"))
    run_ids = [r.info.run_id for r in client.search_runs([client.get_experiment_by_name("dcgan-lab").experiment_id])]
    assert len(run_ids) >= 3
    env = {"MLFLOW_TRACKING_URI": "", "DCGAN_LAB_CACHE": evaluator_cache}
    commands = [["evaluate", "--run", run_id, "--n", "300"] for run_id in run_ids[:3]] + \
               [["latent", "sheet", "--run", run_id, "--n", "16"] for run_id in run_ids[:3]]
    with ThreadPoolExecutor(len(commands)) as pool:
        results = list(pool.map(lambda argv: run_cli(*argv, cwd=folder, env=env, timeout=600), commands))
    fd_logged = [len(client.get_metric_history(run_id, "fd_faces_n300")) for run_id in run_ids[:3]]
    sheets = [{os.path.basename(f.path) for f in client.list_artifacts(run_id, "latent/sheet")} for run_id in run_ids[:3]]
    problems = [_problems(r.stderr) for r in results]
    figure(f"3 evaluate + 3 latent sheet at once on one SQLite store: {sum(r.returncode == 0 for r in results)} / 6 "
           f"exit 0; fd_faces_n300 logged once in {fd_logged.count(1)} / 3 runs, z.npy in {sum('z.npy' in s for s in sheets)}"
           f" / 3; 'database is locked' {sum(p['locked'] for p in problems)}, "
           f"tracebacks {sum(p['tracebacks'] for p in problems)}")
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
        assert "Traceback" not in r.stderr and "database is locked" not in r.stderr, r.stderr[-3000:]
    assert fd_logged == [1, 1, 1]
    assert all("z.npy" in s for s in sheets)


_OPEN_TOGETHER = """
import os, sys, time
from trainables import store
uri, barrier, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
open(os.path.join(barrier, str(os.getpid())), "w").close()
while len(os.listdir(barrier)) < n:   # every process imported: all open the fresh store now
    time.sleep(0.01)
c = store.client(uri)
print(store.experiment_id(c, "created-at-once", uri))
"""


def test_many_processes_create_one_store_at_once(tmp_path, figure):
    """MLflow alone fails here (4 processes: all 4 died in its schema migration, "duplicate
    column name: step"); through ``store.client`` each process opens the store and they
    agree on one experiment."""
    n = N_TRAIN
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    (tmp_path / "barrier").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_TOGETHER, uri, str(tmp_path / "barrier"), str(n)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate(timeout=300) for p in procs]
    opened = [out.strip() for (out, err), p in zip(outs, procs) if p.returncode == 0 and "Traceback" not in err]
    figure(f"{n} processes creating one fresh SQLite store at the same moment: {len(opened)} / {n} opened it, "
           f"{len(set(opened))} experiment id(s) among them")
    assert len(opened) == n, [err[-2000:] for _, err in outs]
    assert len(set(opened)) == 1


def test_a_write_outlasting_sqlites_busy_wait_is_retried(tmp_path, figure):
    """Another connection holds the store's write lock for longer than MLflow's busy wait (20 s):
    the call is run again until the lock goes, and writes once. With too short a bound for the
    same wait, one line (UserError) instead of a traceback."""
    from trainables import store
    from trainables.errors import UserError

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    c = store.client(uri)
    run_id = store.start_run(uri, "locked", "r", {}, {})
    raw = MlflowClient(uri)   # no retry of its own: the calls below count the attempts
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(24, holder.rollback)
    release.start()
    attempts, outcome = [], {}

    def write():
        attempts.append(time.monotonic())
        raw.set_tag(run_id, "written", "once")

    def give_up():
        try:
            store.retry_when_locked(uri, lambda: raw.set_tag(run_id, "never", "x"), limit_s=0)
        except UserError as err:
            outcome["error"] = str(err)

    quitter = threading.Thread(target=give_up)
    quitter.start()
    store.retry_when_locked(uri, write)
    quitter.join()
    release.join()
    tags = c.get_run(run_id).data.tags
    error = outcome.get("error", "no error").split(": ", 1)[-1]
    figure(f"store locked 24 s by another connection: the write ran {len(attempts)} times and landed once "
           f"(written={tags.get('written')!r}); with a 0 s bound, one line: {error!r}")
    assert len(attempts) >= 2 and tags["written"] == "once"
    assert "never" not in tags
    assert "stayed locked" in outcome.get("error", "") and "\n" not in outcome["error"]
