"""``make test``: the whole suite in two phases, each using both cores of a 2-core machine.

1. The fast tier (``-m "not slow"``: no Ray, no server, no browser) on two pytest-xdist workers,
   a file to each (``--dist loadfile``: module fixtures built once, not once per worker).
2. The slow tier in two lanes, two plain pytest processes side by side, each running its files
   one test at a time. Slow tests spend most of their time waiting on Ray start-ups, trial
   start-ups and the clock (the tier used 42 % of one core's CPU time over its wall time, run
   alone), so two lanes overlap the waits. Lane A is the files named below; lane B is every
   other test file, so a new file always runs. Each lane's output is printed whole when both end,
   then every phase's FAILED and ERROR lines once more.

Exit status: 0 when every phase passed, else 1 (pytest's own code is printed per lane).
"""
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
# About half of the slow tier's time (per-file seconds, serial, on this 2-core machine): sweeps
# 335, training 306, bench 54, browser 49, latent 26, security 12; lane B holds concurrency 274,
# faults 270, gpu_scale 91, trial_reuse 88, evaluators 48, divergence 36, stability 29, ...
LANE_A = ("test_sweep.py", "test_training.py", "test_bench.py", "test_browser.py", "test_latent.py",
          "test_security.py")


def _pytest(*args):
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


def lanes():
    files = sorted(p.name for p in TESTS.glob("test_*.py"))
    missing = [f for f in LANE_A if f not in files]
    if missing:
        raise SystemExit(f"tests/lanes.py: LANE_A names files that do not exist: {', '.join(missing)}")
    return [f for f in files if f in LANE_A], [f for f in files if f not in LANE_A]


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
    for name, files in zip("AB", lanes()):
        log = open(ROOT / f".pytest-lane-{name}.log", "w")
        proc = subprocess.Popen(_pytest("-m", "slow", *[f"tests/{f}" for f in files]), cwd=ROOT,
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
          f"{time.monotonic() - started:.0f} s; fast tier exit {fast}, lane A exit {codes['A']}, "
          f"lane B exit {codes['B']}", flush=True)
    # Every phase's failures once more, last: a CI log cut to its tail still names them all.
    failed = [line for log in (fast_log, *(ROOT / f".pytest-lane-{n}.log" for n in "AB"))
              for line in log.read_text().splitlines() if line.startswith(("FAILED ", "ERROR "))]
    for line in failed:
        print(f"[make test] {line[:300]}", flush=True)
    # pytest exits 5 when a lane selects no test: not a failure of the suite.
    return 0 if fast == 0 and all(c in (0, 5) for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
