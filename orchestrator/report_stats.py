"""The numbers behind a report: cells, bootstrap CIs, claim effects and verdicts (pure functions).

A *record* is one run as a dict: ``levels`` (factor -> level label), ``seed``, and the per-run
values in ``values`` (``fd_final``, ``fd_best``, ``diverged``, ``collapsed``, ``sample_oscillation``,
``fd_volatility``, ``steps_to_fd``). A missing or NaN value stays NaN: the run is still counted
in ``n``, and every statistic says over how many finite values it was taken.
"""
import math
from dataclasses import dataclass, field

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
MIN_CELLS = 3   # without seeds (one run per level and cell), an effect's CI needs this many matched cells
CI_LEVEL = 0.95

# Columns of every table: (key, header, which way is better).
COLUMNS = (
    ("n", "n", None),
    ("fd_mean", "final FD mean", "min"),
    ("fd_std", "± std", None),
    ("fd_ci", "95 % CI", None),
    ("fd_best", "best FD", "min"),
    ("diverged", "diverged", "min"),
    ("collapsed", "collapsed", "min"),
    ("sample_oscillation", "sample osc.", "min"),
    ("fd_volatility", "FD volatility", "min"),
    ("steps_to_fd", "steps to FD≤T", "min"),
)


def finite(values):
    return [v for v in values if v is not None and math.isfinite(v)]


def mean_or_nan(values):
    v = finite(values)
    return float(np.mean(v)) if v else math.nan


def std_or_nan(values):
    """Sample std (ddof 1) over finite values; NaN with fewer than two."""
    v = finite(values)
    return float(np.std(v, ddof=1)) if len(v) > 1 else math.nan


def bootstrap_ci(values, seed=0, resamples=BOOTSTRAP_RESAMPLES, level=CI_LEVEL):
    """Percentile bootstrap CI of the mean over finite values: (lo, hi); NaNs with fewer than two."""
    v = np.asarray(finite(values), dtype=float)
    if len(v) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def rate(values):
    """Share of runs where a 0/1 flag is set, over the runs where it is known."""
    v = finite(values)
    return float(np.mean(v)) if v else math.nan


@dataclass
class Row:
    levels: dict
    stats: dict
    paper: bool = False
    best: set = field(default_factory=set)


def cell_stats(records, seed=0):
    """One table row's numbers from the runs of one cell (or of one factor level)."""
    vals = lambda key: [r["values"].get(key, math.nan) for r in records]  # noqa: E731
    fd = vals("fd_final")
    reached = finite(vals("steps_to_fd"))
    return {
        "n": len(records),
        "n_fd": len(finite(fd)),
        "fd_mean": mean_or_nan(fd),
        "fd_std": std_or_nan(fd),
        "fd_ci": bootstrap_ci(fd, seed=seed),
        "fd_best": min(finite(vals("fd_best")), default=math.nan),
        "diverged": rate(vals("diverged")),
        "collapsed": rate(vals("collapsed")),
        "sample_oscillation": mean_or_nan(vals("sample_oscillation")),
        "fd_volatility": mean_or_nan(vals("fd_volatility")),
        "steps_to_fd": float(np.mean(reached)) if reached else math.nan,
        "n_reached": len(reached),
    }


def group(records, factors):
    """{tuple of levels: [records]} in a stable order (levels sorted as in ``level_order``)."""
    out = {}
    for r in records:
        out.setdefault(tuple(r["levels"][f] for f in factors), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(_sort_key(x) for x in kv[0])))


def _sort_key(level):
    try:
        return (0, float(level), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(level))


def table(records, factors, paper_levels, seed=0):
    """Rows for every combination of ``factors`` present in the runs, best values marked."""
    rows = []
    for key, members in group(records, factors).items():
        levels = dict(zip(factors, key))
        paper = all(paper_levels.get(f) == lvl for f, lvl in levels.items())
        rows.append(Row(levels, cell_stats(members, seed=seed), paper))
    for col, _header, better in COLUMNS:
        if better is None:
            continue
        values = [r.stats[col] for r in rows]
        if not finite(values):
            continue
        best = min(finite(values))
        if col in ("diverged", "collapsed") and best == max(finite(values)):
            continue  # every cell the same: nothing to mark
        for r in rows:
            if r.stats[col] == best:
                r.best.add(col)
    return rows


# ---- Claims ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """A paper statement: ``paper`` level beats ``alt`` on factor ``factor``.

    ``expect`` maps a metric to the sign the paper predicts for ``alt - paper`` (+1: the
    alternative is worse on a lower-is-better metric, -1: the alternative is better).
    """
    key: str
    factor: str
    paper: str
    alt: str
    text: str
    source: str
    expect: tuple


CLAIM_METRICS = ("fd_final", "diverged", "sample_oscillation", "fd_volatility", "steps_to_fd")
_WORSE = (("fd_final", 1), ("diverged", 1), ("sample_oscillation", 1))

CLAIMS = (
    Claim("lr", "lr", "0.0002", "0.001", "a learning rate of 0.001 was too high; 0.0002 works",
          "section 4", _WORSE),
    Claim("beta1", "beta1", "0.5", "0.9", "beta1 = 0.9 made training oscillate and unstable; 0.5 stabilised it",
          "section 4", _WORSE + (("fd_volatility", 1),)),
    Claim("bn", "bn_placement", "paper", "all",
          "BatchNorm on every layer (G output and D input too) caused sample oscillation and instability",
          "section 3", _WORSE + (("fd_volatility", 1),)),
    Claim("d_downsample", "d_downsample", "strided", "maxpool",
          "strided convolutions in D beat deterministic spatial pooling (max-pooling)", "section 3", (("fd_final", 1),)),
    Claim("g_upsample", "g_upsample", "transposed", "resize_conv",
          "G learns its own upsampling with fractionally-strided convolutions", "section 3", (("fd_final", 1),)),
    Claim("d_head_gap", "d_head", "conv", "gap",
          "global average pooling increased stability but hurt convergence speed", "section 3",
          (("fd_volatility", -1), ("steps_to_fd", 1))),
    Claim("d_head_fc", "d_head", "conv", "fc",
          "no fully connected hidden layers on top of the convolutional features", "section 3", (("fd_final", 1),)),
    Claim("d_activation", "d_activation", "leaky_relu", "relu",
          "leaky ReLU in D works well, especially at higher resolution", "section 3", (("fd_final", 1),)),
    Claim("g_activation", "g_activation", "relu", "leaky_relu",
          "ReLU in G's hidden layers (the paper's choice)", "section 3", (("fd_final", 1),)),
)


def matched_cells(records, factor, paper, alt, other_factors):
    """Cells that differ in ``factor`` alone: {other levels: ([paper runs], [alt runs])}, both non-empty."""
    cells = {}
    for r in records:
        lvl = r["levels"].get(factor)
        if lvl not in (paper, alt):
            continue
        key = tuple(r["levels"][f] for f in other_factors)
        pair = cells.setdefault(key, ([], []))
        pair[0 if lvl == paper else 1].append(r)
    return {k: v for k, v in cells.items() if v[0] and v[1]}


def claim_effect(cells, metric, seed=0, resamples=BOOTSTRAP_RESAMPLES, level=CI_LEVEL):
    """Mean over matched cells of mean(alt) - mean(paper), with a two-level bootstrap CI.

    The bootstrap resamples cells, then runs (seeds) within each level of each drawn cell.
    Returns (effect, lo, hi, n_cells, n_paper, n_alt); NaNs when no cell has finite values, and a
    NaN interval when nothing is replicated: no cell with two runs on each side, and fewer than
    ``MIN_CELLS`` cells to resample.
    """
    pairs = []
    for paper_runs, alt_runs in cells.values():
        a = np.asarray(finite(r["values"].get(metric, math.nan) for r in paper_runs), float)
        b = np.asarray(finite(r["values"].get(metric, math.nan) for r in alt_runs), float)
        if len(a) and len(b):
            pairs.append((a, b))
    n_a, n_b = sum(len(a) for a, _ in pairs), sum(len(b) for _, b in pairs)
    if not pairs:
        return math.nan, math.nan, math.nan, 0, 0, 0
    effect = float(np.mean([b.mean() - a.mean() for a, b in pairs]))
    if len(pairs) < MIN_CELLS and all(len(a) < 2 or len(b) < 2 for a, b in pairs):
        return effect, math.nan, math.nan, len(pairs), n_a, n_b  # too little replication for an interval
    rng = np.random.default_rng(seed)
    k = len(pairs)
    picked = rng.integers(0, k, size=(resamples, k))       # cells drawn for each resample
    total = np.zeros(resamples)
    for slot in range(k):
        # Every cell's within-cell resampled difference of means, then the one each resample drew.
        diffs = np.stack([_resampled_means(b, rng, resamples) - _resampled_means(a, rng, resamples) for a, b in pairs])
        total += diffs[picked[:, slot], np.arange(resamples)]
    draws = total / k
    alpha = (1 - level) / 2
    return effect, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha)), len(pairs), n_a, n_b


def _resampled_means(values, rng, resamples):
    return values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)


def metric_verdict(lo, hi, expected_sign):
    """supported / contradicted when the CI excludes zero in / against the expected direction."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 <= hi:
        return "inconclusive"
    sign = 1 if lo > 0 else -1
    return "supported" if sign == expected_sign else "contradicted"


def overall_verdict(verdicts):
    """Supported if some metric supports the claim and none contradicts it; the mirror for
    contradicted; inconclusive when none is decisive or they disagree."""
    s, c = "supported" in verdicts, "contradicted" in verdicts
    if s and not c:
        return "supported"
    if c and not s:
        return "contradicted"
    return "inconclusive"


def evaluate_claim(claim, records, factors, seed=0):
    """The claim's effects and verdict from the runs that differ in ``claim.factor`` alone, or None
    when the runs hold no such pair."""
    if claim.factor not in factors:
        return None
    others = [f for f in factors if f != claim.factor]
    cells = matched_cells(records, claim.factor, claim.paper, claim.alt, others)
    if not cells:
        return None
    effects = []
    for metric, sign in claim.expect:
        effect, lo, hi, n_cells, n_a, n_b = claim_effect(cells, metric, seed=seed)
        effects.append({"metric": metric, "expected": "+" if sign > 0 else "-", "effect": effect, "lo": lo, "hi": hi,
                        "n_cells": n_cells, "n_paper": n_a, "n_alt": n_b, "verdict": metric_verdict(lo, hi, sign)})
    return {"claim": claim, "cells": len(cells), "effects": effects,
            "verdict": overall_verdict([e["verdict"] for e in effects])}
