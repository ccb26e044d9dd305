"""The spread of log final FD at the study's horizon, from a report's runs.csv: the within-cell SD
after removing cell and seed effects (OLS of log fd_final on cell + seed: the paired design's
residual), its 95 % interval (chi-square on the residual degrees of freedom) and the seed SD
(the variance of the seeds' means over cells less its residual share, method of moments;
balanced designs). Finished, non-diverged runs only; the
runs are the unit. Several runs.csv files (blocks of different seeds) are read as one design; a seed
in two files is an error. Usage: python spread.py runs.csv [runs.csv ...]
"""
import math
import sys

import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats


def spread(*paths):
    blocks = [pd.read_csv(path) for path in paths]
    seen = set()
    for path, block in zip(paths, blocks):
        shared = seen & set(block["seed"])
        if shared:
            sys.exit(f"error: seed {sorted(shared)[0]} appears in {path} and an earlier file; "
                     "each seed must come from one file")
        seen |= set(block["seed"])
    runs = pd.concat(blocks, ignore_index=True)
    runs = runs[(runs["status"] == "finished") & (runs["diverged"] != 1.0) & runs["fd_final"].notna()].copy()
    runs["log_fd"] = runs["fd_final"].map(math.log)
    runs["cell"] = runs[["lr", "beta1", "bn_placement"]].astype(str).agg("/".join, axis=1)
    fit = smf.ols("log_fd ~ C(cell) + C(seed)", data=runs).fit()
    df = int(fit.df_resid)
    sd = math.sqrt(fit.scale)
    lo, hi = (sd * math.sqrt(df / stats.chi2.ppf(q, df)) for q in (0.975, 0.025))
    n_cells = runs["cell"].nunique()
    seed_var = max(float(runs.groupby("seed")["log_fd"].mean().var(ddof=1)) - fit.scale / n_cells, 0.0)
    return {"runs": len(runs), "cells": n_cells, "seeds": runs["seed"].nunique(), "df": df, "sd": sd,
            "sd_lo": lo, "sd_hi": hi, "seed_sd": math.sqrt(seed_var)}


if __name__ == "__main__":
    s = spread(*sys.argv[1:])
    print(f"{s['runs']} runs, {s['cells']} cells x {s['seeds']} seeds: within-cell SD of log final FD "
          f"{s['sd']:.3f} [95 %: {s['sd_lo']:.3f}, {s['sd_hi']:.3f}] on {s['df']} residual df; "
          f"seed SD {s['seed_sd']:.3f} (an estimate by moments)")
