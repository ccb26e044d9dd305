"""Where DCGAN trains: partial dependence of log FD on lr and on beta1 per BN placement, from a random
forest fitted to the trials, and the share of trials that diverged by region of the space."""
import math

import numpy as np
import pandas as pd

from orchestrator.search.importance import SPACE, scored_trials, search_distributions


def _features(rows, choices):
    """The forest's inputs: log10 lr, beta1 and the BN placement's index among the space's choices."""
    code = {c: i for i, c in enumerate(choices)}
    return np.column_stack([np.log10(rows["lr"].astype(float)), rows["beta1"].astype(float),
                            rows["bn_placement"].map(code).astype(float)])


def fit_surrogate(trials, handling="penalised", space=SPACE, n_trees=300, seed=0):
    """A random forest of log FD on (log10 lr, beta1, BN placement) fitted to the trials under
    ``handling`` (see importance.scored_trials). Returns (forest, rows, oob_r2): oob_r2 is the
    forest's out-of-bag R^2, how well the surrogate predicts trials it did not see."""
    from sklearn.ensemble import RandomForestRegressor

    rows, _ = scored_trials(trials, handling)
    choices = search_distributions(space)["bn_placement"].choices
    forest = RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=2, oob_score=True, random_state=seed)
    forest.fit(_features(rows, choices), rows["y"].to_numpy())
    return forest, rows, float(forest.oob_score_)


def partial_dependence(trials, *, handling="penalised", grid=40, space=SPACE, n_trees=300, seed=0):
    """Partial dependence of log FD on lr (a grid even in log space) and on beta1, for each BN
    placement: at each grid value, the surrogate's prediction averaged over the trials' values of the
    other float knob. Columns: parameter, value, bn_placement, log_fd (the forest's mean), lo and hi
    (10th and 90th percentiles over the forest's trees: the surrogate's spread, not a confidence
    interval), surrogate_oob_r2, handling."""
    forest, rows, r2 = fit_surrogate(trials, handling, space, n_trees, seed)
    dists = search_distributions(space)
    choices = dists["bn_placement"].choices
    X = _features(rows, choices)
    grids = {"lr": np.linspace(math.log10(dists["lr"].low), math.log10(dists["lr"].high), grid),
             "beta1": np.linspace(dists["beta1"].low, dists["beta1"].high, grid)}
    out = []
    for col, param in enumerate(("lr", "beta1")):
        for code, bn in enumerate(choices):
            # Every grid value at once: len(grid) copies of the trials, one tree.predict per tree.
            Xg = np.tile(X, (len(grids[param]), 1))
            Xg[:, col], Xg[:, 2] = np.repeat(grids[param], len(X)), code
            per_tree = np.stack([t.predict(Xg).reshape(len(grids[param]), len(X)).mean(1)
                                 for t in forest.estimators_])          # trees x grid
            values = 10 ** grids[param] if param == "lr" else grids[param]
            out.append(pd.DataFrame(dict(parameter=param, value=values, bn_placement=bn,
                                         log_fd=per_tree.mean(0), lo=np.percentile(per_tree, 10, axis=0),
                                         hi=np.percentile(per_tree, 90, axis=0), surrogate_oob_r2=r2,
                                         handling=handling)))
    return pd.concat(out, ignore_index=True)


def regions(space=SPACE):
    """The regions the divergence table counts in: lr in thirds of its log range (decades for 1e-5 to
    1e-2), beta1 in halves of its range, each BN placement. Returns (lr_edges, beta1_edges, choices)."""
    dists = search_distributions(space)
    lr_edges = np.logspace(math.log10(dists["lr"].low), math.log10(dists["lr"].high), 4)
    beta1_edges = np.linspace(dists["beta1"].low, dists["beta1"].high, 3)
    return lr_edges, beta1_edges, dists["bn_placement"].choices


def divergence_by_region(trials, *, level=0.95, space=SPACE):
    """The share of trials that diverged in each region (see ``regions``). Columns: bn_placement, lr_range,
    beta1_range, trials, diverged, share, lo, hi (Wilson interval at ``level``; the unit is trials; NaN
    where a region holds none). Failed trials (no FD, not diverged) are left out."""
    from scipy.stats import binomtest

    rows, _ = scored_trials(trials, "penalised")
    lr_edges, beta1_edges, choices = regions(space)
    lr_bin = np.clip(np.searchsorted(lr_edges, rows["lr"].astype(float), side="right") - 1, 0, 2)
    beta1_bin = np.clip(np.searchsorted(beta1_edges, rows["beta1"].astype(float), side="right") - 1, 0, 1)
    out = []
    for bn in choices:
        for i in range(3):
            for j in range(2):
                inside = (rows["bn_placement"] == bn).to_numpy() & (lr_bin == i) & (beta1_bin == j)
                n, k = int(inside.sum()), int(rows.loc[inside, "diverged"].astype(bool).sum())
                lo = hi = math.nan
                if n:
                    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
                    lo, hi = ci.low, ci.high
                out.append(dict(bn_placement=bn, lr_range=f"[{lr_edges[i]:.0e}, {lr_edges[i + 1]:.0e}{')]'[i == 2]}",
                                beta1_range=f"[{beta1_edges[j]:.3g}, {beta1_edges[j + 1]:.3g}{')]'[j == 1]}", trials=n,
                                diverged=k, share=k / n if n else math.nan, lo=lo, hi=hi))
    return pd.DataFrame(out)


def best_trial(trials):
    """The finished trial with the lowest log FD (a Series), or None when none finished."""
    finite = trials[np.isfinite(trials["log_fd"].astype(float)) & ~trials["diverged"].astype(bool)]
    return None if finite.empty else finite.loc[finite["log_fd"].astype(float).idxmin()]

