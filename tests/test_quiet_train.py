"""Ray Train's placement-group cleaner (trainables/ray_fixes.py): a healthy `train` prints no
traceback from any process, and a run whose controller dies leaves no placement group behind.

Both tests give Ray a temp dir of their own (``RAY_TMPDIR``): Ray keeps the last ``ray start``'s
address in ``<temp dir>/ray/ray_current_cluster``, and Ray's State API in a worker reads it."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from conftest import ROOT, ray_node, stop_nodes, wait_for_nodes

pytestmark = pytest.mark.slow   # starts Ray, trains, serves MLflow or drives a browser

# Before the fix the cleaner's monitor thread died 44 s after the cleaner started (its first
# liveness check, 1 s in, waited 35 s on the GCS named by a stale address file): a run must
# train at least this long after its worker group starts to show it.
CLEANER_FAILED_AFTER_S = 45
# A controller is checked on every second; a loaded 2-core machine gets this much slack.
CLEANUP_BOUND_S = 30


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _ray_tmp():
    """A short temp dir: Ray's socket paths under it must stay within 107 characters."""
    return tempfile.mkdtemp(prefix="rayqt-", dir="/tmp")


def _start(args, env, cwd):
    """``dcgan-lab ARGS`` in its own session, its console (stdout and stderr) read line by line
    into ``lines`` as (seconds since start, line) by a thread."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    proc.lines, t0 = [], time.monotonic()

    def read():
        for line in proc.stdout:
            proc.lines.append((time.monotonic() - t0, line))

    proc.reader = threading.Thread(target=read, daemon=True)
    proc.reader.start()
    return proc


def _first(lines, text):
    return next((t for t, line in lines if text in line), None)


def test_a_healthy_train_prints_no_traceback(tmp_path, figure):
    """A `train` on its own local Ray, with a stale ``ray_current_cluster`` in Ray's temp dir (as
    a `ray start --block` ended by a signal leaves it: this suite's multi-node tests do): the run
    finishes and its console holds no traceback from any process. Before the fix the cleaner's
    monitor thread died with one ("Exception in thread PlacementGroupCleanerMonitor ... RpcError")."""
    ray_tmp = _ray_tmp()
    (stale_port,) = _free_ports(1)   # nothing listens there
    os.makedirs(os.path.join(ray_tmp, "ray"))
    with open(os.path.join(ray_tmp, "ray", "ray_current_cluster"), "w") as f:
        f.write(f"127.0.0.1:{stale_port}")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "MLFLOW_TRACKING_URI": ""}
    env.pop("RAY_ADDRESS", None)
    proc = _start(["train", "--preset", "quick", "--set", "max_steps=500", "--set", "eval_every=0",
                   "--set", "sample_every=250"], env, tmp_path)
    try:
        proc.wait(timeout=600)   # the whole test: 221-287 s measured here, the machine shared (load 3-30)
        proc.reader.join(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        out = "".join(line for _, line in proc.lines)
        (tmp_path / "console.txt").write_text(out)   # pytest keeps it, for a look after a failure
    assert proc.returncode == 0, out[-3000:]
    assert ": finished" in out, out[-3000:]
    for bad in ("Traceback", "Exception in thread"):
        # The message starts at the traceback (a summary line shows only the first line), then the
        # console before it.
        assert bad not in out, (f"{bad} in the console: {out[out.index(bad):][:2500]}\n"
                                f"--- before it:\n{out[:out.index(bad)][-1500:]}")
    started = _first(proc.lines, "Started training worker group")
    assert started is not None, out[-3000:]
    window = proc.lines[-1][0] - started
    assert window >= CLEANER_FAILED_AFTER_S, (
        f"the run trained {window:.0f} s after its worker group started, under the "
        f"{CLEANER_FAILED_AFTER_S} s the cleaner's first check took to fail: raise max_steps")
    figure(f"healthy train with a stale ray_current_cluster: 500 steps, its console open {window:.0f} s after "
           f"the worker group started ({proc.lines[-1][0]:.0f} s in all), no traceback")


# Run against the cluster: stop the driver (SIGSTOP: it keeps its connection, so its job lives, as
# a notebook's or a sweep's would), SIGKILL the Train controller, then time until no placement
# group is left and every CPU is free again. A driver that exits ends its job, and Ray then removes
# the job's placement groups itself (2 s here), which would hide whether the cleaner did.
WATCH = r'''
import json, os, signal, sys, time
import ray

address, driver, bound = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ray.init(address=address, log_to_driver=False)

def live_groups():
    return {k: v["state"] for k, v in ray.util.placement_group_table().items() if v["state"] != "REMOVED"}

controllers = [a for a in ray._private.state.actors().values()
               if a["ActorClassName"] == "TrainController" and a["State"] == "ALIVE"]
before, total = live_groups(), ray.cluster_resources().get("CPU", 0)
os.kill(driver, signal.SIGSTOP)
os.kill(controllers[0]["Pid"], signal.SIGKILL)
killed, seconds = time.monotonic(), None
while time.monotonic() - killed < bound:
    left, free = live_groups(), ray.available_resources().get("CPU", 0)
    if not left and free >= total:
        seconds = time.monotonic() - killed
        break
    time.sleep(0.2)
print(json.dumps({"controllers": len(controllers), "before": before, "seconds": seconds, "left": left,
                  "free": free, "total": total}))
'''


def test_a_killed_controller_leaves_no_placement_group(tmp_path, figure):
    """On a long-lived cluster (`ray start --head`, no dashboard, token auth, RAY_ADDRESS set), a
    `train` whose Train controller is killed mid-run while its driver lives on: the run's
    placement group is removed and the cluster's CPUs are free again within CLEANUP_BOUND_S.
    Before the fix the cleaner could not tell the controller had died (the State API it asked
    needs a dashboard) and the group stayed as long as the driver did."""
    ray_tmp = _ray_tmp()
    port, client_port, agent_port = _free_ports(3)
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "token", "MLFLOW_TRACKING_URI": ""}
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    subprocess.run([ray_bin, "get-auth-token", "--generate"], capture_output=True, env=env, timeout=60, check=True)
    head = ray_node(env, "--head", f"--port={port}", "--include-dashboard=false",
                    f"--ray-client-server-port={client_port}", f"--dashboard-agent-listen-port={agent_port}")
    driver = None
    try:
        wait_for_nodes(env, address, 1)
        driver = _start(["train", "--preset", "quick", "--set", "max_steps=5000", "--set", "eval_every=0"],
                        {**env, "RAY_ADDRESS": address}, tmp_path)
        deadline = time.monotonic() + 400
        while _first(driver.lines, "step ") is None and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _first(driver.lines, "step ") is not None, "".join(line for _, line in driver.lines)[-3000:]
        r = subprocess.run([sys.executable, "-c", WATCH, address, str(driver.pid), str(CLEANUP_BOUND_S)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    finally:
        if driver is not None and driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=60)
        stop_nodes(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["controllers"] == 1 and list(seen["before"].values()) == ["CREATED"], seen
    assert seen["seconds"] is not None, f"after {CLEANUP_BOUND_S} s: groups {seen['left']}, " \
                                        f"{seen['free']:g} of {seen['total']:g} CPUs free"
    figure(f"controller killed mid-run, driver alive: placement group removed and {seen['total']:g} of "
           f"{seen['total']:g} CPUs free after {seen['seconds']:.1f} s")
