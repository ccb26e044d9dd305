"""The statistics of the latent experiments, always on a named unit of replication.

An experiment hands over one value per unit: a trial of the arithmetic, an exemplar draw of the
turn vector, a held-out image of forget, a label draw of represent, a generator when several are
given. Intervals are t intervals of the mean over those units (95 %), clipped to the range the
values cannot leave, none from fewer than MIN_UNITS; a paired contrast is the Wilcoxon
signed-rank test on the units' differences with a t interval of the mean difference; secondary
contrasts are Holm-corrected. scipy and statsmodels do the work.
"""
import math

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

LEVEL = 0.95
MIN_UNITS = 3          # no interval, and no test, from fewer units


SHARE = (0.0, 1.0)     # the bounds of a share (of outputs, pixels, correct answers)
CORRELATION = (-1.0, 1.0)


def mean_ci(values, unit, bounds=None):
    """Mean of per-unit values with its t interval, clipped to ``bounds`` (the range the values,
    and so their mean, cannot leave). For a share whose units all sit at 0 (or 1) the t interval
    has zero width, so the exact binomial interval of n units all at that bound (the most
    variable [0, 1] variable with that mean) is given instead."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    out = {"unit": unit, "n": int(len(v)), "mean": float(v.mean()) if len(v) else math.nan,
           "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan, "ci": None, "interval": None,
           "bounds": list(bounds) if bounds else None}
    if len(v) < MIN_UNITS:
        out["interval"] = f"none: fewer than {MIN_UNITS} {unit}"
    elif np.ptp(v) > 0:
        ci = stats.ttest_1samp(v, 0.0).confidence_interval(LEVEL)
        lo, hi = (max(ci.low, bounds[0]), min(ci.high, bounds[1])) if bounds else (ci.low, ci.high)
        out["ci"], out["interval"] = [float(lo), float(hi)], f"t, over {unit}"
    elif bounds == SHARE and v[0] in SHARE:
        lo, hi = proportion_confint(int(v[0]) * len(v), len(v), alpha=1 - LEVEL, method="beta")
        out["ci"], out["interval"] = [float(lo), float(hi)], f"exact binomial, all {unit} at {v[0]:g}"
    else:
        out["interval"] = f"none: every one of the {unit} has the same value"
    return out


def paired(a, b, unit, bounds=None):
    """a - b over units paired by position: mean difference with its t interval, and the two-sided
    Wilcoxon signed-rank p (units with a zero difference dropped, scipy's default). ``bounds``:
    the range of a and b (so a difference lies within +-(hi - lo))."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    width = bounds[1] - bounds[0] if bounds else None
    out = {"unit": unit, "n": int(len(d)), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
           "diff": mean_ci(d, unit, (-width, width) if bounds else None), "test": "Wilcoxon signed-rank, two-sided",
           "p": None}
    if len(d) >= MIN_UNITS:
        out["p"] = 1.0 if not np.any(d) else float(stats.wilcoxon(d).pvalue)
    return out


def over_generators(values, bounds=None):
    """Per-generator values of one statistic: mean with its t interval over the generators, and
    the one-sample t test of mean 0 (for effects: a test paired by generator)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    out = mean_ci(v, "generators", bounds)
    out["p_t_test"] = float(stats.ttest_1samp(v, 0.0).pvalue) if len(v) >= MIN_UNITS and np.ptp(v) > 0 else None
    return out


def proportion(hits, n, unit):
    """A rate counted over independent units (samples, images), with its Wilson interval."""
    lo, hi = proportion_confint(hits, n, alpha=1 - LEVEL, method="wilson")
    return {"unit": unit, "n": int(n), "mean": hits / n, "ci": [float(lo), float(hi)],
            "interval": f"Wilson, over {unit}"}


def value(mean, bounds=None):
    """A per-generator headline number that is not itself a :func:`mean_ci` (same keys used)."""
    return {"mean": mean, "bounds": list(bounds) if bounds else None}


def contrasts(tests, primary):
    """``tests``: {name: paired(...)}. The primary (a name, declared before the data; or None)
    keeps its own p; every other test gets a Holm-adjusted p (``p_holm``) as one family."""
    family = [name for name in tests if name != primary and tests[name]["p"] is not None]
    if family:
        adjusted = multipletests([tests[name]["p"] for name in family], method="holm")[1]
        for name, p in zip(family, adjusted):
            tests[name]["p_holm"] = float(p)
    for name, test in tests.items():
        test["role"] = "primary" if name == primary else "secondary (Holm-adjusted over the others)"
    return tests
