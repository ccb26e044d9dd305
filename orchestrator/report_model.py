"""The statistics behind a claim verdict: a linear model of cell means with seed as a blocking
factor (statsmodels OLS), its contrasts, exact two-proportion intervals for 0/1 flags, Holm's
step-down over secondaries, and the plateau test of the horizon rule. Pure functions of records
(see ``report_stats``); the claim rules built on them are in ``report_claims``.
"""
import math
import warnings
from dataclasses import dataclass

import numpy as np

from orchestrator.report_metrics import METRICS

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


@dataclass
class CellFit:
    """OLS of one metric on one indicator per cell plus seed indicators (the block)."""
    res: object            # statsmodels RegressionResults, or None without any value
    cells: list            # the column order of the cell indicators
    seeds: dict            # cell -> sorted seeds with a value
    blocked: bool          # seed entered the model (some seed ran in more than one cell)
    censored: int
    estimable: object      # projection onto the row space of X: a contrast c is estimable iff c P = c

    @property
    def df(self):
        return int(round(self.res.df_resid)) if self.res is not None else 0

    def vector(self, weights):
        """{cell: weight} -> a contrast over the model's columns; None if a cell has no value."""
        if any(c not in self.cells for c in weights):
            return None
        c = np.zeros(self.estimable.shape[0])
        for cell, w in weights.items():
            c[self.cells.index(cell)] += w
        return c if np.allclose(c @ self.estimable, c, atol=1e-8) else None


def fit_cells(records, factors, metric):
    """The model for ``metric`` over every cell of ``factors``: y = cell mean + seed effect + error.

    Seed blocks only when seeds are shared across cells (the grid gives every cell the same seeds,
    so the same init, data order and noise); the residual variance is pooled over all cells."""
    import statsmodels.api as sm

    y, censored = analysis_values(records, metric)
    rows = [(tuple(r["levels"][f] for f in factors), str(r.get("seed", "")), v)
            for r, v in zip(records, y) if math.isfinite(v)]
    if not rows:
        return CellFit(None, [], {}, False, censored, np.zeros((0, 0)))
    cells = sorted({c for c, _, _ in rows})
    seeds_of = {c: sorted({s for cc, s, _ in rows if cc == c}) for c in cells}
    seed_levels = sorted({s for _, s, _ in rows})
    blocked = len(seed_levels) > 1 and any(sum(s in seeds_of[c] for c in cells) > 1 for s in seed_levels)
    blocks = seed_levels[1:] if blocked else []
    X = np.zeros((len(rows), len(cells) + len(blocks)))
    for i, (c, s, _) in enumerate(rows):
        X[i, cells.index(c)] = 1.0
        if s in blocks:
            X[i, len(cells) + blocks.index(s)] = 1.0
    res = sm.OLS(np.array([v for _, _, v in rows]), X).fit()
    return CellFit(res, cells, seeds_of, blocked, censored, np.linalg.pinv(X) @ X)


def has_error_variance(res):
    """Residual degrees of freedom and a non-zero residual variance: intervals can be formed."""
    return res is not None and res.df_resid >= 0.5 and res.scale > 1e-12


def t_tests(res, vectors):
    """statsmodels' t test of each contrast (rows); None where the fit leaves no residual variance."""
    if not has_error_variance(res):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return res.t_test(np.vstack(vectors))


def estimate(fit, vector, tests=None, row=0, alpha=ALPHA):
    """One contrast as a dict: effect, its (1 - alpha) t interval, p, df (NaNs without replication)."""
    effect = float(vector @ fit.res.params)
    out = {"effect": effect, "lo": math.nan, "hi": math.nan, "p": math.nan, "df": fit.df, "alpha": alpha}
    if tests is not None:
        lo, hi = tests.conf_int(alpha=alpha)[row]
        out.update(lo=float(lo), hi=float(hi), p=float(np.atleast_1d(tests.pvalue)[row]))
    return out


def interaction(fit, simple_vectors):
    """F test that the simple effect is the same in every matched cell (None with fewer than two)."""
    if len(simple_vectors) < 2 or not has_error_variance(fit.res):
        return None
    R = np.vstack([v - simple_vectors[0] for v in simple_vectors[1:]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fit.res.f_test(R)
    return {"F": float(np.squeeze(f.fvalue)), "df_num": int(f.df_num), "df_den": int(f.df_denom),
            "p": float(f.pvalue)}


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
    t = t_tests(res, [np.eye(X.shape[1])[0]])
    if t is None:   # FD identical at every point: flat
        out.update(testable=True, reached=True, slope=0.0, lo=0.0, hi=0.0, p=1.0, df=int(res.df_resid))
        return out
    (lo, hi), p = t.conf_int(alpha=ALPHA)[0], float(np.atleast_1d(t.pvalue)[0])
    out.update(testable=True, reached=p >= ALPHA, slope=float(res.params[0]), lo=float(lo), hi=float(hi), p=p,
               df=int(round(res.df_resid)))
    return out
