"""Runs for a report, read from any MLflow store: their factor levels, final values and histories.

Only MLflow is read (``search_runs``, metric histories, image artifacts), never Ray's files, so
a report works on a laptop's SQLite store and on a cluster's tracking server alike.
"""
import math

from orchestrator import tracking
from search_spaces.metrics import EXTRA_KEYS, METRICS
from trainables import store
from trainables.config import Config
from trainables.errors import UserError

# Factors a report tabulates when they vary across the runs (everything the sweeps search), besides
# the factors of the claims being tested.
KNOWN_FACTORS = ("lr", "beta1", "bn_placement", "g_upsample", "d_downsample", "d_head", "g_activation",
                 "d_activation", "lr_g", "lr_d", "beta2", "batch_size", "nz", "ngf", "ndf", "z_dist")
# Continuous factors with many distinct values (TPE, random search) are binned at these edges:
# a level ``[a, b)`` holds lo <= x < hi. lr bins put 2e-4 and 1e-3 apart; beta1's put 0.5 and 0.9 apart.
BINS = {"lr": (1e-4, 3e-4, 1e-3, 3e-3), "beta1": (0.3, 0.6, 0.8)}
MAX_LEVELS = 6                     # more distinct values than this: the factor is binned
HISTORY_KEYS = ("loss_d", "loss_g", "d_real", "d_fake")
NOT_FD = {"fd_final", "fd_best", "fd_volatility", "fd_last_before_divergence"}
# What a number was measured at: runs differing in one of these are not pooled (unless --pool).
# torch_version: the same seed trains another curve under another torch (trainables/versions.py).
SCALE_PARAMS = ("dataset", "image_size", "max_steps", "eval_n", "torch_version", "evaluator_sha")
# Also in runs.csv: what the report's scale line names, and the rest of the software the runs used.
DESCRIBED = ("feature_extractor", "batch_size", "ngf", "ndf", "torchvision_version", "numpy_version", "lock_sha")
UNFINISHED = ("RUNNING", "SCHEDULED", "KILLED")   # runs without a result: left out, and counted in the title


def find_runs(uri, sweep=None, experiment=None):
    """(runs, parent run or None, label). One-line errors for an unknown sweep or experiment, or no runs."""
    c = store.client(uri)
    if sweep:
        parent = tracking.get_run(uri, sweep)
        exp_ids = [parent.info.experiment_id]
        flt = f"tags.mlflow.parentRunId = '{sweep}'"
        label = f"sweep {sweep}"
    else:
        exp = c.get_experiment_by_name(experiment)
        if exp is None:
            names = sorted(e.name for e in c.search_experiments())
            raise UserError(f"experiment={experiment!r} does not exist in {uri}; experiments there: {names}")
        parent, exp_ids, flt = None, [exp.experiment_id], "tags.kind != 'sweep'"
        label = f"experiment {experiment}"
    runs, token = [], None
    while True:
        page = c.search_runs(exp_ids, filter_string=flt, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    running = [r for r in runs if r.info.status in UNFINISHED]
    runs = [r for r in runs if r.info.status not in UNFINISHED]  # no result yet, or stopped by hand
    if not runs:
        raise UserError(f"{'sweep' if sweep else 'experiment'}={sweep or experiment!r}: no runs match "
                        f"(the report needs finished trial or training runs; {len(running)} still running)")
    runs.sort(key=lambda r: r.info.start_time or 0)
    if running:
        label += f" ({len(running)} unfinished runs left out)"
    return runs, parent, label


def choose_factors(runs, asked=None, claim_factors=()):
    """The factors to tabulate: the asked ones (each present in every run), else the known
    factors and the claims' factors that vary across the runs."""
    if asked:
        for f in asked:
            missing = [r.info.run_id[:8] for r in runs if f not in r.data.params]
            if missing:
                raise UserError(f"factors={f!r}: {len(missing)} of {len(runs)} runs have no such param "
                                f"(e.g. run {missing[0]}); params they share: {sorted(_shared_params(runs))[:20]}")
        return list(asked)
    candidates = list(KNOWN_FACTORS) + [f for f in claim_factors if f not in KNOWN_FACTORS]
    return [f for f in candidates if len({r.data.params.get(f) for r in runs}) > 1]


def _shared_params(runs):
    keys = set(runs[0].data.params)
    for r in runs[1:]:
        keys &= set(r.data.params)
    return keys


def claim_inputs(runs, claims, uri=None, history=None):
    """(records, factors, paper levels, label) for ``report.claims.evaluate_claims`` on ``runs``, built
    as the report builds them: the claims' factors that vary, their levels, one record per run."""
    factors = choose_factors(runs, None, [c.factor for c in claims])
    maps = level_maps(runs, factors)
    recs, _ = records(uri, runs, factors, history=history)
    return recs, factors, paper_levels(factors, maps), lambda f, v: maps[f](str(v))


def level_maps(runs, factors):
    """factor -> function(param string) -> level label; continuous factors with many values are binned."""
    maps = {}
    for f in factors:
        values = {r.data.params.get(f) for r in runs}
        if len(values) > MAX_LEVELS and _all_numbers(values):
            maps[f] = _binner(f, sorted(float(v) for v in values))
        else:
            maps[f] = canonical
    return maps


def canonical(value):
    """'2e-4' and '0.0002' are one level: numbers print as Python floats do."""
    if value is None:
        return "(unset)"
    try:
        x = float(value)
    except ValueError:
        return value
    if value.strip().lower() in ("true", "false"):
        return value
    return str(int(x)) if x.is_integer() and "." not in value and "e" not in value.lower() else repr(x)


def _all_numbers(values):
    try:
        [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return True


def _binner(factor, sorted_values):
    edges = BINS.get(factor) or tuple(float(x) for x in _quantile_edges(sorted_values))

    def label(value):
        x = float(value)
        lo = max([e for e in edges if e <= x], default=None)
        hi = min([e for e in edges if e > x], default=None)
        return f"[{_fmt(lo) if lo is not None else '-inf'}, {_fmt(hi) if hi is not None else 'inf'})"
    return label


def _quantile_edges(values, n_bins=4):
    import numpy as np

    return sorted(set(np.quantile(values, [i / n_bins for i in range(1, n_bins)]).round(6)))


def _fmt(x):
    return f"{x:g}"


def fd_key(run):
    """The run's FD history metric (fd_faces, fd_inception, ...; ``fid`` on old runs): the one of its
    pinned ``feature_extractor`` when it logged more than one."""
    keys = sorted(k for k in run.data.metrics if (k.startswith("fd_") and k not in NOT_FD) or k == "fid")
    if len(keys) > 1 and run.data.params.get("feature_extractor") in ("domain", "inception"):
        inception = run.data.params["feature_extractor"] == "inception"
        keys = [k for k in keys if (k == "fd_inception") == inception] or keys
    return keys[0] if keys else None


def final_values(run):
    """The run's final metrics as the report reads them (METRICS, older names too, EXTRA_KEYS).

    A diverged run has no final FD: its last FD before divergence is kept as
    ``fd_last_before_divergence`` (older runs logged it as ``fd_final``)."""
    m = run.data.metrics
    values = {k: m.get(k, m.get(spec.alias, math.nan)) for k, spec in METRICS.items() if k != "steps_to_fd"}
    values.update({k: m.get(k, math.nan) for k in EXTRA_KEYS})
    if run.data.tags.get("status") == "diverged":
        values["diverged"] = 1.0
    if values["diverged"] == 1.0:
        if not math.isfinite(values["fd_last_before_divergence"]):
            values["fd_last_before_divergence"] = values["fd_final"]
        values["fd_final"] = math.nan
    return values


def records(uri, runs, factors, fd_threshold=None, with_history=True, history=None):
    """One record per run (see ``report.stats``); the FD threshold defaults to the median final FD.

    ``history(run_id, key)`` gives a metric's [(step, value)] in step order: by default the store's
    at ``uri``; ``FolderRuns.history`` for runs read back from report folders."""
    if history is None:
        c = store.client(uri)

        def history(run_id, k):
            return [(h.step, h.value) for h in sorted(c.get_metric_history(run_id, k), key=lambda h: h.step)]
    maps = level_maps(runs, factors)
    out = []
    for r in runs:
        key = fd_key(r)
        hist = {}
        if with_history:
            for k in ([key] if key else []) + list(HISTORY_KEYS):
                hist[k] = history(r.info.run_id, k)
        out.append({"run_id": r.info.run_id, "levels": {f: maps[f](r.data.params.get(f)) for f in factors},
                    "seed": r.data.params.get("seed", ""), "params": dict(r.data.params), "values": final_values(r),
                    "metrics": dict(r.data.metrics), "fd_key": key, "history": hist,
                    "status": r.data.tags.get("status", r.info.status.lower()),
                    "history_known": getattr(r, "history_known", True),
                    "final_step": _number(r.data.tags.get("final_step"))})
    if fd_threshold is None:
        import numpy as np
        finals = [x["values"]["fd_final"] for x in out if math.isfinite(x["values"]["fd_final"])]
        fd_threshold = float(np.median(finals)) if finals else math.nan
    for x in out:
        x["values"]["steps_to_fd"] = steps_to(x["history"].get(x["fd_key"], []), fd_threshold)
    return out, fd_threshold


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def steps_to(fd_history, threshold):
    """First step whose FD is at or below ``threshold``; NaN when the run never got there."""
    for step, value in fd_history:
        if math.isfinite(value) and value <= threshold:
            return float(step)
    return math.nan


def paper_levels(factors, maps):
    """The paper's level of each factor (the config's default) in the labels the table uses."""
    defaults = Config()
    return {f: maps[f](str(getattr(defaults, f))) for f in factors if hasattr(defaults, f)}


def scale(runs):
    """What the numbers were measured at: data set, image size, steps, seeds, evaluation size."""
    p = lambda k: sorted({r.data.params.get(k, "?") for r in runs})  # noqa: E731
    steps = sorted({r.data.tags.get("final_step", "?") for r in runs})
    return {"dataset": p("dataset"), "image_size": p("image_size"), "max_steps": p("max_steps"),
            "final_steps": steps, "seeds": p("seed"), "batch_size": p("batch_size"), "eval_n": p("eval_n"),
            "ngf": p("ngf"), "ndf": p("ndf"), "fd": sorted({fd_key(r) or "none" for r in runs}), "runs": len(runs),
            "software": {k: p(k) for k in ("torch_version", "torchvision_version", "numpy_version", "lock_sha")}}


def strata(runs, pool=False):
    """{label: runs}, one stratum per scale the runs were measured at (one, labelled "", when they
    agree). Differing scales are refused, naming the key and its values, unless ``pool``."""
    def scale_of(r):
        finished = r.data.tags.get("status") == "finished"   # a diverged or failed run stops early
        return {**{k: r.data.params.get(k, "?") for k in SCALE_PARAMS}, "FD features": fd_key(r),
                "final step": r.data.tags.get("final_step") if finished else None}

    scales = [scale_of(r) for r in runs]
    differ = [k for k in scales[0] if len({s[k] for s in scales if s[k] is not None}) > 1]
    if not differ:
        return {"": runs}
    if not pool:
        k = differ[0]
        values = sorted({str(s[k]) for s in scales if s[k] is not None})
        raise UserError(f"runs differ in {k}: {', '.join(values)}; a report does not pool runs measured at "
                        "different scales (pass --pool to report each scale separately)")
    out = {}
    for r, s in zip(runs, scales):
        if s["final step"] is None:   # stopped early: with the finished runs of its other settings
            same = [t["final step"] for t in scales if t["final step"] is not None
                    and all(t[k] == s[k] for k in s if k != "final step")]
            s["final step"] = max(set(same), key=same.count) if same else "?"
        label = ", ".join(f"{k}={s[k]}" for k in differ)
        out.setdefault(label, []).append(r)
    return dict(sorted(out.items()))


def final_grid(uri, run_id, dest):
    """Download the run's last 'samples' grid image to ``dest``; None when it logged none."""
    from pathlib import Path

    c = store.client(uri)
    try:
        files = [f.path for f in c.list_artifacts(run_id, "images")]
    except Exception:  # noqa: BLE001 - no artifacts (or unreachable): the report shows no grid
        return None
    grids = sorted((f for f in files if f.endswith(".png") and f.rsplit("/", 1)[-1].startswith("samples")),
                   key=_image_step)
    if not grids:
        return None
    Path(dest).mkdir(parents=True, exist_ok=True)
    return c.download_artifacts(run_id, grids[-1], str(dest))


def _image_step(path):
    """MLflow names step images ``images/<key>+step+<step>+timestamp+...`` (``%`` before 3.x)."""
    import re

    parts = re.split(r"[+%]", path.rsplit("/", 1)[-1])
    try:
        return int(parts[parts.index("step") + 1])
    except (ValueError, IndexError):
        return -1
