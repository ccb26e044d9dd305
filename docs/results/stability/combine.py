"""The study's primary metric over blocks of seeds that live in different MLflow stores, from their
reports' runs.csv files: for each claim, the paired contrast of log final FD (alternative cell minus
the paper's cell, within a seed), its mean over seeds as a ratio of geometric means, the 95 % t
interval and the paired t test's p (scipy). The seed is the unit of replication; a seed counts once
(a seed present in two files is an error: re-runs of a seed are compared with ``--replicate``).
A diverged run has no final FD: as in the report (orchestrator/report/model.analysis_values), it
takes the worst final FD observed among the runs read (censored: tied with the worst finished run,
never above it). A run that failed (was interrupted) is left out.

This is the primary metric only, not the report's verdict: the report also needs the FD histories
(its plateau test and the Holm-corrected secondaries), which runs.csv does not carry.

``--groups A=0-2,10-13 B=3-9`` adds a secondary check: the same contrast within each group of
seeds (e.g. the CPU type the block ran on), with its t interval, and Welch's t test of the two
groups' difference, Holm-corrected over the claims (statsmodels); a check that pooling the groups
is sound, not a verdict.

Usage: python combine.py runs.csv [runs.csv ...] [--groups NAME=SEEDS NAME=SEEDS]
       python combine.py --replicate a/runs.csv b/runs.csv   (the same seeds run twice: per-run log ratio)
"""
import math
import sys

import pandas as pd
from scipy import stats

from search_spaces.loader import load_space, paper_defaults

SPACE = load_space("paper-claims-paired")      # the stability preset's space
PAPER = paper_defaults(SPACE)                  # the paper's levels: the config's defaults
CLAIMS = {key: next(v for v in p.values if v != PAPER[key]) for key, p in SPACE.params.items()}


def _load(path, diverged=False):
    """The finished runs with a final FD (and, with ``diverged``, the diverged runs, FD still NaN)."""
    runs = pd.read_csv(path)
    keep = (runs["status"] == "finished") & runs["fd_final"].notna()
    if diverged:
        keep |= runs["diverged"] == 1.0
    runs = runs[keep].copy()
    runs["log_fd"] = runs["fd_final"].map(math.log)
    return runs


def censored(runs):
    """``runs`` with each diverged run's final FD set to the worst finished one; and how many."""
    hit = runs["diverged"] == 1.0
    runs = runs.copy()
    runs.loc[hit, "fd_final"] = runs.loc[~hit, "fd_final"].max()
    runs["log_fd"] = runs["fd_final"].map(math.log)
    return runs, int(hit.sum())


def _cell(runs, **levels):
    mask = pd.Series(True, index=runs.index)
    for key, value in {**PAPER, **levels}.items():
        mask &= runs[key].astype(str) == str(value)
    return runs[mask].set_index("seed")["log_fd"]


def _seeds(text):
    """'0-2,10-13' -> {0, 1, 2, 10, 11, 12, 13}."""
    out = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out


def _t_row(diff):
    """The mean log contrast over seeds as a ratio, its 95 % t interval, the SD."""
    n, mean, sd = len(diff), float(diff.mean()), float(diff.std(ddof=1))
    lo, hi = stats.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return {"seeds": n, "ratio": math.exp(mean), "lo": math.exp(lo), "hi": math.exp(hi), "sd_diff": sd}


def contrasts(runs):
    """{claim: log FD of its alternative cell minus the paper's, per seed with both cells finished}."""
    paper = _cell(runs)
    return {claim: (_cell(runs, **{claim: alt}) - paper).dropna() for claim, alt in CLAIMS.items()}


def by_group(diffs, groups):
    """Each claim's contrast within each group of seeds, and Welch's t of group A against B
    (Holm over the claims): [(claim, {group: row}, p, Holm p)]."""
    from statsmodels.stats.multitest import multipletests

    out = []
    for claim, diff in diffs.items():
        parts = {name: diff[diff.index.isin(seeds)] for name, seeds in groups.items()}
        a, b = parts.values()
        out.append((claim, {name: _t_row(d) for name, d in parts.items()},
                    float(stats.ttest_ind(a, b, equal_var=False).pvalue)))
    holm = multipletests([p for *_, p in out], method="holm")[1]
    return [(claim, rows, p, float(h)) for (claim, rows, p), h in zip(out, holm)]


def combined(paths):
    """(rows, contrasts, runs censored): the primary metric per claim over the files' seeds."""
    runs, n_censored = censored(pd.concat([_load(p, diverged=True) for p in paths]))
    twice = runs.groupby(["seed", "lr", "beta1", "bn_placement"]).size()
    if (twice > 1).any():
        print(f"combine.py: seeds {sorted({s for s, *_ in twice[twice > 1].index})} appear in more than one "
              "file; a seed is one unit (compare re-runs with --replicate)", file=sys.stderr)
        sys.exit(2)
    diffs = contrasts(runs)
    rows = []
    for claim, diff in diffs.items():
        cens = runs[(runs["diverged"] == 1.0) & runs["seed"].isin(diff.index)]
        rows.append({"claim": claim, **_t_row(diff), "censored": int(_cell(cens, **{claim: CLAIMS[claim]}).size),
                     "p": float(stats.ttest_1samp(diff, 0.0).pvalue),
                     "seed_list": ",".join(str(s) for s in sorted(diff.index))})
    return rows, diffs, n_censored


def replicate(path_a, path_b):
    a, b = _load(path_a), _load(path_b)
    keys = ["seed", "lr", "beta1", "bn_placement"]
    both = a[keys + ["fd_final", "log_fd"]].merge(b[keys + ["fd_final", "log_fd"]], on=keys, suffixes=("_a", "_b"))
    both["log_ratio"] = both["log_fd_b"] - both["log_fd_a"]
    return both


def main(argv):
    if argv[:1] == ["--replicate"] and len(argv) == 3:
        both = replicate(argv[1], argv[2])
        for r in both.itertuples():
            print(f"seed {r.seed} lr {r.lr} beta1 {r.beta1} bn {r.bn_placement}: final FD {r.fd_final_a:.1f} -> "
                  f"{r.fd_final_b:.1f} (log ratio {r.log_ratio:+.3f})")
        print(f"{len(both)} runs run twice: SD of the log ratio {both['log_ratio'].std(ddof=1):.3f}")
        return 0
    groups = {}
    if "--groups" in argv:
        i = argv.index("--groups")
        argv, spec = argv[:i], argv[i + 1:]
        try:
            groups = {name: _seeds(seeds) for name, _, seeds in (g.partition("=") for g in spec)}
        except ValueError:
            groups = {}
        if len(groups) != 2:
            print(f"combine.py: --groups={' '.join(spec)!r} is not allowed: two NAME=SEEDS "
                  "(e.g. amd=0-2,10-13 intel=3-9,14-19)", file=sys.stderr)
            return 2
    if not argv:
        raise SystemExit(__doc__)
    rows, diffs, n_censored = combined(argv)
    for r in rows:
        print(f"{r['claim']}: final FD alt/paper x{r['ratio']:.3f} [95 % t: {r['lo']:.3f}, {r['hi']:.3f}], "
              f"paired t p = {r['p']:.4f}, {r['seeds']} seeds ({r['seed_list']}), SD of the log contrast "
              f"{r['sd_diff']:.3f}; alternative runs censored as diverged: {r['censored']}")
    print(f"{n_censored} diverged run(s) censored at the worst finished final FD")
    for claim, parts, p, holm in by_group(diffs, groups) if groups else ():
        within = "; ".join(f"{name}: x{r['ratio']:.3f} [95 % t: {r['lo']:.3f}, {r['hi']:.3f}], {r['seeds']} seeds"
                           for name, r in parts.items())
        print(f"{claim} by group (secondary): {within}; Welch t of the groups' difference p = {p:.3f}, "
              f"Holm over the claims p = {holm:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
