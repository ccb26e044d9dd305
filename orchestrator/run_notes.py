"""What a sweep's parent run says about itself in the MLflow UI: its description (MLflow's run
note, Markdown) and the numbers of its report as metrics a runs table can sort on. A trial's own
one-line description is written where it ends (``trainables/run_note.py``).

The parent's description is the sweep's outcome, its claims table and where the full report is; its
metrics are ``trials_finished``, ``trials_diverged``, ``trials_failed``, ``best_fd_final`` and for each
claim ``claim_<claim>_effect``, ``_lo``, ``_hi`` (its primary effect and 95 % CI) and the ratio
alternative / paper with its bounds where the effect is on log scale.
"""
import math
import re
import time

from trainables import store
from trainables.run_note import NOTE_TAG, SWEEP_TAG

NOTE_LIMIT = 8000                    # MLflow's limit on a tag's value
LOOKS_ARTIFACT = "sequential/looks.md"   # a sequential sweep's look history on its parent run
REPORT_HTML = "report/report.html"   # the report, in the parent run's artifacts


def start_sweep(uri, parent):
    """Tag the parent with its own id, as its trials are: one filter lists the whole sweep."""
    store.client(uri).set_tag(parent, SWEEP_TAG, parent)


def describe_sweep(uri, parent, result, looks=None):
    """At the end of a sweep: the parent's description and sortable metrics, from its trials and
    the report ``result`` (None when there was no report); a sequential sweep's look history
    (Markdown) goes after the claims, as far as MLflow's limit on a description allows."""
    from mlflow.entities import Metric, RunTag

    c = store.client(uri)
    run = c.get_run(parent)
    trials = c.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'",
                           max_results=10000)
    outcome = sweep_outcome(trials)
    rows = (result or {}).get("claims_summary", [])
    metrics = {**{k: v for k, v in outcome.items() if k != "best_run"}, **claim_metrics(rows)}
    note = sweep_note(run.info.run_name, run.info.experiment_id, parent, outcome, rows)
    if looks:
        extra = f"\n\n**Sequential looks** (the verdicts of record; {LOOKS_ARTIFACT} in full):\n\n{looks}"
        note = note + extra if len(note) + len(extra) <= NOTE_LIMIT else note + f"\n\nLook history: {LOOKS_ARTIFACT}."
    now = int(time.time() * 1000)
    c.log_batch(parent, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(v)],
                tags=[RunTag(NOTE_TAG, note)] + [RunTag(f"claim_{claim_key(r)}_verdict",
                                                        str(r.get("verdict")) + (", fragile" if r.get("fragile") else ""))
                                                 for r in rows])


def sweep_outcome(trials):
    """How many trials finished, diverged and failed, and the best final FD among them."""
    status = [t.data.tags.get("status") or ("failed" if t.info.status == "FAILED" else "running") for t in trials]
    fds = [(t.data.metrics["fd_final"], t) for t in trials if math.isfinite(t.data.metrics.get("fd_final", math.nan))]
    best = min(fds, key=lambda x: x[0]) if fds else (math.nan, None)
    return {"trials": len(trials), "trials_finished": status.count("finished"),
            "trials_diverged": status.count("diverged"), "trials_failed": status.count("failed"),
            "best_fd_final": best[0], "best_run": best[1].info.run_name if best[1] else None}


def claim_key(row):
    """The claim's name in metric keys: its key, and its scale when the report tests it per scale."""
    name = row["claim"] + (f"_{row['stratum']}" if row.get("stratum") else "")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def claim_metrics(rows):
    out = {}
    for r in rows:
        for field in ("effect", "lo", "hi", "ratio", "ratio_lo", "ratio_hi"):
            value = r.get(field)
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[f"claim_{claim_key(r)}_{field}"] = value
    return out


def sweep_note(name, exp_id, parent, outcome, rows):
    """The parent's description, cut to MLflow's limit by dropping claim rows (the report has all)."""
    best = (f"best final FD {outcome['best_fd_final']:.4g} ({outcome['best_run']})"
            if outcome["best_run"] else "no trial has a final FD")
    head = (f"**Sweep {name}**: {outcome['trials']} trials: {outcome['trials_finished']} finished, "
            f"{outcome['trials_diverged']} diverged, {outcome['trials_failed']} failed; {best}.")
    link = f"#/experiments/{exp_id}/runs/{parent}/artifacts/{REPORT_HTML}"
    tail = (f"The full report (tables, curves, claims, sample grids): [{REPORT_HTML}]({link}) in this "
            "run's artifacts.")
    lines = [_claim_line(r) for r in rows]
    while True:
        table = ("| claim | paper vs alternative | primary metric | effect [95 % CI] | ratio alt/paper [95 % CI] | "
                 "seeds × cells | test | verdict |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(lines)
                 if lines else "No claim verdicts in the report.")
        cut = len(rows) - len(lines)
        more = f"\n\n{cut} more claims in the report." if cut else ""
        note = f"{head}\n\n{table}{more}\n\n{tail}"
        if len(note) <= NOTE_LIMIT or not lines:
            return note[:NOTE_LIMIT]
        lines.pop()


def _claim_line(r):
    name = r["claim"] + (f" [{r['stratum']}]" if r.get("stratum") else "")
    cells = [name, f"{r.get('paper')} vs {r.get('alt')}", str(r.get("metric", "")),
             _interval(r.get("effect"), r.get("lo"), r.get("hi")),
             _interval(r.get("ratio"), r.get("ratio_lo"), r.get("ratio_hi")),
             f"{r.get('n_seeds', '–')} × {r.get('n_cells', '–')}", str(r.get("test", "")),
             f"**{r.get('verdict')}{', fragile' if r.get('fragile') else ''}**"]
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def _interval(x, lo, hi):
    def f(v):
        return f"{v:.3g}" if isinstance(v, (int, float)) and math.isfinite(v) else "–"
    return "–" if f(x) == "–" else f"{f(x)} [{f(lo)}, {f(hi)}]"
