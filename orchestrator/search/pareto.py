"""The two-objective search's Pareto front: trials no other trial beats on both final log FD and a
stability metric (both lower is better), found by Optuna (``study.best_trials`` of a multi-objective
in-memory study rebuilt from the table)."""
import warnings

import numpy as np

from orchestrator.search.importance import PARAMS, SPACE, as_python, search_distributions

OBJECTIVES = ("log_fd", "fd_volatility")   # the table's columns; lower is better for both


def pareto_front(trials, objectives=OBJECTIVES, space=SPACE):
    """The trials with every objective finite (diverged and failed trials have no final FD and are left
    out), with a column ``on_front``: True for the non-dominated ones. Row order and index are kept."""
    import optuna

    missing = [c for c in objectives if c not in trials]
    if missing:
        raise ValueError(f"objectives {missing} are not columns of the trials table")
    values = trials[list(objectives)].astype(float)
    rows = trials[np.isfinite(values).all(axis=1)].copy()
    dists = search_distributions(space)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            study = optuna.create_study(directions=["minimize"] * len(objectives))
            study.add_trials([
                optuna.trial.create_trial(
                    params={p: as_python(row[p]) for p in PARAMS}, distributions={p: dists[p] for p in PARAMS},
                    values=[float(row[c]) for c in objectives], user_attrs={"row": i})
                for i, (_, row) in enumerate(rows.iterrows())])
            front = {t.user_attrs["row"] for t in study.best_trials}
    finally:
        optuna.logging.set_verbosity(verbosity)
    rows["on_front"] = [i in front for i in range(len(rows))]
    return rows
