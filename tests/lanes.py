"""``make test``: the whole suite in two phases, each using both cores of a 2-core machine.

1. The fast tier (``-m "not slow"``: no Ray, no server, no browser) on two pytest-xdist workers,
   a file to each (``--dist loadfile``: module fixtures built once, not once per worker).
2. The slow tier in ``LANES`` lanes, plain pytest processes side by side, each running its files
   one test at a time. Slow tests spend most of their time waiting on Ray start-ups, trial
   start-ups and the clock (with two lanes the tier used 0.77 of the machine's 2 cores over its
   wall time), so more lanes than cores overlap the waits. Files go to lanes longest first, each
   to the lane with the fewest seconds so far, by the seconds measured below; a file not in the
   table counts ``UNMEASURED_S`` and still runs (each lane prints every test's seconds, to refresh
   the table from). Each lane's output is printed whole when all end,
   then every phase's FAILED and ERROR lines once more.

Exit status: 0 when every phase passed, else 1 (pytest's own code is printed per lane).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
LANES = int(os.environ.get("DCGAN_LAB_TEST_LANES", "3"))
# Each file's slow-tier seconds (setup + call, from the lanes' --durations), measured in one
# `make test` with two lanes on this 2-core AMD EPYC machine (2026-12-04).
FILE_SECONDS = {
    "test_faults.py": 324, "test_sweep.py": 303, "test_training.py": 285, "test_concurrency.py": 222,
    "test_bench.py": 214, "test_trial_reuse.py": 166, "test_gpu_scale.py": 68, "test_evaluators.py": 47,
    "test_ray_start.py": 43, "test_browser.py": 31, "test_latent.py": 31, "test_divergence_ddp.py": 30,
    "test_stability.py": 25, "test_security.py": 11, "test_sweep_sequential.py": 240,
    "test_fashion_training.py": 200,   # measured alone on a loaded machine (load 8-20), 2026-12-07
    "test_quiet_train.py": 358,   # measured alone on a loaded machine (load 3-7), 2026-12-07: 221 s + 136 s
    "test_search_study.py": 300,   # measured alone on a loaded machine, 2026-12-07: 199 s (load 7), 285-397 s (load 10-19)
}
UNMEASURED_S = 5   # most files not in the table hold no slow test


def _pytest(*args):
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


def lanes(n=LANES):
    """The test files in ``n`` lists of about equal measured seconds (every file in exactly one)."""
    files = sorted(p.name for p in TESTS.glob("test_*.py"))
    gone = sorted(set(FILE_SECONDS) - set(files))
    if gone:
        raise SystemExit(f"tests/lanes.py: FILE_SECONDS names files that do not exist: {', '.join(gone)}")
    out, load = [[] for _ in range(n)], [0] * n
    for f in sorted(files, key=lambda f: (-FILE_SECONDS.get(f, UNMEASURED_S), f)):
        i = load.index(min(load))
        out[i].append(f)
        load[i] += FILE_SECONDS.get(f, UNMEASURED_S)
    return [sorted(lane) for lane in out]


def main():
    started = time.monotonic()
    fast_log = ROOT / ".pytest-fast.log"
    with open(fast_log, "w") as log:   # printed as it runs and kept for the summary at the end
        proc = subprocess.Popen(_pytest("-n", "2", "--dist", "loadfile", "-m", "not slow", "tests"), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        fast = proc.wait()
    print(f"\n[make test] fast tier: pytest exit {fast}, {time.monotonic() - started:.0f} s", flush=True)

    slow_start = time.monotonic()
    procs = []
    names = "ABCDEFGH"[:LANES]
    for name, files in zip(names, lanes()):
        log = open(ROOT / f".pytest-lane-{name}.log", "w")
        proc = subprocess.Popen(_pytest("-m", "slow", "--durations=0", *[f"tests/{f}" for f in files]), cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
        procs.append((name, files, proc, log))
    codes = {}
    for name, _files, proc, log in procs:
        codes[name] = proc.wait()
        log.close()
    for name, files, _proc, log in procs:
        print(f"\n{'=' * 30} slow lane {name}: {', '.join(files)} {'=' * 30}", flush=True)
        sys.stdout.write(Path(log.name).read_text())
        print(f"[make test] slow lane {name}: pytest exit {codes[name]}", flush=True)
    print(f"\n[make test] slow tier: {time.monotonic() - slow_start:.0f} s; whole suite: "
          f"{time.monotonic() - started:.0f} s; fast tier exit {fast}, "
          + ", ".join(f"lane {n} exit {c}" for n, c in codes.items()), flush=True)
    # Every phase's failures once more, last: a CI log cut to its tail still names them all.
    failed = [line for log in (fast_log, *(ROOT / f".pytest-lane-{n}.log" for n in names))
              for line in log.read_text().splitlines() if line.startswith(("FAILED ", "ERROR "))]
    for line in failed:
        print(f"[make test] {line[:300]}", flush=True)
    # pytest exits 5 when a lane selects no test: not a failure of the suite.
    return 0 if fast == 0 and all(c in (0, 5) for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
