"""How much a claim's primary FD effect rests on the handling of its diverged runs.

The declared handling (``report.model.analysis_values``: a diverged run takes the worst final FD
observed) stays the primary analysis. Beside it, where a run of the claim's two arms diverged:

- ``last_fd``: each diverged run at its last FD before divergence (``fd_last_before_divergence``;
  a seed whose diverged run has none is left out), paired t over seeds;
- ``dropped``: the seeds with a divergence in either arm left out, paired t over the rest;
- ``rank``: the paired Wilcoxon signed-rank test (scipy) with a diverged run ranked worst: it takes
  a log FD beyond every finished run's by more than their whole range, so its difference has the
  largest magnitude and the diverged arm's sign; the effect is the median difference.

``report.claims`` turns each into a verdict with the primary's rules and family, and calls the
claim *fragile* where one of them differs from the primary's verdict.
"""
import math

import numpy as np

from orchestrator.report import model
from search_spaces.metrics import METRICS

ANALYSES = (("last_fd", "last FD before divergence"), ("dropped", "seeds with a divergence dropped"),
            ("rank", "paired signed-rank, diverged ranked worst"))


def _log(v):
    return math.log(v) if v is not None and math.isfinite(v) and v > 0 else math.nan


def _arm(records, cell_of, arm, metric):
    """{seed: (log value or NaN, diverged, log last FD before divergence or NaN)}; a seed's repeated
    runs (a searcher's trials) are averaged, and it counts as diverged if one of them did."""
    by_seed = {}
    for r in records:
        if cell_of(r) == arm:
            v = r["values"]
            by_seed.setdefault(str(r.get("seed", "")), []).append(
                (_log(v.get(metric)), v.get("diverged") == 1.0, _log(v.get("fd_last_before_divergence"))))
    return {s: (sum(x[0] for x in rs) / len(rs), any(x[1] for x in rs), sum(x[2] for x in rs) / len(rs))
            for s, rs in by_seed.items()}


def sensitivity(records, cell_of, arms, metric):
    """{analysis: estimate} (``report.model.paired``'s keys, ``n`` seeds), or None where the metric is
    not censored at the worst value or no run of the two arms diverged."""
    if METRICS[metric].censor != "worst" or METRICS[metric].kind != "log":
        return None
    paper, alt = (_arm(records, cell_of, a, metric) for a in arms)
    shared = sorted(set(paper) & set(alt))
    if not any(paper[s][1] or alt[s][1] for s in shared):
        return None

    def value(arm, s, diverged_as):
        v, div, last = arm[s]
        return diverged_as(last) if div else v

    out = {}
    d = [value(alt, s, lambda last: last) - value(paper, s, lambda last: last) for s in shared]
    out["last_fd"] = _t(d, "paired t, diverged runs at their last FD")
    d = [alt[s][0] - paper[s][0] for s in shared if not (alt[s][1] or paper[s][1])]
    out["dropped"] = _t(d, "paired t, seeds with a divergence dropped")
    finished = [x[0] for arm in (paper, alt) for x in arm.values() if not x[1] and math.isfinite(x[0])]
    worst = max(finished) + (max(finished) - min(finished)) + 1.0 if finished else 0.0
    d = [value(alt, s, lambda _: worst) - value(paper, s, lambda _: worst) for s in shared]
    out["rank"] = _rank(d)
    return out


def _t(d, test):
    d = [x for x in d if math.isfinite(x)]
    est = model.paired({"a": dict(enumerate(d))}, {"a": 1.0}) if d else None
    if est is None:
        return {"effect": math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan, "n": 0, "test": test}
    return {**est, "n": len(d), "test": f"{test} ({len(d)} seeds)"}


def _rank(d):
    """Wilcoxon signed-rank over the per-seed differences (zeros dropped); the effect: their median."""
    from scipy.stats import wilcoxon

    d = [x for x in d if math.isfinite(x)]
    out = {"effect": float(np.median(d)) if d else math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan,
           "n": len(d), "test": f"Wilcoxon signed-rank ({len(d)} seeds)"}
    if sum(1 for x in d if x != 0) >= 1:
        out["p"] = float(wilcoxon(d).pvalue)
    return out
