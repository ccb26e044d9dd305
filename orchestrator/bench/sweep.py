"""The sweep part of ``dcgan-lab bench``: a sweep (the ``quick`` preset unless told) run as a user
runs it (a fresh ``dcgan-lab sweep`` process in a scratch directory; the machine's cache as it is), its
wall time broken down from the timings the driver and the training loop log (``perf_*`` tags and
metrics), and its memory sampled over the whole process tree (driver, Ray, MLflow server, trials,
workers).
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOOP_PHASES = ("setup", "data", "step", "log", "eval", "checkpoint", "final")


def sweep_efficiency(preset="quick", space="smoke", seeds=2, max_steps=600, worker_group=False, slots=2):
    """Run the sweep, then read where its time went; ``slots`` trials run at once (2 CPUs, 1 each).
    ``worker_group``: the same trials, each started as a TorchTrainer with its own worker group
    (what every trial did before single-worker trials trained in the trial's process)."""
    with tempfile.TemporaryDirectory() as tmp:
        if worker_group:  # a space that searches the worker layout keeps trials on TorchTrainer
            import yaml

            from search_spaces.loader import load_space

            params = {k: {"dist": "grid", "values": list(v.values)} for k, v in load_space(space).params.items()}
            params["cpus_per_worker"] = {"dist": "grid", "values": [1]}
            space = str(Path(tmp) / "worker-group.yaml")
            Path(space).write_text(yaml.safe_dump({"description": "bench: trials on a worker group", "params": params}))
        args = [sys.executable, "-m", "orchestrator.cli", "sweep", "--preset", preset, "--space", space,
                "--seeds", str(seeds), "--set", f"max_steps={max_steps}"]
        log = Path(tmp) / "sweep.log"
        with open(log, "wb") as out:
            t0 = time.time()
            proc = subprocess.Popen(args, cwd=tmp, env={**os.environ, "MLFLOW_TRACKING_URI": ""},
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            memory = sample_memory(proc)
            wall = time.time() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"the measured sweep failed:\n{log.read_text()[-3000:]}")
        result = breakdown(f"sqlite:///{tmp}/mlflow.db", t0, t0 + wall, slots)
    return {"command": " ".join(["dcgan-lab", *args[3:]]), "max_steps": max_steps, "worker_group": worker_group,
            "load": os.getloadavg(), **result, "memory": memory}


def breakdown(uri, t0, t_end, slots):
    """Seconds by phase, summed over trials, against ``slots`` x wall; trial start-up per trial."""
    from mlflow import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("dcgan-lab").experiment_id
    runs = c.search_runs([exp])
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    tags = parent.data.tags
    tuner_start, tuner_end = float(tags["perf_tuner_start"]), float(tags["perf_tuner_end"])

    # Driver: CLI start and imports, then its phases (data cache, Ray, evaluator, MLflow server,
    # parent run) before Tune; the summary and report after it.
    from orchestrator.ray_run import DRIVER_PHASES

    driver = {"driver_before_tune": tuner_start - t0, "cli_start": float(tags["perf_driver_start"]) - t0,
              **{p: float(tags[f"perf_driver_{p}_s"]) for p in DRIVER_PHASES},
              "ray_init_call": float(tags["perf_ray_init_s"]), "driver_after_tune": t_end - tuner_end}
    total = dict.fromkeys(("trial_startup", "trial_teardown", *LOOP_PHASES[1:]), 0.0)
    per_trial = []
    # Tune launches a trial when a slot frees: the first ``slots`` at the tuner's start, the k-th
    # next when the (k - slots)-th trial ends. Its process may be older (Ray keeps idle workers).
    trials.sort(key=lambda r: float(r.data.tags["perf_trial_start"]))
    slot_free = [tuner_start] * slots + sorted(r.info.end_time / 1000 for r in trials)
    processes = set()   # the trial processes seen so far: a trial in one of them was reused
    for k, r in enumerate(trials):
        m, t = r.data.metrics, r.data.tags
        process = (t["perf_trial_pid"], t["perf_trial_process_start"])   # start times alone tie (10 ms ticks)
        reused = process in processes
        processes.add(process)
        process_start = max(float(t["perf_trial_process_start"]), slot_free[k])
        loop_start = float(t["perf_loop_start"])
        first_step = loop_start + m["perf_setup_s"]
        loop_end = loop_start + sum(m[f"perf_{p}_s"] for p in LOOP_PHASES)
        startup = {"launch_to_driver": float(t["perf_trial_start"]) - process_start,
                   "driver_to_loop": loop_start - float(t["perf_trial_start"]),
                   "loop_setup": m["perf_setup_s"]}
        per_trial.append({"startup_s": first_step - process_start, "reused_process": reused,
                          **{f"{k}_s": v for k, v in startup.items()},
                          "teardown_s": r.info.end_time / 1000 - loop_end,
                          **{f"{p}_s": m[f"perf_{p}_s"] for p in LOOP_PHASES[1:]}})
        total["trial_startup"] += first_step - process_start
        total["trial_teardown"] += r.info.end_time / 1000 - loop_end
        for p in LOOP_PHASES[1:]:
            total[p] += m[f"perf_{p}_s"]
    capacity = slots * (t_end - t0)
    total["idle"] = capacity - sum(total.values())
    # The tail: once no trial is left to launch, each slot whose trial has ended stays empty until
    # the last trial ends. It is part of "idle"; with trials of unequal length (a diverged trial
    # stops early) no order of the same trials avoids all of it.
    ends = sorted(r.info.end_time / 1000 for r in trials)
    tail = sum(ends[-1] - e for e in ends[-slots:-1])
    return {"trials": len(trials), "slots": slots, "wall_s": t_end - t0, "driver_s": driver,
            "slot_seconds": total, "fraction": {k: v / capacity for k, v in total.items()},
            "step_fraction": total["step"] / capacity, "tail_idle_s": tail,
            "step_fraction_without_tail": total["step"] / (capacity - tail),
            "trial_startup_s_mean": _mean(x["startup_s"] for x in per_trial),
            "trial_startup_s_after_first": _mean(x["startup_s"] for x in per_trial[slots:]),
            "per_trial": per_trial}


def _mean(values):
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def sample_memory(proc, every_s=1.0, pss_every=5):
    """Peak RSS of the process tree (summed: shared pages count once per process) and of each
    role (the largest process of that role), sampled every ``every_s`` until ``proc`` exits; the
    tree's PSS (shared pages split between their processes) every ``pss_every``-th sample."""
    import psutil

    root = psutil.Process(proc.pid)
    peak_total, peak_pss, peak_by_role, n = 0, 0, {}, 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        total, pss, n = 0, 0, n + 1
        for p in procs:
            try:
                rss, role = p.memory_info().rss, _role(p.cmdline())
                pss += p.memory_full_info().pss if n % pss_every == 0 else 0
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            total += rss
            peak_by_role[role] = max(peak_by_role.get(role, 0), rss)
        peak_total, peak_pss = max(peak_total, total), max(peak_pss, pss)
        time.sleep(every_s)
    return {"peak_total_mb": peak_total / 2**20, "peak_total_pss_mb": peak_pss / 2**20,
            "peak_by_role_mb": {k: v / 2**20 for k, v in sorted(peak_by_role.items(), key=lambda kv: -kv[1])}}


def _role(cmdline):
    """``ray::RayTrainWorker``, ``raylet``, ``orchestrator.cli``, ``mlflow``...: what a process is."""
    if not cmdline:
        return "?"
    if cmdline[0].startswith("ray::"):
        return cmdline[0].split()[0].split(".")[0]
    for i, arg in enumerate(cmdline):
        if arg == "-m" and i + 1 < len(cmdline):
            return cmdline[i + 1]
        if arg.endswith(".py") or "mlflow" in arg or "uvicorn" in arg:
            return Path(arg).name
    return Path(cmdline[0]).name


def print_sweep(s):
    how = "each trial on its own Train worker group" if s["worker_group"] else "as configured"
    print(f"\nsweep ({how}): {s['command']} ({s['trials']} trials, {s['slots']} at once), wall {s['wall_s']:.0f} s, "
          f"load average {s['load'][0]:.1f} at the end")
    d = s["driver_s"]
    from orchestrator.ray_run import DRIVER_PHASES

    phases = ", ".join(f"{p} {d[p]:.1f}" for p in DRIVER_PHASES)
    print(f"  driver: {d['driver_before_tune']:.1f} s before Tune: CLI start and imports {d['cli_start']:.1f}, "
          f"{phases}; {d['driver_after_tune']:.1f} s after")
    print(f"  {'slot time':<16}{'s':>8}{'share':>8}")
    for k, v in s["slot_seconds"].items():
        print(f"  {k:<16}{v:>8.1f}{s['fraction'][k]:>8.1%}")
    print(f"  of idle, the tail (slots empty while the last trials finish): {s['tail_idle_s']:.1f} s; steps "
          f"{s['step_fraction_without_tail']:.1%} of the slot time without it")
    print(f"  trial start-up per trial (launch -> first step): {s['trial_startup_s_mean']:.1f} s; after the first "
          f"{s['slots']}: {s['trial_startup_s_after_first']:.1f} s")
    for i, t in enumerate(s["per_trial"]):
        print(f"    trial {i} ({'reused' if t['reused_process'] else 'new'} process): launch->driver "
              f"{t['launch_to_driver_s']:.1f} s, driver->loop "
              f"{t['driver_to_loop_s']:.1f} s, loop setup {t['loop_setup_s']:.1f} s, teardown {t['teardown_s']:.1f} s")
    m = s["memory"]
    print(f"  peak memory, whole sweep: RSS summed {m['peak_total_mb']:.0f} MB, PSS {m['peak_total_pss_mb']:.0f} MB; "
          f"RSS by process role (largest process):")
    for role, mb in list(m["peak_by_role_mb"].items())[:8]:
        print(f"    {role:<32}{mb:>8.0f} MB")
