"""The search study's analysis on synthetic trials tables whose answers are known: importance ranks the
knob the objective depends on, Dodge et al.'s estimator matches Monte Carlo, best-so-far curves never
rise, the Pareto front is exactly the non-dominated trials, and the figures are written."""
import itertools

import numpy as np
import pandas as pd
import pytest

from orchestrator.search import analysis, budget, figures, importance, landscape, pareto

LR_OPT = -3.7   # log10 of the synthetic objective's best lr


def synthetic_trials(n=24, seeds=(0, 1, 2), noise=0.3, seed=0):
    """A stage-1 table in the search's schema: log FD depends on lr only (a parabola in log10 lr, minimum at
    10^-3.7), beta1 and BN placement are irrelevant; lr above 3e-3 diverges half the time. "tpe" searches
    narrow in on the best lr as they go, "random" searches draw uniformly; each search starts at the
    paper's point."""
    rng = np.random.default_rng(seed)
    rows = []
    for sampler, s in itertools.product(("tpe", "random"), seeds):
        for t in range(n):
            if t == 0:
                log_lr, beta1, bn = np.log10(2e-4), 0.5, "paper"
            elif sampler == "tpe":
                log_lr = float(np.clip(rng.normal(LR_OPT, 1.5 / (1 + t / 4)), -5, -2))
                beta1, bn = rng.uniform(0, 0.95), rng.choice(["paper", "all", "none"])
            else:
                log_lr, beta1, bn = rng.uniform(-5, -2), rng.uniform(0, 0.95), rng.choice(["paper", "all", "none"])
            log_fd = 3 * (log_lr - LR_OPT) ** 2 + 2 + rng.normal(0, noise)
            diverged = bool(log_lr > np.log10(3e-3) and rng.uniform() < 0.5)
            rows.append(dict(stage=1, sampler=sampler, search_seed=s, trial=t, run_id=f"{sampler}{s}-{t}",
                             lr=10 ** log_lr, beta1=float(beta1), bn_placement=str(bn), seed=0, steps=100,
                             fd=np.nan if diverged else np.exp(log_fd), log_fd=np.nan if diverged else log_fd,
                             diverged=diverged, is_paper=t == 0,
                             fd_volatility=np.nan if diverged else rng.gamma(2.0, 1.0) / (1 + log_fd / 10)))
    table = pd.DataFrame(rows)
    table["config"] = [f"lr={r.lr:.1e},beta1={r.beta1:.2f},bn={r.bn_placement}" for r in table.itertuples()]
    return table


@pytest.fixture(scope="module")
def trials():
    return synthetic_trials()


def test_importance_ranks_the_known_knob_first():
    trials = synthetic_trials(n=12)
    table = importance.importance_table(trials, resamples=20, n_trees=16)
    assert set(table["handling"]) == {"penalised", "excluded"}
    assert set(table["evaluator"]) == {"fanova", "ped_anova"}
    assert table["diverged"].str.contains("worst finite").any()
    for (name, handling), part in table.groupby(["evaluator", "handling"]):
        part = part.set_index("parameter")
        assert part["importance"].sum() == pytest.approx(1.0), (name, handling)
        assert part["importance"].idxmax() == "lr", (name, handling)
        assert part.loc["lr", "lo"] > part.drop("lr")["hi"].max(), (name, handling, part)
    assert "| fanova | penalised | lr |" in importance.importance_markdown(table)


def test_diverged_trials_penalised_or_excluded(trials):
    penalised, note = importance.scored_trials(trials, "penalised")
    excluded, _ = importance.scored_trials(trials, "excluded")
    n_div = int(trials["diverged"].sum())
    assert n_div > 0 and len(penalised) == len(trials) and len(excluded) == len(trials) - n_div
    assert (penalised.loc[penalised["diverged"], "y"] == trials["log_fd"].max()).all()
    assert f"{trials['log_fd'].max():.3f}" in note


def test_dodge_expected_best_matches_monte_carlo():
    pool = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0])
    mean, sd = budget.expected_best(pool, 6)
    draws = np.random.default_rng(0).choice(pool, size=(200_000, 6), replace=True)
    running_min = np.minimum.accumulate(draws, axis=1)
    assert mean == pytest.approx(running_min.mean(0), abs=0.02)
    assert sd == pytest.approx(running_min.std(0), abs=0.02)
    assert mean[0] == pytest.approx(pool.mean())
    assert np.all(np.diff(mean) <= 0)
    assert budget.expected_best(pool, 400)[0][-1] == pytest.approx(pool.min(), abs=1e-6)


def test_budget_curves_and_trials_saved(trials):
    expected = budget.expected_best_curves(trials, resamples=50)
    assert set(expected["sampler"]) == {"tpe", "random"} and expected["n"].max() == 24
    assert (expected["lo"] <= expected["expected_best"] + 1e-9).all()
    assert (expected["hi"] >= expected["expected_best"] - 1e-9).all()
    for _, part in expected.groupby("sampler"):
        assert np.all(np.diff(part["expected_best"]) <= 1e-12)
    per_seed = budget.expected_best_curves(trials, per_seed=True, resamples=0)
    assert set(per_seed["search_seed"]) == {0, 1, 2}
    so_far = budget.best_so_far(trials)
    for _, part in so_far.groupby(["sampler", "search_seed"]):
        assert np.all(np.diff(part["best"].to_numpy()) <= 0)
    curves = budget.best_so_far_curves(trials)
    assert (curves["n_seeds"] == 3).all() and (curves["lo"] <= curves["mean"]).all()
    saved = budget.trials_saved(trials)
    longer_main = pd.concat([trials, trials[trials["search_seed"] == 0].assign(trial=lambda d: d["trial"] + 24)])
    assert len(budget.equal_budget(longer_main)) == len(trials)
    assert budget.trials_saved(budget.equal_budget(longer_main)) == saved
    assert [s["curve"] for s in saved] == ["expected best", "best so far"]
    for s in saved:
        assert s["n_ref"] == 24
        assert (s["n_slow"] is None) == (s["saved"] is None) and s["sentence"].startswith(s["curve"])


def test_pareto_front_is_exactly_the_non_dominated(trials):
    front = pareto.pareto_front(trials)
    values = front[list(pareto.OBJECTIVES)].to_numpy()
    assert len(front) == int((~trials["diverged"]).sum()) and front["on_front"].any()

    def dominated(i):
        return any(np.all(values[j] <= values[i]) and np.any(values[j] < values[i])
                   for j in range(len(values)) if j != i)

    for i, on in enumerate(front["on_front"]):
        assert on != dominated(i), (i, values[i])


def test_landscape_tables(trials):
    pd_table = landscape.partial_dependence(trials, grid=12, n_trees=60)
    lr_curve = pd_table[(pd_table["parameter"] == "lr") & (pd_table["bn_placement"] == "paper")]
    best_lr = lr_curve.loc[lr_curve["log_fd"].idxmin(), "value"]
    assert 10 ** (LR_OPT - 0.6) < best_lr < 10 ** (LR_OPT + 0.6)
    assert pd_table["surrogate_oob_r2"].iloc[0] > 0.5
    div = landscape.divergence_by_region(trials)
    assert len(div) == 18 and div["trials"].sum() == len(trials)
    assert div["diverged"].sum() == trials["diverged"].sum()
    low_lr = div[div["lr_range"].str.startswith("[1e-05")]
    assert (low_lr["diverged"] == 0).all()


def test_figures_are_written(trials, tmp_path):
    paper = importance.paper_point()
    front = pareto.pareto_front(trials)
    pngs = {"landscape": figures.landscape_figure(trials, paper),
            "pareto": figures.pareto_figure(front, pareto.OBJECTIVES)}
    for name, data in pngs.items():
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, name
        (tmp_path / f"{name}.png").write_bytes(data)


def test_write_analysis_writes_every_file(tmp_path):
    got = analysis.write_analysis(synthetic_trials(n=10), tmp_path, resamples=4, n_trees=8)
    assert set(got["paths"]) == set(analysis.FILES)
    for path in got["paths"].values():
        assert path.stat().st_size > 0, path
    assert got["top"]["fanova/penalised"] == "lr"
    assert "Best FD against the number of trials" in got["summary"]


def test_write_analysis_with_nothing_finished(tmp_path):
    trials = synthetic_trials(n=3, seeds=(0,)).assign(fd=np.nan, log_fd=np.nan, diverged=True)
    got = analysis.write_analysis(trials, tmp_path)
    assert list(got["paths"]) == ["summary_md"] and "Nothing to measure yet" in got["summary"]
