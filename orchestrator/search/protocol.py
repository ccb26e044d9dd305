"""Running a search study: one MLflow parent run, then its Tune experiments in order, each resumable.

1. Stage 1, the main search: ``budget`` trials of an Optuna sampler (TPE, or random) through Ray
   Tune's OptunaSearch, seeded with the search seed, the paper's point enqueued first, every trial
   trained with the config's seed to the stage-1 horizon. No early stopping: each trial's final FD
   at that horizon is what ranks it.
2. Stage 2: the ``top_k`` best configurations of the main search by final FD (diverged trials left
   out) and the paper's, each trained on ``fresh_seeds`` seeds that stage 1 never used, to the
   config's own horizon, seed by seed (a grid of whole points: pairs within a seed).
3. The budget curve's searches: ``curve_searches`` searches per sampler (TPE and random), seeds
   search_seed, search_seed+1, ..., each of ``curve_budget`` trials; the main search is one of them.

Each experiment is its own Tune experiment (``<study>-s1-tpe-0``, ``<study>-s2``, ...); study.json
says which are done and holds stage 2's plan once made, so a killed driver resumes where it stood:
a finished experiment is skipped, an interrupted one restored from Tune's state (its finished
trials are not run again), and stage 2 keeps the configurations and seeds it was given.
"""
import contextlib
from pathlib import Path

from orchestrator.search import settings as study
from orchestrator.search.settings import STAGE2, experiments
from orchestrator.search.table import ORPHAN, SAMPLER_TAG, SEARCH_SEED_TAG, STAGE_TAG


def stage2_points(plan):
    """Stage 2's trials: every configuration on every fresh seed, seed outermost (a partial stage 2
    holds whole seeds: each comparison stays paired)."""
    return [{**cfg, "seed": seed} for seed in plan["seeds"] for cfg in plan["configs"].values()]


def plan_stage2(uri, parent, s):
    """The top k configurations of the main search and the paper's, and seeds that stage 1 never used."""
    from orchestrator.search.table import PAPER, config_id, fresh_seeds, study_runs, top_configs, trials_table

    df = trials_table(study_runs(uri, parent)[0])
    top = top_configs(df, s.top_k, s.sampler, s.search_seed)
    configs = {cid: params for cid, params, _ in top}
    configs.setdefault(config_id(**PAPER), dict(PAPER))
    used = set(df[df.stage == 1].seed.astype(int))
    return {"configs": configs, "top_k": [cid for cid, _, _ in top],
            "seeds": fresh_seeds(used, s.fresh_seeds), "stage1_seeds": sorted(used)}


def run_study(d, base, space, s, resume, new_state=None):
    """Every experiment of the study not done yet, then the report. Returns the report's folder.
    ``new_state``: a new study's study.json, written once its parent run exists."""
    import ray
    from ray import tune

    from orchestrator.ray_run import prepare_ray_run, run_tags
    from orchestrator.search.findings import write_report
    from orchestrator.search.searcher import make_searcher
    from orchestrator.sweep.plan import plan_trials, tune_storage
    from orchestrator.sweep.run import run_tuner, tracking_for_sweep, trains_in_trial
    from trainables import run_note, store
    from trainables.config import config_from_dict
    from trainables.trial import DESIGN_POINT

    in_trial = trains_in_trial(base, space)
    with contextlib.ExitStack() as stack:
        server = []
        run = prepare_ray_run(base, dashboard=not in_trial,
                              check_cluster=lambda cfg: plan_trials(cfg, space, in_trial, ray.nodes()),
                              after_checks=lambda uri: server.append(stack.enter_context(tracking_for_sweep(uri, d))))
        base = run.cfg
        uri = server[0].wait()
        if resume:
            parent = study.read_study(d)["parent_run_id"]
        else:
            parent = store.start_run(uri, base.experiment, d.name,
                                     {**{f"study_{k}": v for k, v in s.to_dict().items()}, **base.to_dict()},
                                     {**run_tags(), "kind": "sweep", "sweep_kind": "search-study",
                                      "space_file": str(space.path)})
            store.client(uri).set_tag(parent, run_note.SWEEP_TAG, parent)
            study.write_study(d, {**new_state, "parent_run_id": parent, "store_uri": run.uri})
        stage1 = config_from_dict({**base.to_dict(), "max_steps": s.stage1_steps or base.max_steps})
        storage = tune_storage(base.storage_path)
        for tag, sampler, seed, budget in experiments(s):
            state = study.read_study(d)
            if tag in state.get("done", []):
                continue
            name = f"{d.name}-{tag}"
            again = tune.Tuner.can_restore(f"{storage}/{name}")
            tags = {**run_tags(), STAGE_TAG: "2" if tag == STAGE2 else "1", SAMPLER_TAG: sampler,
                    SEARCH_SEED_TAG: str(seed)}
            print(f"[search-study] {'resuming' if again else 'starting'} {name}", flush=True)
            if tag == STAGE2:
                plan = state.get("stage2") or study.update_study(d, stage2=plan_stage2(uri, parent, s))["stage2"]
                search = (None, {DESIGN_POINT: tune.grid_search(stage2_points(plan))}, 1)
                results = run_tuner(d, base, space, _sweep_settings(), None, parent, uri, again, name=name,
                                    search=search, tags=tags)
            else:
                search = None if again else make_searcher(sampler, seed, budget, space, s, f"{d.name}-{tag}",
                                                          run.uri, parent)
                results = run_tuner(d, stage1, space, _sweep_settings(), None, parent, uri, again, name=name,
                                    search=search, tags=tags)
            set_aside_orphans(uri, parent, tags, {Path(r.path).name.removeprefix("trial-") for r in results})
            study.update_study(d, done=[*study.read_study(d).get("done", []), tag])
        out = Path(d) / "report"
        write_report(uri, parent, out, s, study.read_study(d), log_to_parent=True)
        store.end_run(uri, parent)
    return out


def set_aside_orphans(uri, parent, tags, trial_ids):
    """Tag ORPHAN on this experiment's trial runs whose Tune trial the experiment does not hold (and
    end the ones left running). Tune saves an experiment's state every few seconds: a trial started
    after the last save and before the driver was killed is unknown to the restored experiment, whose
    searcher then suggests its point again as a new trial. The table leaves the first one out."""
    from trainables import store
    from trainables.trial import TRIAL_TAG

    c = store.client(uri)
    exp = c.get_run(parent).info.experiment_id
    flt = " and ".join([f"tags.mlflow.parentRunId = '{parent}'"] +
                       [f"tags.{k} = '{tags[k]}'" for k in (STAGE_TAG, SAMPLER_TAG, SEARCH_SEED_TAG)])
    for r in c.search_runs([exp], filter_string=flt, max_results=10000):
        if r.data.tags.get(TRIAL_TAG) not in trial_ids and ORPHAN not in r.data.tags:
            c.set_tag(r.info.run_id, ORPHAN, "not in the restored Tune experiment: run again as a new trial")
            if r.info.status == "RUNNING":
                c.set_terminated(r.info.run_id, "KILLED")


def _sweep_settings():
    """What the sweep's Tune machinery reads of a sweep's settings: no scheduler (each trial runs to its horizon)."""
    from orchestrator.config import SweepSettings

    return SweepSettings(scheduler="none")
