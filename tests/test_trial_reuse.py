"""Trial processes reused from one trial to the next (Tune's ``reuse_actors``, for in-trial
sweeps): a reused process trains the same curve as a fresh one, and a trial whose reused process
is killed, then whose sweep driver is killed, resumes from its checkpoint with every step logged
once."""
import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import run_cli
from mlflow import MlflowClient

pytestmark = pytest.mark.slow   # starts Ray, trains, serves MLflow or drives a browser

# Three trials that differ only in when they checkpoint: the same losses, step for step. Two run
# at once (1 CPU each); the third runs in the process of whichever finished first.
SPACE = "params:\n  checkpoint_every: {dist: grid, values: [150, 250, 500]}\n"
STEPS = 1000
SETTINGS = ["--set", f"max_steps={STEPS}", "--set", "log_every=10", "--set", "eval_every=0",
            "--set", "dataset_size=2048", "--set", "sample_every=100000"]


def _trials(client):
    exp = client.get_experiment_by_name("dcgan-lab")
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], "tags.kind = 'trial'")
    # A run is created before its params and tags are logged: only those its trial has tagged.
    tagged = [r for r in runs if {"perf_trial_start", "perf_trial_pid"} <= set(r.data.tags)]
    return sorted(tagged, key=lambda r: float(r.data.tags["perf_trial_start"]))


def _steps(client, run):
    return [m.step for m in client.get_metric_history(run.info.run_id, "loss_d")]


def _curve(client, run):
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in ("loss_d", "loss_g", "d_real", "d_fake", "d_fake_g")}


def _process_of(run):
    """(pid, start time) of the process the trial ran in last, from its perf tags."""
    return run.data.tags["perf_trial_pid"], run.data.tags["perf_trial_process_start"]


def _wait_for(proc, deadline, ready):
    """Poll ``ready()`` until it returns something, the sweep exits, or time runs out."""
    while time.time() < deadline and proc.poll() is None:
        found = ready()
        if found:
            return found
        time.sleep(0.3)
    return None


def test_reused_trial_processes_same_curves_through_a_killed_trial_and_a_killed_driver(tmp_path, figure):
    (tmp_path / "ckpt.yaml").write_text(SPACE)
    args = [sys.executable, "-m", "orchestrator.cli", "sweep", "--preset", "smoke", "--space", "ckpt.yaml", *SETTINGS]
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    client = MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    deadline = time.time() + 900

    def third_trial_past_its_checkpoint(in_process):
        """The third trial, once ``in_process(its process, the first two's)`` holds and it has
        logged past its first checkpoint (and is not near its end)."""
        def ready():
            if not (tmp_path / "mlflow.db").exists():
                return None
            trials = _trials(client)
            if len(trials) < 3:
                return None
            run, first_two = trials[2], {_process_of(t) for t in trials[:2]}
            if "checkpoint_every" not in run.data.params:   # created a moment ago, its params not written yet
                return None
            steps = _steps(client, run)
            if in_process(_process_of(run), first_two) and \
                    int(run.data.params["checkpoint_every"]) + 20 < max(steps, default=0) < STEPS - 40:
                return run, max(steps)
            return None
        return ready

    try:
        # Fault 1: the third trial runs in the first or second trial's process; kill that process
        # mid-run. Tune restarts the trial, in a new process, from its checkpoint.
        found = _wait_for(proc, deadline, third_trial_past_its_checkpoint(lambda p, first_two: p in first_two))
        assert found, "the third trial never ran past its checkpoint in a reused process"
        victim, killed_at = found
        pid, started = _process_of(victim)
        process = psutil.Process(int(pid))
        assert abs(process.create_time() - float(started)) < 0.01   # that process, not a new one with its pid
        process.kill()
        # Fault 2: kill the driver (and its Ray) once the restarted trial is past its checkpoint again.
        found = _wait_for(proc, deadline, third_trial_past_its_checkpoint(
            lambda p, first_two: p not in first_two and p != (pid, started)))
        assert found, "the restarted trial never ran past its checkpoint"
        _, driver_killed_at = found
    finally:
        with contextlib.suppress(ProcessLookupError):   # the driver with the local Ray it started
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = {t.info.run_id: _curve(client, t) for t in _trials(client) if t.data.tags.get("status") == "finished"}

    r = run_cli("sweep", "--preset", "smoke", "--space", "ckpt.yaml", *SETTINGS, "--resume", cwd=tmp_path,
                env={"MLFLOW_TRACKING_URI": ""}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    trials = _trials(client)
    assert len(trials) == 3 and all(t.data.tags["status"] == "finished" for t in trials)
    for t in trials:
        assert sorted(_steps(client, t)) == list(range(10, STEPS + 1, 10))   # every step once
        if t.info.run_id in finished:   # finished before the driver died: not run again
            assert _curve(client, t) == finished[t.info.run_id]
    curves = [_curve(client, t) for t in trials]
    assert curves[0] == curves[1] == curves[2]   # bit for bit, reused process or not, resumed or not
    figure(f"trial 3 ran in an earlier trial's process, killed at step {killed_at} (checkpoint every "
           f"{victim.data.params['checkpoint_every']}); restarted, then the driver killed at its step "
           f"{driver_killed_at}; after --resume: 3 trials finished, every step once, {len(finished)} finished "
           f"trial(s) not rerun, all 3 curves equal")
