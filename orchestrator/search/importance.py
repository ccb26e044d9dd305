"""Which knob matters: the importance of lr, beta1 and bn_placement for log final FD, from Optuna's own
evaluators (fANOVA, PED-ANOVA) on an in-memory study rebuilt from the trials table, with percentile
bootstrap intervals over trials.

Diverged trials have no FD. Two handlings, both reported:
- "penalised": a diverged trial scores the worst finite log FD among the trials passed (a tie with the
  worst run that finished: divergence is bad, but no worse than the worst finish, so one diverged trial
  cannot dominate the variance fANOVA decomposes);
- "excluded": diverged trials are left out (importance among the runs that finished).
A failed trial (no FD and not diverged: an error, not the configuration's doing) is left out in both.
"""
import math
import warnings

import numpy as np
import pandas as pd

SPACE = "lr-beta1-bn"                      # the search space file the study searched
PARAMS = ("lr", "beta1", "bn_placement")
HANDLINGS = ("penalised", "excluded")
EVALUATORS = ("fanova", "ped_anova")
OBJECTIVE = "log_fd"                       # natural log of final FD, the table's column


def search_distributions(space=SPACE):
    """The Optuna distributions of the searched keys, from the search space file (one home for the ranges)."""
    from search_spaces.loader import load_space, to_optuna

    return to_optuna(load_space(space))


def paper_point(space=SPACE):
    """The paper's values of the searched keys (the config's defaults): lr 2e-4, beta1 0.5, bn_placement paper."""
    from search_spaces.loader import load_space, paper_defaults

    return paper_defaults(load_space(space))


def scored_trials(trials, handling):
    """The trials that take part under ``handling``, with column ``y``: their log FD, or for a diverged
    trial the penalty (when penalised). Returns (rows, note): note says how diverged trials were scored."""
    if handling not in HANDLINGS:
        raise ValueError(f"handling={handling!r}: allowed {', '.join(HANDLINGS)}")
    diverged = trials["diverged"].astype(bool)
    finite = np.isfinite(trials[OBJECTIVE].astype(float)) & ~diverged
    if not finite.any():
        raise ValueError("no trial has a finite log FD")
    rows = trials[finite | diverged].copy() if handling == "penalised" else trials[finite].copy()
    rows["y"] = rows[OBJECTIVE].astype(float)
    if handling == "penalised":
        penalty = float(trials.loc[finite, OBJECTIVE].max())
        rows.loc[rows["diverged"].astype(bool), "y"] = penalty
        note = f"diverged scored log FD {penalty:.3f} (the worst finite)"
    else:
        note = "diverged left out"
    return rows, note


def optuna_study(rows, distributions, params=PARAMS):
    """An in-memory single-objective study (minimise ``y``) holding one COMPLETE trial per row."""
    import optuna

    study = optuna.create_study(direction="minimize")
    study.add_trials([
        optuna.trial.create_trial(params={p: as_python(row[p]) for p in params},
                                  distributions={p: distributions[p] for p in params}, value=float(row["y"]))
        for _, row in rows.iterrows()])
    return study


def as_python(value):
    """A numpy scalar as the Python value Optuna's distributions check against."""
    return value.item() if isinstance(value, np.generic) else value


def make_evaluator(name, n_trees=32, max_depth=8, seed=0):
    """Optuna's evaluator by name: fANOVA (random-forest variance decomposition; ``n_trees`` trees of depth
    at most ``max_depth``, below Optuna's 64 and 64 so that a bootstrap of a few hundred trials refits in
    minutes: on the tests' synthetic table of 288 trials, 1.2 s a fit against 6.5 s on a loaded 2-core
    machine, importances equal to within 0.006) or
    PED-ANOVA (how the top 10 % of trials differ from all trials, Optuna's defaults)."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if name == "fanova":
        return FanovaImportanceEvaluator(n_trees=n_trees, max_depth=max_depth, seed=seed)
    if name == "ped_anova":
        return PedAnovaImportanceEvaluator()
    raise ValueError(f"evaluator={name!r}: allowed {', '.join(EVALUATORS)}")


def importances(rows, evaluator, distributions, params=PARAMS):
    """Normalised importances (they sum to 1, as ``optuna.importance.get_param_importances`` defines),
    in ``params`` order. Trials that all score alike (a small bootstrap resample can) leave nothing to
    explain: every importance is 0, which Optuna's normalisation turns into equal shares; fANOVA would
    raise, so they get equal shares here directly."""
    import optuna
    from optuna.importance import get_param_importances

    if rows["y"].nunique() < 2:
        return np.full(len(params), 1.0 / len(params))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # experimental-API and small-sample notes
            study = optuna_study(rows, distributions, params)
            got = get_param_importances(study, evaluator=evaluator, params=list(params))
    finally:
        optuna.logging.set_verbosity(verbosity)
    return np.array([float(got[p]) for p in params])


def importance_table(trials, *, evaluators=EVALUATORS, handlings=HANDLINGS, resamples=200, level=0.95,
                     n_trees=32, max_depth=8, seed=0, space=SPACE):
    """One row per (evaluator, handling, parameter): parameter, importance (on all trials passed), lo and
    hi (percentile bootstrap interval at ``level`` from ``resamples`` resamples of trials with
    replacement: the unit is trials, each resample refitted), evaluator, handling, diverged (how diverged
    trials were scored), n_trials, n_diverged. Pass the stage-1 rows; ``resamples=0`` skips intervals."""
    distributions = search_distributions(space)
    out = []
    for handling in handlings:
        rows, note = scored_trials(trials, handling)
        rows = rows.reset_index(drop=True)
        for name in evaluators:
            evaluator = make_evaluator(name, n_trees=n_trees, max_depth=max_depth, seed=seed)
            point = importances(rows, evaluator, distributions)
            lo = hi = np.full(len(PARAMS), math.nan)
            if resamples:
                lo, hi = _bootstrap_interval(rows, evaluator, distributions, resamples, level, seed)
            for i, param in enumerate(PARAMS):
                out.append(dict(parameter=param, importance=point[i], lo=lo[i], hi=hi[i], evaluator=name,
                                handling=handling, diverged=note, n_trials=len(rows),
                                n_diverged=int(rows["diverged"].astype(bool).sum())))
    table = pd.DataFrame(out)
    table.attrs.update(resamples=resamples, level=level)
    return table


def _bootstrap_interval(rows, evaluator, distributions, resamples, level, seed):
    """Percentile interval of each importance over resamples of the trials with replacement (refitted)."""
    from scipy.stats import bootstrap

    res = bootstrap((np.arange(len(rows)),), lambda idx: importances(rows.iloc[idx], evaluator, distributions),
                    vectorized=False, n_resamples=resamples, confidence_level=level, method="percentile",
                    rng=np.random.default_rng(seed))
    return res.confidence_interval


def importance_markdown(table):
    """The importance table as markdown, most important first within each evaluator and handling."""
    level = table.attrs.get("level", 0.95)
    lines = [f"| evaluator | handling | parameter | importance | {level:.0%} interval | trials (diverged) |",
             "|---|---|---|---|---|---|"]
    for (name, handling), part in table.groupby(["evaluator", "handling"], sort=False):
        for _, r in part.sort_values("importance", ascending=False).iterrows():
            interval = "" if math.isnan(r["lo"]) else f"[{r['lo']:.3f}, {r['hi']:.3f}]"
            lines.append(f"| {name} | {handling} | {r['parameter']} | {r['importance']:.3f} | {interval} "
                         f"| {r['n_trials']} ({r['n_diverged']}) |")
    notes = sorted(set(table["diverged"]))
    resamples = table.attrs.get("resamples", 0)
    lines += ["", f"Importances normalised to sum to 1 per evaluator and handling (Optuna's definition). "
              f"Intervals: percentile bootstrap over trials, {resamples} resamples, each refitted. "
              f"Diverged trials: {'; '.join(notes)}."]
    if table["n_trials"].min() < 10:
        lines += ["", f"Only {table['n_trials'].min()} trials: too few for these importances to say much."]
    return "\n".join(lines) + "\n"
