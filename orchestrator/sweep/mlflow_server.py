"""A local MLflow tracking server on 127.0.0.1 for the length of a sweep.

Concurrent trials writing one SQLite file directly can hit "database is locked"; every trial
speaks HTTP to one server instead. That server answers one request at a time (one gunicorn sync
worker, one thread), so it holds one SQLite connection at a time. MLflow's default uvicorn server
runs each request in a pool of threads, each with its own connection; two of them can meet on the
file's lock, and one gets "database is locked" at once (SQLite returns it without waiting where
waiting could deadlock). MLflow's client retries that, so nothing was lost, but the lock was there:
CI saw it 4 times in 8,000 metric writes on a loaded machine.
"""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from trainables.errors import UserError


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# No MLflow 3 job runner (a huey consumer and its runner: two more processes, ~470 MB, seconds of
# start-up, 28 of the outage test's 83 CPU seconds): it serves GenAI jobs (scorers, issue
# detection), and this project submits none. For every server this project starts.
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

# One sync worker, one thread: requests are served in turn (see the module's docstring). No
# worker timeout: a long search on a big store is not a hung worker, and a killed worker would
# drop the requests queued behind it. At the end, 5 s for the request in hand. No control socket:
# gunicorn 26 makes one at one path per user (~/.gunicorn/gunicorn.ctl), which two sweeps would share.
GUNICORN_OPTS = "--threads 1 --timeout 0 --graceful-timeout 5 --no-control-socket"


@contextmanager
def local_server(backend_uri, artifact_root, log_path, timeout_s=300):
    """Serve ``backend_uri`` on 127.0.0.1; yields the server's http URI. A loaded machine can take
    minutes to start it; a server that exits fails at once."""
    with starting_server(backend_uri, artifact_root, log_path, timeout_s) as wait:
        yield wait()


@contextmanager
def starting_server(backend_uri, artifact_root, log_path, timeout_s=300):
    """Start serving ``backend_uri`` and yield at once a function that waits until the server
    answers and returns its http URI: the caller does other work while the server imports
    (about 10 s of MLflow imports on this machine). The server stops when the block ends."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
           "--default-artifact-root", artifact_root, "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--gunicorn-opts", GUNICORN_OPTS]
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **NO_JOB_RUNNER}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
    uri = f"http://127.0.0.1:{port}"

    def wait():
        wait_healthy(uri, proc, timeout_s, log_path)
        return uri

    try:
        yield wait
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _die_with_parent():
    """Linux: the server gets SIGTERM when the sweep driver dies, even by SIGKILL."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_healthy(uri, proc, timeout_s, log_path):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise UserError(f"mlflow_uri: the local MLflow server exited at start (code {proc.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise UserError(f"mlflow_uri: the local MLflow server did not answer within {timeout_s}s; see {log_path}")
