"""The statistics behind a claim verdict, on the seed as the unit of replication: contrasts taken
within each seed (every cell of a grid runs the same seeds: same init, data order and noise) and a
t over seeds (statsmodels), Welch's t when the arms share no seeds, an F test of the interaction
(formula OLS, ``anova_lm``), two-proportion intervals for 0/1 flags (McNemar's exact p when
paired), Holm's step-down, and the plateau test of the horizon rule: an equivalence test (TOST)
on the run-level slopes of log FD over the last quarter. Pure functions of records (see ``report.stats``); the claim rules built
on them are in ``report.claims``.
"""
import math
import warnings

import numpy as np

from search_spaces.claims import PLATEAU_MARGIN
from search_spaces.metrics import METRICS

ALPHA = 0.05
PLATEAU_MIN_STEPS = 3   # distinct evaluated steps in the last quarter a run's slope needs


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
    ran all of them) in a formula OLS on cell + seed (statsmodels), F test of the cell term
    (``anova_lm``); None with fewer than two cells or seeds. It assumes equal variance across
    cells; it is reported, never a verdict."""
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    pairs = [(p, a) for p, a in pairs if p in table and a in table]
    if len(pairs) < 2:
        return None
    shared = sorted(set.intersection(*(set(table[c]) for pair in pairs for c in pair)))
    if len(shared) < 2:
        return None
    df = pd.DataFrame([(i, s, table[a][s] - table[p][s]) for i, (p, a) in enumerate(pairs) for s in shared],
                      columns=["cell", "seed", "d"])
    res = smf.ols("d ~ C(cell) + C(seed)", df).fit()
    if not res.scale > 1e-12:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = anova_lm(res, typ=2).loc["C(cell)"]
    return {"F": float(row["F"]), "df_num": int(row["df"]), "df_den": int(round(res.df_resid)), "p": float(row["PR(>F)"])}


def two_proportions(alt_flags, paper_flags, alpha=ALPHA):
    """Share of runs flagged, alt − paper: Newcombe's hybrid-score interval (statsmodels), and the
    p of McNemar's exact test when the flags are paired (``[(seed, flag)]`` in both arms, the seeds
    they share: the discordant seeds decide), else Fisher's exact p."""
    from scipy.stats import fisher_exact
    from statsmodels.stats.contingency_tables import mcnemar
    from statsmodels.stats.proportion import confint_proportions_2indep

    paired = bool(alt_flags) and isinstance(alt_flags[0], tuple)
    if paired:
        alt_of, paper_of = dict(alt_flags), dict(paper_flags)
        a, b = list(alt_of.values()), list(paper_of.values())
    else:
        a, b = alt_flags, paper_flags
    a, b = [int(x) for x in a], [int(x) for x in b]
    ca, na, cb, nb = sum(a), len(a), sum(b), len(b)
    lo, hi = confint_proportions_2indep(ca, na, cb, nb, method="newcomb", compare="diff", alpha=alpha)
    shared = sorted(set(alt_of) & set(paper_of)) if paired else []
    if shared:
        both = [(int(alt_of[s]), int(paper_of[s])) for s in shared]
        t = [[sum(x == (1, 1) for x in both), sum(x == (1, 0) for x in both)],
             [sum(x == (0, 1) for x in both), sum(x == (0, 0) for x in both)]]
        p, test = float(mcnemar(t, exact=True).pvalue), f"McNemar exact p over {len(shared)} paired seeds"
    else:
        p, test = float(fisher_exact([[ca, na - ca], [cb, nb - cb]]).pvalue), "Fisher exact p"
    return {"effect": ca / na - cb / nb, "lo": float(lo), "hi": float(hi), "p": p, "df": math.nan,
            "alpha": alpha, "flag_test": test}


def holm(pvalues, alpha=ALPHA):
    """Holm's step-down over a family: (adjusted p, rejected, the level of each one's interval).

    The k-th smallest p is tested at alpha / (m - k + 1) until one fails; that one and every
    larger p keep the level at which the procedure stopped, so an interval excludes 0 exactly
    when Holm rejects. The adjusted p are statsmodels' ``multipletests(method="holm")`` ones
    (tests/test_report.py checks them against it), computed here because that function runs
    ``gc.collect()`` on every call (80 ms in a process that has loaded torch; the report and its
    simulations make thousands of calls)."""
    if not pvalues:
        return [], [], []
    m, order = len(pvalues), np.argsort(pvalues, kind="stable")
    ranked = np.maximum.accumulate(np.asarray(pvalues, float)[order] * np.arange(m, 0, -1))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(ranked, 1.0)
    levels, stopped = [0.0] * m, None
    for rank, i in enumerate(order):
        if stopped is None:
            level = alpha / (m - rank)
            if pvalues[i] > level:
                stopped = level
        levels[i] = stopped if stopped is not None else alpha / (m - rank)
    return [float(p) for p in adjusted], [bool(p <= alpha) for p in adjusted], levels


def equivalence(estimate, se, df, margin, alpha=ALPHA):
    """Is ``estimate`` (a t statistic's mean, with standard error ``se`` on ``df`` degrees of freedom)
    shown inside +-``margin``? Two one-sided t tests at ``alpha`` (TOST): equivalent exactly when the
    (1 - 2 alpha) interval lies inside the margin. ``p``: the larger one-sided p. ``power``: the
    chance the TOST shows equivalence were the true value 0, at this ``se`` and ``df`` (each
    one-sided test's power at the margin, noncentral t, as statsmodels ``TTestPower`` computes it;
    both pass with at least 2 x that - 1). The one equivalence helper of the report and the pilot."""
    from scipy import stats

    out = {"estimate": estimate, "lo": math.nan, "hi": math.nan, "p": math.nan, "equivalent": False,
           "power": math.nan, "margin": margin, "df": df, "se": se}
    if not (df >= 1 and _finite(se) and _finite(estimate)):
        return out
    if se <= 1e-12 * max(1.0, abs(estimate)):   # no spread: the value itself
        inside = abs(estimate) < margin
        return {**out, "lo": estimate, "hi": estimate, "p": 0.0 if inside else 1.0, "equivalent": inside,
                "power": 1.0}
    crit = stats.t.ppf(1 - alpha, df)
    p = max(stats.t.sf((estimate + margin) / se, df), stats.t.cdf((estimate - margin) / se, df))
    one_sided = stats.nct.sf(crit, df, margin / se)
    return {**out, "lo": float(estimate - crit * se), "hi": float(estimate + crit * se), "p": float(p),
            "equivalent": bool(p < alpha),
            "power": float(max(0.0, 2 * one_sided - 1))}


def plateau(records, margin=PLATEAU_MARGIN, pooled=False):
    """Is a cell shown flat at the end of training? On its runs (finished, not diverged): the slope
    of log FD on step (per 1,000 steps) over the last quarter of training (steps >= 3/4 of the
    horizon), and the TOST of ``equivalence`` against +-``margin``.

    The run is the unit: each run with PLATEAU_MIN_STEPS distinct evaluated steps in the window
    gives its own OLS slope (scipy ``linregress``), and the test is a t over those slopes (df = runs
    - 1; testable with 2 runs or more). ``pooled`` (the pilot, one run per cell): one formula OLS of
    log FD on step + run (one intercept per run, statsmodels), the evaluations the unit, testable
    with PLATEAU_MIN_STEPS distinct steps and 2 residual degrees of freedom."""
    runs = [r for r in records if r.get("status") == "finished" and r["values"].get("diverged") != 1.0]
    hists = [[(s, v) for s, v in r["history"].get(r.get("fd_key"), []) if _finite(v) and v > 0] for r in runs]
    hists = [h for h in hists if h]
    horizon = max((h[-1][0] for h in hists), default=0)
    start = 0.75 * horizon
    windows = [[(s / 1000.0, math.log(v)) for s, v in h if s >= start] for h in hists]
    steps = sorted({x for w in windows for x, _ in w})
    out = {"testable": False, "flat": False, "horizon": horizon, "start": start, "n_runs": len(hists),
           "n_steps": len(steps), "slope": math.nan, "se": math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan,
           "df": 0, "margin": margin, "power": math.nan, "unit": "evaluation" if pooled else "run", "slopes": []}
    fit = _pooled_slope(windows, len(steps)) if pooled else _run_slopes(windows)
    if fit is None:
        return out
    slope, se, df, slopes = fit
    eq = equivalence(slope, se, df, margin)
    out.update(testable=True, flat=eq["equivalent"], slope=slope, se=se, lo=eq["lo"], hi=eq["hi"], p=eq["p"],
               df=df, power=eq["power"], slopes=slopes, n_runs=len(slopes) if not pooled else len(hists))
    return out


def _run_slopes(windows):
    """(mean slope, its SE, df, [slope per run]) over the runs with enough steps; None below 2 runs.
    Each run's slope: the least-squares line (numpy ``polyfit``; scipy's ``linregress`` gives the same
    slope at 30x the cost, which the calibration's simulated studies feel)."""
    slopes = [float(np.polyfit(*zip(*w), 1)[0]) for w in windows if len({x for x, _ in w}) >= PLATEAU_MIN_STEPS]
    if len(slopes) < 2:
        return None
    return float(np.mean(slopes)), float(np.std(slopes, ddof=1) / math.sqrt(len(slopes))), len(slopes) - 1, slopes


def _pooled_slope(windows, n_steps):
    """(slope, SE, residual df, []) of one formula OLS, log FD ~ step + C(run); None when untestable."""
    import pandas as pd
    import statsmodels.formula.api as smf

    df = pd.DataFrame([(i, x, y) for i, w in enumerate(windows) for x, y in w], columns=["run", "step", "log_fd"])
    runs = df["run"].nunique()
    if n_steps < PLATEAU_MIN_STEPS or len(df) - runs - 1 < 2:
        return None
    res = smf.ols("log_fd ~ step + C(run)" if runs > 1 else "log_fd ~ step", df).fit()
    se = float(res.bse["step"]) if res.scale > 1e-12 else 0.0
    return float(res.params["step"]), se, int(round(res.df_resid)), []
