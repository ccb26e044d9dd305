"""A report's tables: one row per cell (or per level of one factor), described, not tested.

A *record* is one run as a dict (``report.data.records`` makes them): ``levels`` (factor -> level
label), ``seed``, ``status``, ``final_step``, ``fd_key`` and ``history`` (metric -> [(step, value)]),
and its final values in ``values`` (the keys of ``search_spaces.metrics.METRICS``). A missing or NaN value
stays NaN: the run is still counted in ``n``, and every statistic says over how many finite values
it was taken. The claims' inference is in ``report.claims``.
"""
import math
from dataclasses import dataclass, field

import numpy as np

CI_LEVEL = 0.95

# Columns of every table: (key, header, which way is better).
COLUMNS = (
    ("n", "n", None),
    ("fd_gmean", "final FD (geo. mean)", "min"),
    ("fd_interval", "95 % t CI (n ≥ 3) / range (n = 2)", None),
    ("fd_best", "best FD", "min"),
    ("diverged", "diverged", "min"),
    ("mode_collapse", "mode collapse", "min"),
    ("attribute_skew", "attr. skew", "min"),
    ("sample_oscillation", "sample osc.", "min"),
    ("fd_volatility", "FD volatility", "min"),
    ("steps_to_fd", "steps to FD≤T", "min"),
)
RATES = ("diverged", "mode_collapse", "attribute_skew")


def finite(values):
    return [v for v in values if v is not None and math.isfinite(v)]


def mean_or_nan(values):
    v = finite(values)
    return float(np.mean(v)) if v else math.nan


def fd_interval(values, level=CI_LEVEL):
    """(kind, lo, hi) for a cell's final FDs: a t interval of the geometric mean (on log FD) for
    n >= 3, the two values as a range for n = 2 (never called a CI), nothing for n = 1."""
    from statsmodels.stats.weightstats import DescrStatsW

    v = [x for x in finite(values) if x > 0]
    if len(v) >= 3:
        lo, hi = DescrStatsW(np.log(v)).tconfint_mean(alpha=1 - level)
        return "t", float(np.exp(lo)), float(np.exp(hi))
    if len(v) == 2:
        return "range", min(v), max(v)
    return "", math.nan, math.nan


def geometric_mean(values):
    v = [x for x in finite(values) if x > 0]
    return float(np.exp(np.mean(np.log(v)))) if v else math.nan


@dataclass
class Row:
    levels: dict
    stats: dict
    paper: bool = False
    best: set = field(default_factory=set)


def cell_stats(records, n_cells=1):
    """One table row's numbers from the runs of one cell, or of one factor level over ``n_cells``
    cells: a row over several cells gets no interval (its runs are not replicates of one setting)."""
    vals = lambda key: [r["values"].get(key, math.nan) for r in records]  # noqa: E731
    fd = vals("fd_final")
    reached = finite(vals("steps_to_fd"))
    return {
        "n": len(records),
        "n_cells": n_cells,
        "n_fd": len(finite(fd)),
        "fd_gmean": geometric_mean(fd),
        "fd_interval": fd_interval(fd) if n_cells == 1 else ("", math.nan, math.nan),
        "fd_best": min(finite(vals("fd_best")), default=math.nan),
        **{k: mean_or_nan(vals(k)) for k in RATES},
        "sample_oscillation": mean_or_nan(vals("sample_oscillation")),
        "fd_volatility": mean_or_nan(vals("fd_volatility")),
        "steps_to_fd": float(np.mean(reached)) if reached else math.nan,
        "n_reached": len(reached),
        "n_timed": sum(1 for r in records if r.get("history_known", True)),   # runs whose FD history is known
    }


def group(records, factors):
    """{tuple of levels: [records]} in a stable order (numbers by value, then names)."""
    out = {}
    for r in records:
        out.setdefault(tuple(r["levels"][f] for f in factors), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(_sort_key(x) for x in kv[0])))


def _sort_key(level):
    try:
        return (0, float(level), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(level))


def table(records, factors, paper_levels, cell_factors=None):
    """Rows for every combination of ``factors`` present in the runs, best values marked.
    ``cell_factors``: the factors that make a cell (default ``factors``); a row whose runs span
    several cells (a marginal row, e.g. "by lr") gets no interval."""
    rows = []
    for key, members in group(records, factors).items():
        levels = dict(zip(factors, key))
        paper = all(paper_levels.get(f, lvl) == lvl for f, lvl in levels.items())   # a factor without one: any
        n_cells = len(group(members, cell_factors)) if cell_factors else 1
        rows.append(Row(levels, cell_stats(members, n_cells), paper))
    for col, _header, better in COLUMNS:
        if better is None:
            continue
        values = finite([r.stats[col] for r in rows])
        if not values or (col in RATES and min(values) == max(values)):
            continue  # nothing to mark (a rate that is the same everywhere)
        for r in rows:
            if r.stats[col] == min(values):
                r.best.add(col)
    return rows
