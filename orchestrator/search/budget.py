"""The search, measured: best FD against the number of trials, for TPE and for random search.

Two curves, named apart everywhere:
- "expected best" (Dodge et al. 2019, "Show your work"): the expected minimum FD of n configurations
  drawn with replacement from a pool of N trials (diverged ones at the penalty below), from the exact
  order-statistic formula on the pool's empirical distribution. It treats the pool as i.i.d. draws,
  which random search's trials are and TPE's are not (each TPE trial depends on the ones before), so for
  TPE it answers "best of n of the configurations this search visited", not "what TPE reaches after n
  trials";
- "best so far": per search seed, the minimum FD over its first n trials in completion order, then the
  mean over search seeds with a t interval (the unit is search seeds). This is what a TPE run reaches.

A diverged trial scores the worst finite FD among all the trials passed (both samplers alike): it used a
trial of the budget and found nothing better than the worst finish. A failed trial (no FD, not diverged)
is left out of the count.
"""
import math

import numpy as np
import pandas as pd

SCORE = "fd"


def scores_with_penalty(trials, score=SCORE):
    """A copy of the rows that count as trials, with column ``score_value``: the score, or the penalty
    (the worst finite score passed) where the trial diverged. Returns (rows, penalty)."""
    diverged = trials["diverged"].astype(bool)
    values = trials[score].astype(float)
    finite = np.isfinite(values) & ~diverged
    if not finite.any():
        raise ValueError(f"no trial has a finite {score}")
    penalty = float(values[finite].max())
    rows = trials[finite | diverged].copy()
    rows["score_value"] = np.where(rows["diverged"].astype(bool), penalty, rows[score].astype(float))
    return rows, penalty


def equal_budget(trials):
    """Each search's (sampler, search_seed) first n trials in completion order, n the fewest trials any
    search ran: the curves compare samplers at the budget every search had (a main search that ran longer
    than the budget-curve searches does not add its later, more exploiting trials to its sampler's pool)."""
    n = int(trials.groupby(["sampler", "search_seed"]).size().min())
    ordered = trials.sort_values(["sampler", "search_seed", "trial"])
    return ordered[ordered.groupby(["sampler", "search_seed"]).cumcount() < n]


def _min_weights(pool_size, n_max):
    """W[i, n-1] = P(the minimum of n draws with replacement is the i-th smallest of the pool):
    (1 - i/N)^n - (1 - (i+1)/N)^n for 0-based i (Dodge et al.'s formula, for the minimum)."""
    above = 1.0 - np.arange(pool_size + 1) / pool_size          # P(a draw is above the i-th smallest)
    powers = above[:, None] ** np.arange(1, n_max + 1)[None, :]
    return powers[:-1] - powers[1:]


def expected_best(scores, n_max):
    """For n = 1..n_max, the expected minimum of n draws with replacement from ``scores`` and the
    standard deviation of that minimum (the spread Dodge et al. draw as a band). Returns (mean, sd)."""
    v = np.sort(np.asarray(scores, dtype=float))
    w = _min_weights(len(v), n_max)
    mean = v @ w
    sd = np.sqrt(np.maximum((v ** 2) @ w - mean ** 2, 0.0))
    return mean, sd


def expected_best_curves(trials, *, score=SCORE, n_max=None, per_seed=False, resamples=200, level=0.95, seed=0):
    """Expected best ``score`` against n, per sampler: one pool per sampler (all its search seeds pooled),
    or with ``per_seed`` one pool per (sampler, search_seed). Columns: curve ("expected best"), sampler,
    search_seed (-1 when pooled), n, expected_best, sd, lo, hi (percentile bootstrap over the pool's
    trials, ``resamples`` resamples: how the estimate moves with the pool), pool_size. ``n_max`` defaults
    to the most trials one search ran (pass the rows through ``equal_budget`` first to compare samplers)."""
    rows, _ = scores_with_penalty(trials, score)
    if n_max is None:
        n_max = int(rows.groupby(["sampler", "search_seed"]).size().max())
    keys = ["sampler", "search_seed"] if per_seed else ["sampler"]
    out = []
    for key, part in rows.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        pool = part["score_value"].to_numpy()
        mean, sd = expected_best(pool, n_max)
        lo = hi = np.full(n_max, math.nan)
        if resamples and len(pool) > 1:
            lo, hi = _bootstrap_band(pool, n_max, resamples, level, seed)
        out.append(pd.DataFrame(dict(curve="expected best", sampler=key[0],
                                     search_seed=key[1] if per_seed else -1, n=np.arange(1, n_max + 1),
                                     expected_best=mean, sd=sd, lo=lo, hi=hi, pool_size=len(pool))))
    return pd.concat(out, ignore_index=True)


def _bootstrap_band(pool, n_max, resamples, level, seed):
    """Percentile interval of the expected best at each n over resamples of the pool with replacement."""
    from scipy.stats import bootstrap

    w = _min_weights(len(pool), n_max)
    res = bootstrap((pool,), lambda x, axis: np.moveaxis(np.sort(x, axis=axis) @ w, -1, 0), vectorized=True,
                    n_resamples=resamples, confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    return res.confidence_interval


def best_so_far(trials, score=SCORE):
    """Per (sampler, search_seed): the running minimum of ``score`` over its trials in completion order
    (column ``trial``). Columns: sampler, search_seed, n, best. Non-increasing in n by construction."""
    rows, _ = scores_with_penalty(trials, score)
    rows = rows.sort_values(["sampler", "search_seed", "trial"])
    rows["n"] = rows.groupby(["sampler", "search_seed"]).cumcount() + 1
    rows["best"] = rows.groupby(["sampler", "search_seed"])["score_value"].cummin()
    return rows[["sampler", "search_seed", "n", "best"]].reset_index(drop=True)


def best_so_far_curves(trials, *, score=SCORE, level=0.95):
    """The best-so-far curve averaged over search seeds, per sampler: curve ("best so far"), sampler, n,
    mean, lo, hi (t interval over search seeds at ``level``; NaN with one seed), n_seeds (the seeds
    whose search reached n trials)."""
    from scipy import stats

    out = []
    for (sampler, n), part in best_so_far(trials, score).groupby(["sampler", "n"], sort=True):
        best = part["best"].to_numpy()
        lo = hi = math.nan
        if len(best) > 1 and best.std() > 0:
            lo, hi = stats.t.interval(level, len(best) - 1, loc=best.mean(), scale=stats.sem(best))
        elif len(best) > 1:
            lo = hi = best.mean()
        out.append(dict(curve="best so far", sampler=sampler, n=n, mean=best.mean(), lo=lo, hi=hi,
                        n_seeds=len(best)))
    return pd.DataFrame(out)


def trials_saved(trials, *, score=SCORE, n_ref=None, fast="tpe", slow="random"):
    """How many trials ``fast`` saves over ``slow``, on each curve: ``fast``'s value at ``n_ref`` and the
    smallest n at which ``slow``'s curve reaches it; ``n_ref`` defaults to the fewest trials any search ran.
    Expected best: pooled over search seeds, n searched up to ``slow``'s pool size (draws with replacement
    from its pool); best so far: n searched up to the budget its searches ran. Returns
    one dict per curve: curve, n_ref, target, n_slow (None: not reached), saved (n_slow - n_ref; None
    when not reached; negative: ``slow`` got there first) and a sentence."""
    rows, _ = scores_with_penalty(trials, score)
    budget = rows.groupby(["sampler", "search_seed"]).size()
    if not {fast, slow} <= set(budget.index.get_level_values("sampler")):
        raise ValueError(f"trials need samplers {fast!r} and {slow!r}, got {sorted(set(rows['sampler']))}")
    n_ref = int(budget.min()) if n_ref is None else int(n_ref)
    pool_slow = rows.loc[rows["sampler"] == slow, "score_value"].to_numpy()
    pool_fast = rows.loc[rows["sampler"] == fast, "score_value"].to_numpy()
    expected = (float(expected_best(pool_fast, n_ref)[0][-1]),
                expected_best(pool_slow, len(pool_slow))[0])
    means = best_so_far_curves(trials, score=score).set_index(["sampler", "n"])["mean"]
    so_far = (float(means.get((fast, n_ref), math.nan)), means.loc[slow].reindex(range(1, n_ref + 1)).to_numpy())
    out = []
    for curve, (target, slow_curve) in (("expected best", expected), ("best so far", so_far)):
        reached = np.flatnonzero(slow_curve <= target)
        n_slow = int(reached[0]) + 1 if len(reached) else None
        reach = f"{curve}: {fast} reaches {target:.4g} in n={n_ref} trials; {slow}"
        if n_slow is None:
            more = len(slow_curve) - n_ref
            sentence = f"{reach} does not within n={len(slow_curve)}" + (f": {fast} saves more than {more}" * (more > 0))
        elif n_slow > n_ref:
            sentence = f"{reach} needs n={n_slow}: {fast} saves {n_slow - n_ref} trials"
        else:
            sentence = f"{reach} needs n={n_slow}: {fast} saves none ({slow} gets there {n_ref - n_slow} trials sooner)"
        out.append(dict(curve=curve, n_ref=n_ref, target=target, n_slow=n_slow,
                        saved=None if n_slow is None else n_slow - n_ref, sentence=sentence))
    return out
