"""Wall time of a step function in this process, shared by the bench (``orchestrator/bench/``) and
the sweep's cost estimate (``orchestrator/sweep/estimate.py``)."""
import time


def timed_loop(fn, sync, warmup=3):
    """``run(n)``: seconds for the next ``n`` steps ``fn(i)`` (``sync`` waits for the last one's
    result), after ``warmup`` untimed steps run here."""
    count = 0

    def run(n):
        nonlocal count
        t = time.perf_counter()
        for _ in range(n):
            out = fn(count)
            count += 1
        sync(out)
        return time.perf_counter() - t

    run(warmup)
    return run
