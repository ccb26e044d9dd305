"""The search study's trials table: one row per trial run nested under the study's parent run, read
from MLflow alone (columns: /tmp/team/search-table.md, the docstring of ``trials_table``).

Each trial run carries the tags the study gave its Tune experiment: ``search_stage`` (1 or 2),
``search_sampler`` and ``search_seed`` (the search it belongs to)."""
import math

from orchestrator.search.settings import RUN_OBJECTIVES
from trainables import store

STAGE_TAG, SAMPLER_TAG, SEARCH_SEED_TAG = "search_stage", "search_sampler", "search_seed"
NO_FD = "no_fd"   # status of a run that finished without a final FD (its final metrics were lost)
ORPHAN = "search_orphan"   # a trial run its restored Tune experiment does not hold (protocol.set_aside_orphans)
PAPER = {"lr": 2e-4, "beta1": 0.5, "bn_placement": "paper"}   # the config's defaults (trainables/config.py)
END_METRICS = tuple(k for k in RUN_OBJECTIVES if k != "fd_final")   # a run's end-of-run metrics, as columns
COLUMNS = ("stage", "sampler", "search_seed", "trial", "run_id", "config", "lr", "beta1", "bn_placement", "seed",
           "steps", "fd", "log_fd", "diverged", "is_paper", "status", "horizon", "fd_last_before_divergence",
           *END_METRICS)


def config_id(lr, beta1, bn_placement):
    """A configuration's stable name: the same string in the table, the report and stage 2's plan."""
    return f"lr={float(lr):.2e},beta1={float(beta1):.3f},bn={bn_placement}"


def is_paper(lr, beta1, bn_placement):
    return math.isclose(float(lr), PAPER["lr"], rel_tol=1e-9) and math.isclose(float(beta1), PAPER["beta1"]) \
        and bn_placement == PAPER["bn_placement"]


def study_runs(uri, parent):
    """The finished, diverged or failed trial runs under ``parent`` (unfinished and orphaned ones left
    out), and how many are still running."""
    from orchestrator.report.data import UNFINISHED

    c = store.client(uri)
    exp = c.get_run(parent).info.experiment_id
    runs, token = [], None
    while True:
        page = c.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'", max_results=1000,
                             page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    runs = [r for r in runs if ORPHAN not in r.data.tags]
    done = [r for r in runs if r.info.status not in UNFINISHED]
    return done, len(runs) - len(done)


def trials_table(runs):
    """The DataFrame of the study's trials, one row per run, in (stage, sampler, search seed, trial) order.

    ``trial`` is the order of completion (MLflow end time) within its search; ``fd`` the final FD at
    the run's horizon, NaN for a diverged or failed run; ``steps`` the step it stopped at."""
    import pandas as pd

    from orchestrator.report.data import final_values

    rows = []
    for r in runs:
        p, t = r.data.params, r.data.tags
        values = final_values(r)
        status = t.get("status") or ("failed" if r.info.status == "FAILED" else "unknown")
        diverged = status == "diverged" or values["diverged"] == 1.0
        fd = values["fd_final"] if status == "finished" and not diverged else math.nan
        if status == "finished" and not math.isfinite(fd):
            status = NO_FD
        rows.append({"stage": int(t.get(STAGE_TAG, 0)), "sampler": t.get(SAMPLER_TAG, ""),
                     "search_seed": int(t.get(SEARCH_SEED_TAG, -1)), "end": r.info.end_time or 0,
                     "run_id": r.info.run_id, "config": config_id(p["lr"], p["beta1"], p["bn_placement"]),
                     "lr": float(p["lr"]), "beta1": float(p["beta1"]), "bn_placement": p["bn_placement"],
                     "seed": int(p["seed"]), "steps": _number(t.get("final_step")),
                     "fd": fd, "log_fd": math.log(fd) if fd > 0 else math.nan, "diverged": bool(diverged),
                     "is_paper": is_paper(p["lr"], p["beta1"], p["bn_placement"]), "status": status,
                     "horizon": _number(p.get("max_steps")),
                     "fd_last_before_divergence": values["fd_last_before_divergence"],
                     **{k: values.get(k, math.nan) for k in END_METRICS}})
    if not rows:
        return pd.DataFrame(columns=list(COLUMNS))
    df = pd.DataFrame(rows).sort_values(["stage", "sampler", "search_seed", "end"], kind="stable")
    df["trial"] = df.groupby(["stage", "sampler", "search_seed"]).cumcount()
    return df[list(COLUMNS)].reset_index(drop=True)


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def top_configs(df, k, sampler, search_seed):
    """The ``k`` best configurations of one stage-1 search by final FD, diverged and failed trials left
    out, best first: [(config id, {lr, beta1, bn_placement}, fd)]."""
    s1 = df[(df.stage == 1) & (df.sampler == sampler) & (df.search_seed == search_seed) & df.fd.notna()]
    best = s1.sort_values(["fd", "trial"]).drop_duplicates("config").head(k)
    return [(row.config, {"lr": row.lr, "beta1": row.beta1, "bn_placement": row.bn_placement}, row.fd)
            for row in best.itertuples()]


def fresh_seeds(used, n):
    """The ``n`` smallest non-negative seeds not in ``used`` (the seeds stage 1 trained with)."""
    out, s = [], 0
    while len(out) < n:
        if s not in used:
            out.append(s)
        s += 1
    return out
