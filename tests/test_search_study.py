"""``dcgan-lab search-study`` (issue #35): the protocol's pieces on tables made here, and a smoke-sized
two-stage study end to end on real components (Ray Tune, Optuna, a local MLflow server) whose driver
is killed once in each stage and resumed."""
import contextlib
import math
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import run_cli

from orchestrator.search import settings as study
from orchestrator.search.protocol import stage2_points
from orchestrator.search.settings import STAGE2, experiments
from orchestrator.search.table import ORPHAN, config_id, fresh_seeds, is_paper, top_configs
from trainables.errors import UserError


def _row(trial, lr, beta1, bn, fd, diverged=False):
    return {"stage": 1, "sampler": "tpe", "search_seed": 0, "trial": trial, "config": config_id(lr, beta1, bn),
            "lr": lr, "beta1": beta1, "bn_placement": bn, "fd": math.nan if diverged else fd, "diverged": diverged}


def test_top_configs_are_the_best_final_fds_of_the_main_search_diverged_left_out():
    df = pd.DataFrame([_row(0, 2e-4, 0.5, "paper", 50.0), _row(1, 1e-3, 0.1, "all", 10.0, diverged=True),
                       _row(2, 3e-4, 0.3, "none", 20.0), _row(3, 5e-5, 0.9, "paper", 40.0),
                       _row(4, 3e-4, 0.3, "none", 30.0), _row(5, 1e-4, 0.7, "all", 45.0),
                       {**_row(6, 1e-4, 0.2, "all", 1.0), "search_seed": 1}])   # another search: not ranked
    top = top_configs(df, 3, "tpe", 0)
    assert [cid for cid, _, _ in top] == [config_id(3e-4, 0.3, "none"), config_id(5e-5, 0.9, "paper"),
                                          config_id(1e-4, 0.7, "all")]
    assert [fd for _, _, fd in top] == [20.0, 40.0, 45.0]   # a configuration once, at its best trial
    assert top[0][1] == {"lr": 3e-4, "beta1": 0.3, "bn_placement": "none"}


def test_config_ids_seeds_and_stage2_points():
    assert config_id(2e-4, 0.5, "paper") == "lr=2.00e-04,beta1=0.500,bn=paper"
    assert config_id("0.0002", "0.5", "paper") == config_id(2e-4, 0.5, "paper")   # MLflow's strings too
    assert is_paper("0.0002", "0.5", "paper") and not is_paper(2e-4, 0.5, "all")
    assert fresh_seeds({0}, 5) == [1, 2, 3, 4, 5] and fresh_seeds({0, 2}, 3) == [1, 3, 4]
    plan = {"configs": {"a": {"lr": 1e-3}, "b": {"lr": 2e-4}}, "seeds": [1, 2]}
    assert stage2_points(plan) == [{"lr": 1e-3, "seed": 1}, {"lr": 2e-4, "seed": 1}, {"lr": 1e-3, "seed": 2},
                                   {"lr": 2e-4, "seed": 2}]   # seed outermost: a partial stage 2 stays paired


def test_experiments_run_the_main_search_then_stage2_then_the_budget_curve():
    s = study.StudySettings(budget=12, curve_searches=2, curve_budget=10, search_seed=3)
    assert [(tag, n) for tag, _, _, n in experiments(s)] == [
        ("s1-tpe-3", 12), (STAGE2, None), ("s1-tpe-4", 10), ("s1-random-3", 10), ("s1-random-4", 10)]


@pytest.mark.parametrize("values, key", [
    ({"budget": 6, "top_k": 6}, "--top-k"),
    ({"budget": 8, "startup_trials": 10}, "--budget"),
    ({"budget": 48, "curve_budget": 5}, "--curve-budget"),
    ({"objectives": "sharpness"}, "--objectives"),
    ({"objectives": "loss_oscillation,fd"}, "--objectives"),
    ({"objectives": "fd,diverged"}, "--objectives"),
])
def test_bad_settings_name_their_flag(values, key):
    with pytest.raises(UserError) as err:
        study.load_study_settings({}, values)
    assert str(err.value).startswith(key), err.value


def test_two_objectives_are_fd_and_an_end_of_run_metric():
    assert study.objective_names(study.load_study_settings({}, {"objectives": "fd, fd_volatility"})) == \
        ["fd", "fd_volatility"]


def test_random_search_alone_has_no_startup_rule():
    s = study.load_study_settings({}, {"sampler": "random", "budget": 5, "top_k": 3, "curve_searches": 0})
    assert s.budget == 5


def test_a_two_objective_search_tells_optuna_each_runs_end_of_run_metric(tmp_path):
    """Real Optuna and a real MLflow store, through OptunaSearch's own searcher calls: the second
    objective (logged once, at a run's end) is read from the trial's run; a NaN one is pruned."""
    from optuna.trial import TrialState

    from orchestrator.search.searcher import make_searcher
    from search_spaces.loader import load_space
    from trainables import store

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    s = study.load_study_settings({}, {"budget": 12, "objectives": "fd,loss_oscillation", "curve_searches": 0})
    parent = store.start_run(uri, "t", "study", {}, {})
    alg, _, n = make_searcher("tpe", 0, s.budget, load_space("lr-beta1-bn"), s, "study-s1-tpe-0", uri, parent)
    assert n == 12 and alg.suggest("a") == {"lr": 2e-4, "beta1": 0.5, "bn_placement": "paper"}   # the paper's first
    alg.suggest("b")
    for trial_id, fd, oscillation in (("a", 50.0, 0.3), ("b", 40.0, math.nan)):
        run = store.start_run(uri, "t", trial_id, {}, {"trial_id": trial_id}, parent)
        store.client(uri).log_metric(run, "loss_oscillation", oscillation)
        alg.on_trial_complete(trial_id, {"fd": fd, "step": 12})
    a, b = alg._ot_study.trials
    assert a.state == TrialState.COMPLETE and a.values == [50.0, 0.3]
    assert b.state == TrialState.PRUNED   # no finite loss_oscillation: not a point on either objective


def test_a_diverged_trial_is_told_to_optuna_at_the_worst_final_fd_so_far(tmp_path):
    """The FD a diverged trial last reported was measured before it diverged: Optuna gets the worst
    final FD of the trials completed before it instead (the report's censoring)."""
    from orchestrator.search.searcher import make_searcher
    from search_spaces.loader import load_space
    from trainables import store

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    s = study.load_study_settings({}, {"budget": 12, "curve_searches": 0})
    parent = store.start_run(uri, "t", "study", {}, {})
    alg, _, _ = make_searcher("random", 0, s.budget, load_space("lr-beta1-bn"), s, "study-s1-random-0", uri, parent)
    for trial_id, fd, diverged in (("a", 50.0, False), ("b", 40.0, False), ("c", 10.0, True)):
        alg.suggest(trial_id)
        alg.on_trial_complete(trial_id, {"fd": fd, "diverged": diverged, "step": 12})
    assert [t.values for t in alg._ot_study.trials] == [[50.0], [40.0], [50.0]]


ARGS = ["search-study", "--preset", "search-study-smoke"]


def _runs(client):
    exp = client.get_experiment_by_name("dcgan-lab")
    if exp is None:
        return [], []
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return ([r for r in runs if r.data.tags.get("sweep_kind") == "search-study"],
            [r for r in runs if r.data.tags.get("kind") == "trial"])


def _kill_when(tmp_path, out, ready, timeout_s=600):
    """Start a driver (a resume when the study exists), SIGKILL its process group once ``ready(trial
    runs)`` holds; returns the trial runs at the kill."""
    from mlflow import MlflowClient

    resume = sorted(p.name for p in (tmp_path / "search_studies").glob("*")) if (tmp_path / "search_studies").exists() \
        else []
    args = ["--resume", resume[-1]] if resume else []
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    with open(out, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *ARGS, *args], cwd=tmp_path, env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    client = MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    at_kill = None
    try:
        deadline = time.time() + timeout_s
        while time.time() < deadline and proc.poll() is None and at_kill is None:
            time.sleep(2)
            if (tmp_path / "mlflow.db").exists():
                trials = _runs(client)[1]
                if ready(trials):
                    at_kill = trials
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert at_kill is not None, f"the driver ended before the kill:\n{out.read_text()[-3000:]}"
    return at_kill


def _finished(trials, stage):
    return [t for t in trials if t.data.tags.get("search_stage") == stage and t.info.status == "FINISHED"]


@pytest.mark.slow   # starts Ray three times, trains 18 trials, serves MLflow
def test_two_stage_study_end_to_end_resumes_in_either_stage(tmp_path, figure):
    from mlflow import MlflowClient

    started = time.time()
    killed1 = _kill_when(tmp_path, tmp_path / "driver1.out", lambda t: len(_finished(t, "1")) >= 2)
    (name,) = [p.name for p in (tmp_path / "search_studies").glob("*")]
    partial = run_cli(*ARGS[:1], "--report", name, "--out", "partial", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert partial.returncode == 0, partial.stderr[-3000:]
    md = (tmp_path / "partial" / "report.md").read_text()   # a study stopped part-way says so, and how far it got
    assert "**Partial study**" in md and "| s1-tpe-0 (stage 1, tpe, search seed 0) |" in md and "part-way" in md
    killed2 = _kill_when(tmp_path, tmp_path / "driver2.out", lambda t: len(_finished(t, "2")) >= 1)
    assert len(_finished(killed1, "1")) < 6 and len(_finished(killed2, "2")) < 12   # killed inside each stage
    r = run_cli(*ARGS, "--resume", name, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

    client = MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    (parent,), trials = _runs(client)
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}   # nested under one parent
    report = tmp_path / "search_studies" / name / "report"
    df = pd.read_csv(report / "runs.csv")
    assert list(df.columns[:15]) == ["stage", "sampler", "search_seed", "trial", "run_id", "config", "lr", "beta1",
                                     "bn_placement", "seed", "steps", "fd", "log_fd", "diverged", "is_paper"]
    s1, s2 = df[df.stage == 1], df[df.stage == 2]
    orphans = [t for t in trials if ORPHAN in t.data.tags]   # started after Tune's last save before a kill
    assert len(s1) == 6 and len(s2) == 12 and len(trials) - len(orphans) == 18   # one run per trial, through two kills
    first = sorted((t for t in trials if t.data.tags["search_stage"] == "1" and ORPHAN not in t.data.tags),
                   key=lambda t: t.info.start_time)[:2]   # the first two suggestions start together
    assert any(is_paper(t.data.params["lr"], t.data.params["beta1"], t.data.params["bn_placement"]) for t in first)
    top = [cid for cid, _, _ in top_configs(s1, 3, "tpe", 0)]
    paper = config_id(2e-4, 0.5, "paper")
    assert set(s2.config) == set(top) | {paper}   # stage 2 = the stage-1 top k and the paper's
    assert set(s2.seed).isdisjoint(set(s1.seed)) and sorted(set(s2.seed)) == [1, 2, 3]   # fresh seeds
    assert all(sorted(g.seed) == [1, 2, 3] for _, g in s2.groupby("config"))   # every configuration on every seed
    assert set(s1[~s1.diverged].steps) == {6.0} and set(s2[~s2.diverged].steps) == {12.0}   # the two horizons
    md = (report / "report.md").read_text()
    assert "Stage 2: the top configurations" in md and "winner's curse" in md and "Holm" in md
    assert "All experiments are done." in md and "## Analysis: " in md and (report / "analysis" / "importance.csv").is_file()
    assert "report/report.md" in {f.path for f in client.list_artifacts(parent.info.run_id, "report")}
    assert "Search study" in client.get_run(parent.info.run_id).data.tags["mlflow.note.content"]
    figure(f"smoke search study (6 + 12 trials), killed in stage 1 with {len(_finished(killed1, '1'))} and in "
           f"stage 2 with {len(_finished(killed2, '2'))} finished trials, resumed ({len(orphans)} orphaned trial runs "
           f"set aside): {time.time() - started:.0f} s")
