"""The claims read at earlier steps of the same runs: at 1/4, 1/2 and all of their horizon.

Each run's record is rebuilt as it stood at the step, from the histories the record carries, and
the claims are evaluated on those records by ``report.claims.evaluate_claims``: the same test,
censoring and plateau rule at every step, no new statistics. The rows are the same runs read
three times, not three replications: they describe how an effect develops with training, and the
full-horizon verdict stays the verdict of record.
"""
import math

from orchestrator.report.claims import evaluate_claims, summary_row
from orchestrator.report.data import steps_to

FRACTIONS = (("1/4", 0.25), ("1/2", 0.5), ("all", 1.0))


def run_end(record):
    """The step the run stopped at: its final step, else its last logged FD's step (NaN if neither)."""
    if math.isfinite(record.get("final_step", math.nan)):
        return float(record["final_step"])
    fd = record["history"].get(record.get("fd_key"), [])
    return float(fd[-1][0]) if fd else math.nan


def horizon(records):
    """The runs' horizon: the largest step any of them stopped at (NaN when none is known)."""
    return max((e for e in map(run_end, records) if math.isfinite(e)), default=math.nan)


def diverged_at(record):
    """The step a diverged run was declared so: ``diverged_step``, or its final step on runs logged
    before that metric existed; None for a run that did not diverge."""
    if record["values"].get("diverged") != 1.0:
        return None
    step = record["values"].get("diverged_step", math.nan)
    return float(step) if math.isfinite(step) else run_end(record)


def at_step(record, step, threshold):
    """The record as it stood at ``step``.

    A run that had stopped by then (finished, diverged or failed) is as it ended. A run still
    training then is read from its histories up to the step: fd_final is the FD of its last
    evaluation at or before it (what fd_final is at the end: the last evaluation), fd_best the best
    of those, steps_to_fd against ``threshold``; it counts as diverged only if it had been declared
    so by then. Metrics measured over a whole run's windows (oscillation, volatility, mode collapse,
    skew) are not in the histories: NaN, so a claim on one of them is not tested at that step."""
    if not run_end(record) > step:   # stopped by then, or nothing says it went on
        return record
    history = {k: [(s, v) for s, v in h if s <= step] for k, h in record["history"].items()}
    fd_history = history.get(record.get("fd_key"), [])
    fd = [v for _, v in fd_history if math.isfinite(v)]
    values = {k: math.nan for k in record["values"]}
    div = diverged_at(record)
    if div is not None and div <= step:   # declared diverged by then, but logged on past it (older runs)
        values["diverged"], status = 1.0, "diverged"
    else:
        values.update(fd_final=fd[-1] if fd else math.nan, fd_best=min(fd) if fd else math.nan, diverged=0.0)
        status = "finished"           # training normally at this step, as a run stopped there would be
    values["steps_to_fd"] = steps_to(fd_history, threshold)
    return {**record, "levels": dict(record["levels"]), "values": values, "history": history, "status": status,
            "final_step": float(step)}


def horizon_rows(claims, records, factors, paper_levels, label, threshold, stratum=""):
    """Each claim's summary row (``report.claims.summary_row``) at every fraction of the records'
    horizon, claim by claim, with ``fraction``, ``step``, the arms' seeds, the runs censored as diverged at that step
    and the paper cell's plateau added. The arguments are ``evaluate_claims``'s, and the report's
    FD threshold; [] when no run says where it stopped."""
    full = horizon(records)
    if not math.isfinite(full):
        return []
    rows = []
    for name, fraction in FRACTIONS:
        step = int(fraction * full)
        results, _ = evaluate_claims(claims, [at_step(r, step, threshold) for r in records], factors,
                                     paper_levels, label)
        for res in results:
            p = res["primary"]
            rows.append({**summary_row(res, stratum), "fraction": name, "step": step, "n_paper": p["n_paper"],
                         "n_alt": p["n_alt"], "censored": p["censored"], "plateau": plateau_state(res["plateau"]),
                         "plateau_alt": plateau_state(res["plateau_alt"])})
    order = [c.key for c in claims]
    return sorted(rows, key=lambda r: order.index(r["claim"]))   # stable: each claim's steps in order


def plateau_state(pl):
    if not pl["testable"]:
        return "not testable"
    return "flat" if pl["flat"] else "not shown flat"
