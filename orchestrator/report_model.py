"""The statistics behind a claim verdict, on the seed as the unit of replication: contrasts taken
within each seed (every cell of a grid runs the same seeds: same init, data order and noise) and a
t over seeds (statsmodels), Welch's t when the arms share no seeds, an F test of the interaction,
exact two-proportion intervals for 0/1 flags, Holm's step-down over secondaries, and the plateau
test of the horizon rule. Pure functions of records (see ``report_stats``); the claim rules built
on them are in ``report_claims``.
"""
import math
import warnings

import numpy as np

from search_spaces.metrics import METRICS

ALPHA = 0.05
PLATEAU_MIN_STEPS = 3   # distinct evaluated steps in the last quarter the plateau test needs


def _finite(x):
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def analysis_values(records, metric):
    """(values on the metric's analysis scale, NaN where unknown; how many were censored).

    log metrics are logged; a diverged run takes the worst value observed among the records
    ("worst": it ties with the worst run and never flatters its setting); a run that never reached
    the FD threshold counts as reaching it at the records' horizon ("horizon")."""
    m = METRICS[metric]
    raw = [r["values"].get(metric, math.nan) for r in records]
    censored = 0
    if m.censor == "worst":
        seen = [v for v in raw if _finite(v)]
        worst = max(seen) if seen else math.nan
        for i, r in enumerate(records):
            if r["values"].get("diverged") == 1.0:
                raw[i], censored = worst, censored + 1
    elif m.censor == "horizon":
        horizon = max((r.get("final_step", math.nan) for r in records if _finite(r.get("final_step"))),
                      default=math.nan)
        for i, v in enumerate(raw):
            if not _finite(v):
                raw[i], censored = horizon, censored + 1
    if m.kind == "log":
        raw = [math.log(v) if _finite(v) and v > 0 else math.nan for v in raw]
    return [v if _finite(v) else math.nan for v in raw], censored


def seed_table(records, factors, metric):
    """({cell: {seed: value}} on the analysis scale, runs censored). Two runs of one seed in one cell
    (a searcher's trials) are averaged: the seed is the unit of replication."""
    values, censored = analysis_values(records, metric)
    sums = {}
    for r, v in zip(records, values):
        if math.isfinite(v):
            cell = sums.setdefault(tuple(r["levels"][f] for f in factors), {})
            cell.setdefault(str(r.get("seed", "")), []).append(v)
    return {c: {s: float(np.mean(v)) for s, v in seeds.items()} for c, seeds in sums.items()}, censored


def _t_summary(values, alpha, test):
    """Mean, (1 - alpha) t interval and two-sided p of mean = 0 (statsmodels), NaN where undefined."""
    from statsmodels.stats.weightstats import DescrStatsW

    v = np.asarray(values, float)
    out = {"effect": float(v.mean()) if len(v) else math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan,
           "df": len(v) - 1, "alpha": alpha, "test": test}
    if len(v) >= 2 and np.std(v) > 1e-12 * max(1.0, abs(out["effect"])):
        d = DescrStatsW(v)
        lo, hi = d.tconfint_mean(alpha=alpha)
        out.update(lo=float(lo), hi=float(hi), p=float(d.ttest_mean(0.0)[1]))
    return out


def paired(table, weights, alpha=ALPHA):
    """The contrast sum(w * y[cell]) computed within each seed that ran every weighted cell (same
    init, data order and noise), then a one-sample t over those seeds: the OLS of y on cell + seed
    restricted to these cells. None when a cell has no value."""
    if any(c not in table for c in weights):
        return None
    shared = sorted(set.intersection(*(set(table[c]) for c in weights)))
    d = [sum(w * table[c][s] for c, w in weights.items()) for s in shared]
    return {**_t_summary(d, alpha, f"paired t over {len(d)} seeds (df {len(d) - 1})"), "n_shared": len(d)}


def welch(alt, paper, alpha=ALPHA):
    """alt − paper between two independent sets of seeds: Welch's t (statsmodels), no equal variances."""
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    cm = CompareMeans(DescrStatsW(np.asarray(alt, float)), DescrStatsW(np.asarray(paper, float)))
    lo, hi = cm.tconfint_diff(alpha=alpha, usevar="unequal")
    _, p, df = cm.ttest_ind(usevar="unequal")
    return {"effect": float(np.mean(alt) - np.mean(paper)), "lo": float(lo), "hi": float(hi), "p": float(p),
            "df": float(df), "alpha": alpha, "test": f"Welch t, seeds not shared by the arms (df {df:.1f})",
            "n_shared": 0}


def interaction(table, pairs):
    """Is the simple effect the same in every matched cell? The per-seed simple effects (seeds that
    ran all of them) in an OLS on cell + seed, F test of the cell terms; None with fewer than two
    cells or seeds. It assumes equal variance across cells; it is reported, never a verdict."""
    import statsmodels.api as sm

    pairs = [(p, a) for p, a in pairs if p in table and a in table]
    if len(pairs) < 2:
        return None
    shared = sorted(set.intersection(*(set(table[c]) for pair in pairs for c in pair)))
    if len(shared) < 2:
        return None
    k, n = len(pairs), len(shared)
    y = np.array([table[a][s] - table[p][s] for p, a in pairs for s in shared])
    X = np.zeros((k * n, k + n - 1))
    for i in range(k):
        for j in range(n):
            X[i * n + j, i] = 1.0
            if j:
                X[i * n + j, k + j - 1] = 1.0
    res = sm.OLS(y, X).fit()
    if not res.scale > 1e-12:
        return None
    R = np.zeros((k - 1, X.shape[1]))
    for i in range(1, k):
        R[i - 1, 0], R[i - 1, i] = -1.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = res.f_test(R)
    return {"F": float(np.squeeze(f.fvalue)), "df_num": int(f.df_num), "df_den": int(f.df_denom), "p": float(f.pvalue)}


def two_proportions(alt_flags, paper_flags, alpha=ALPHA):
    """Share of runs flagged, alt − paper: Newcombe's hybrid-score interval, Fisher's exact p."""
    from scipy.stats import fisher_exact
    from statsmodels.stats.proportion import confint_proportions_2indep

    a, b = [int(x) for x in alt_flags], [int(x) for x in paper_flags]
    ca, na, cb, nb = sum(a), len(a), sum(b), len(b)
    lo, hi = confint_proportions_2indep(ca, na, cb, nb, method="newcomb", compare="diff", alpha=alpha)
    p = fisher_exact([[ca, na - ca], [cb, nb - cb]]).pvalue
    return {"effect": ca / na - cb / nb, "lo": float(lo), "hi": float(hi), "p": float(p), "df": math.nan,
            "alpha": alpha}


def holm(pvalues, alpha=ALPHA):
    """Holm's step-down over a family: (adjusted p, rejected, the level of each one's interval).

    The k-th smallest p is tested at alpha / (m - k + 1) until one fails; that one and every
    larger p keep the level at which the procedure stopped, so an interval excludes 0 exactly
    when Holm rejects."""
    from statsmodels.stats.multitest import multipletests

    if not pvalues:
        return [], [], []
    reject, adjusted, _, _ = multipletests(pvalues, alpha=alpha, method="holm")
    levels, m, stopped = [0.0] * len(pvalues), len(pvalues), None
    for rank, i in enumerate(np.argsort(pvalues, kind="stable")):
        if stopped is None:
            level = alpha / (m - rank)
            if pvalues[i] > level:
                stopped = level
        levels[i] = stopped if stopped is not None else alpha / (m - rank)
    return [float(p) for p in adjusted], [bool(r) for r in reject], levels


def plateau(records):
    """Has FD stopped moving at the end of training? On the given runs (one cell, finished and not
    diverged): OLS of log FD on step over the last quarter of training (steps >= 3/4 of the
    horizon), one intercept per run, and the two-sided t test of slope = 0 at ALPHA.

    Testable with at least PLATEAU_MIN_STEPS distinct evaluated steps in that window and two
    residual degrees of freedom; ``reached`` is True when the slope is not distinguishable from 0."""
    import statsmodels.api as sm

    runs = [r for r in records if r.get("status") == "finished" and r["values"].get("diverged") != 1.0]
    hists = [[(s, v) for s, v in r["history"].get(r.get("fd_key"), []) if _finite(v) and v > 0] for r in runs]
    hists = [h for h in hists if h]
    horizon = max((h[-1][0] for h in hists), default=0)
    start = 0.75 * horizon
    points = [(i, s, math.log(v)) for i, h in enumerate(hists) for s, v in h if s >= start]
    steps = sorted({s for _, s, _ in points})
    out = {"testable": False, "reached": False, "horizon": horizon, "start": start, "n_runs": len(hists),
           "n_steps": len(steps), "slope": math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan, "df": 0}
    ids = sorted({i for i, _, _ in points})
    if len(steps) < PLATEAU_MIN_STEPS or len(points) - len(ids) - 1 < 2:
        return out
    X = np.zeros((len(points), 1 + len(ids)))
    for row, (i, s, _) in enumerate(points):
        X[row, 0] = s / 1000.0                  # slope per 1,000 steps
        X[row, 1 + ids.index(i)] = 1.0
    res = sm.OLS(np.array([v for _, _, v in points]), X).fit()
    if not res.scale > 1e-12:   # FD identical at every point: flat
        out.update(testable=True, reached=True, slope=0.0, lo=0.0, hi=0.0, p=1.0, df=int(res.df_resid))
        return out
    (lo, hi), p = res.conf_int(alpha=ALPHA)[0], float(res.pvalues[0])
    out.update(testable=True, reached=p >= ALPHA, slope=float(res.params[0]), lo=float(lo), hi=float(hi), p=p,
               df=int(round(res.df_resid)))
    return out
