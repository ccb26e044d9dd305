"""The Optuna searcher of one stage-1 search, through Ray Tune's OptunaSearch.

One objective (``fd``): Tune's trials report their FD at every evaluation, and OptunaSearch tells
Optuna the last one. Several (``fd,loss_oscillation``: Optuna's multi-objective TPE or random
sampler): the others are metrics a run logs once, at its end, which Tune never sees; the searcher
reads them from the trial's MLflow run when Tune says the trial is complete.
"""
import math

from ray.tune.search.optuna import OptunaSearch

from orchestrator.search.settings import OBJECTIVE, objective_names


def make_searcher(sampler, seed, budget, space, s, study_name, store_uri, parent):
    """(search_alg, param_space, num_samples) for a stage-1 search: ``sampler`` ("tpe" or "random")
    seeded by ``seed``, the paper's point first. Its Optuna study is in memory, saved with Tune's
    experiment state: a restored experiment's searcher then stands exactly where Tune's trials do
    (an RDB study outlives the snapshot, and a trial finished after it could not be reported again)."""
    import os

    import optuna

    from search_spaces.loader import paper_defaults, to_optuna

    chosen = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.startup_trials) if sampler == "tpe"
              else optuna.samplers.RandomSampler(seed=seed))
    names = objective_names(s)
    if len(names) > 1:   # Tune checks that every result holds every objective; end-of-run metrics never are
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    alg = StudySearch(store_uri, parent, space=to_optuna(space), metric=names if len(names) > 1 else OBJECTIVE,
                      mode=["min"] * len(names) if len(names) > 1 else "min", sampler=chosen, study_name=study_name,
                      points_to_evaluate=[paper_defaults(space)])
    return alg, None, budget


class StudySearch(OptunaSearch):
    """OptunaSearch told a trial's objectives at its end as the report reads them:

    - a diverged trial's FD is the worst final FD of the trials completed so far (the report's
      censoring, ``search_spaces/metrics.py``): the FD it last reported was measured before it
      diverged, and would draw the sampler towards where training breaks down;
    - objectives other than ``fd`` are read from its MLflow run (``store_uri``: the store itself, which
      outlives the driver's MLflow server and its port); a trial without a finite value of each is
      told to Optuna as pruned."""

    def __init__(self, store_uri, parent, **kwargs):
        super().__init__(**kwargs)
        self._store_uri, self._parent = store_uri, parent

    def on_trial_complete(self, trial_id, result=None, error=False):
        if result is not None:
            values = {OBJECTIVE: result.get(OBJECTIVE)}
            if result.get("diverged"):
                done = [t.values[0] for t in self._ot_study.get_trials(deepcopy=False) if t.values]
                values[OBJECTIVE] = max(done, default=values[OBJECTIVE])
            names = self.metric if isinstance(self.metric, list) else [self.metric]
            if len(names) > 1:
                values = {**run_metrics(self._store_uri, self._parent, trial_id), **values}
            finite = all(isinstance(values.get(m), (int, float)) and math.isfinite(values[m]) for m in names)
            result = {**result, **values} if finite else None
        super().on_trial_complete(trial_id, result, error)


def run_metrics(store_uri, parent, trial_id):
    """The final metrics of the trial run ``trial_id`` under ``parent`` ({} when there is none)."""
    from trainables import store
    from trainables.trial import TRIAL_TAG

    c = store.client(store_uri)
    exp = c.get_run(parent).info.experiment_id
    found = c.search_runs([exp], filter_string=f"tags.{TRIAL_TAG} = '{trial_id}' and "
                                               f"tags.mlflow.parentRunId = '{parent}'")
    return dict(found[0].data.metrics) if found else {}
