"""The report on a real temp MLflow store holding runs with known values: every table number, the
claim model against a closed-form computation, each verdict rule on constructed runs (replication,
diverged worst, horizon, Holm, n = 2 range), refused pooling, claims files, and every format."""
import csv
import io
import itertools
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from PIL import Image
from scipy import stats as sps

from orchestrator.report import model
from orchestrator.report.build import REPORT_FILES, build_report
from orchestrator.report.claims import evaluate_claims
from orchestrator.report.data import canonical, paper_levels
from orchestrator.report.stats import fd_interval
from search_spaces.claims import load_claims
from trainables.errors import UserError

LEVELS = (("0.0002", "0.001"), ("0.5", "0.9"), ("paper", "all"))
STEPS = tuple(range(100, 1201, 100))     # 4 evaluations in the last quarter: the plateau is testable


def _log_run(c, exp, parent, params, finals, fd_history=(), status="finished", base=None, final_step=1200):
    run = c.create_run(exp, tags={"mlflow.parentRunId": parent, "kind": "trial", "status": status,
                                  "final_step": str(final_step)})
    rid = run.info.run_id
    base = {"dataset": "synthetic-faces", "image_size": "32", "max_steps": "1200", "batch_size": "64",
            "eval_n": "500", "ngf": "16", "ndf": "16", "d_head": "conv", **(base or {})}
    c.log_batch(rid, params=[Param(k, str(v)) for k, v in {**base, **params}.items()])
    metrics = [Metric(k, v, 0, final_step) for k, v in finals.items()]
    metrics += [Metric("fd_faces", v, 0, s) for s, v in fd_history]
    for s in (400, 800, 1200):
        metrics += [Metric("loss_d", 1.0 + s / 1000, 0, s), Metric("loss_g", 2.0 - s / 1000, 0, s),
                    Metric("d_real", 0.6, 0, s), Metric("d_fake", 0.3, 0, s)]
    c.log_batch(rid, metrics=metrics)
    c.log_image(rid, Image.new("RGB", (34, 34), (200, 30, 30)), key="samples", step=final_step)
    c.set_terminated(rid, "FINISHED")
    return rid


def _store(tmp_path, name="report-test"):
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    c = MlflowClient(uri)
    exp = c.create_experiment(name, artifact_location=(tmp_path / "mlartifacts").as_uri())
    return uri, c, exp, c.create_run(exp, tags={"kind": "sweep"}).info.run_id


def _flat_history(fd, seed):
    """FD falling to ``fd`` and flat over the last quarter (a 1 % wiggle): a plateau."""
    return [(s, fd * (1 + 2 * math.exp(-s / 120)) * (1 + 0.01 * ((s // 100 + seed) % 3 - 1))) for s in STEPS]


def _log_fd(lr, beta1, bn, seed):
    """log FD: lr 1e-3 doubles FD, beta1 does nothing, BN 'all' halves it (against the paper); seed
    effects shared by every cell; residuals that depend on the seed and the cell together."""
    return (math.log(100.0) + math.log(2.0) * (lr == "0.001") + math.log(0.5) * (bn == "all")
            + (-0.1, 0.0, 0.1)[seed] + 0.05 * (((LEVELS[0].index(lr) * 2 + LEVELS[2].index(bn)) * 3 + seed * 2) % 5 - 2)
            + 0.03 * ((seed + LEVELS[1].index(beta1)) % 3 - 1))


@pytest.fixture(scope="module")
def factorial(tmp_path_factory):
    """2x2x2 with 3 seeds; one run of cell (1e-3, 0.9, all) diverged before its last FD."""
    tmp = tmp_path_factory.mktemp("factorial")
    uri, c, exp, parent = _store(tmp)
    for (lr, beta1, bn), seed in itertools.product(itertools.product(*LEVELS), range(3)):
        params = {"lr": lr, "beta1": beta1, "bn_placement": bn, "seed": seed}
        fd = math.exp(_log_fd(lr, beta1, bn, seed))
        wiggle = 0.005 * ((seed + 2 * (beta1 == "0.9") + len(lr + bn)) % 3)
        extra = {"sample_oscillation": 0.1 + 0.1 * (beta1 == "0.9") + wiggle, "fd_volatility": 0.05,
                 "mode_collapse": 0.0, "attribute_skew": float(bn == "all" and seed == 0)}
        if (lr, beta1, bn, seed) == ("0.001", "0.9", "all", 2):
            _log_run(c, exp, parent, params, {**extra, "diverged": 1.0, "fd_last_before_divergence": 80.0},
                     [(100, 250.0), (200, 80.0)], status="diverged", final_step=230)
            continue
        _log_run(c, exp, parent, params, {**extra, "diverged": 0.0, "fd_final": fd, "fd_best": fd * 0.98},
                 _flat_history(fd, seed))
    result = build_report(uri, tmp / "out", sweep=parent)
    return uri, parent, tmp, result


def _row(rows, **levels):
    (row,) = [r for r in rows if all(r.levels[k] == v for k, v in levels.items())]
    return row


def _claims(result):
    return {r["claim"].key: r for r in result["claims"]}


def test_every_table_number(factorial):
    result = factorial[3]
    name, factors, rows = result["tables"][0]
    assert name == "cells" and factors == ["lr", "beta1", "bn_placement"] and len(rows) == 8
    r = _row(rows, lr="0.0002", beta1="0.5", bn_placement="paper")
    logs = [_log_fd("0.0002", "0.5", "paper", s) for s in range(3)]
    assert r.paper and r.stats["n"] == 3 and r.stats["n_fd"] == 3
    assert r.stats["fd_gmean"] == pytest.approx(math.exp(np.mean(logs)))
    kind, lo, hi = r.stats["fd_interval"]                       # t interval of the geometric mean, n = 3
    half = sps.t.ppf(0.975, 2) * np.std(logs, ddof=1) / math.sqrt(3)
    assert kind == "t" and (lo, hi) == pytest.approx((math.exp(np.mean(logs) - half), math.exp(np.mean(logs) + half)))
    assert r.stats["sample_oscillation"] == pytest.approx(0.105) and r.stats["diverged"] == 0.0   # 0.1 + 0.005 x (2, 0, 1)
    assert _row(rows, lr="0.0002", beta1="0.5", bn_placement="all").stats["attribute_skew"] == pytest.approx(1 / 3)
    assert sum(x.paper for x in rows) == 1
    # The diverged run: counted in n, no final FD, its interval is the other two as a range.
    d = _row(rows, lr="0.001", beta1="0.9", bn_placement="all")
    assert d.stats["n"] == 3 and d.stats["n_fd"] == 2 and d.stats["diverged"] == pytest.approx(1 / 3)
    assert d.stats["fd_interval"][0] == "range"
    rec = [x for x in result["records"] if x["status"] == "diverged"][0]
    assert math.isnan(rec["values"]["fd_final"]) and rec["values"]["fd_last_before_divergence"] == 80.0
    md = (factorial[2] / "out" / "report.md").read_text()
    assert "| 0.001 | 0.9 | all | 3 (2 with FD) |" in md and "range " in md and "1 diverged" in md
    # A marginal row pools 4 different cells: no interval (the runs are not replicates of one setting).
    by_lr = dict((n, rows) for n, _, rows in result["tables"])["by lr"]
    assert all(r.stats["n_cells"] == 4 and r.stats["fd_interval"][0] == "" for r in by_lr)
    assert "| 0.001 | 12 (11 with FD) | " in md and "– (over 4 cells)" in md


def test_cell_interval_rules():
    assert fd_interval([100.0])[0] == "" and math.isnan(fd_interval([100.0])[1])     # n = 1: nothing
    assert fd_interval([100.0, 120.0, math.nan]) == ("range", 100.0, 120.0)         # n = 2: a range, not a CI
    kind, lo, hi = fd_interval([90.0, 100.0, 110.0, 130.0])
    assert kind == "t" and lo < 100 < hi


def test_primary_against_the_closed_form(factorial):
    """The simple effect at the paper's other settings: the differences within each seed, a t over the
    3 seeds (df 2), computed here from the known log FDs."""
    lr = _claims(factorial[3])["lr"]["primary"]
    d = np.array([_log_fd("0.001", "0.5", "paper", s) - _log_fd("0.0002", "0.5", "paper", s) for s in range(3)])
    half = sps.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert lr["effect"] == pytest.approx(d.mean()) and (lr["lo"], lr["hi"]) == pytest.approx((d.mean() - half,
                                                                                              d.mean() + half))
    assert lr["p"] == pytest.approx(2 * sps.t.sf(abs(d.mean()) / (d.std(ddof=1) / math.sqrt(3)), 2))
    assert lr["df"] == 2 and lr["n_paper"] == lr["n_alt"] == 3 and lr["test"] == "log fd_final: paired t over 3 seeds (df 2)"
    # The diverged run (cell 1e-3 / 0.9 / all, seed 2) was censored at the worst final FD seen.
    worst = max(_log_fd(*c, s) for c in itertools.product(*LEVELS) for s in range(3) if (c, s) != (("0.001", "0.9", "all"), 2))
    tab, censored = model.seed_table(factorial[3]["records"], ["lr", "beta1", "bn_placement"], "fd_final")
    assert censored == 1 and tab[("0.001", "0.9", "all")]["2"] == pytest.approx(worst)


def test_claim_verdicts_and_summary(factorial):
    result = factorial[3]
    claims = _claims(result)
    assert claims["lr"]["verdict"] == "supported"
    assert claims["beta1"]["verdict"] == "inconclusive" and claims["beta1"]["primary"]["effect"] == pytest.approx(0)
    assert claims["bn"]["plateau"]["flat"] and claims["bn"]["plateau_alt"]["flat"]     # both cells shown flat
    assert claims["bn"]["verdict"] == "contradicted"                                   # 0.5x, both cells flat
    assert claims["lr"]["n_cells"] == 4 and claims["lr"]["interaction"]["df_num"] == 3
    tab, _ = model.seed_table(result["records"], ["lr", "beta1", "bn_placement"], "fd_final")
    average = np.mean([tab[("0.001", b, n)][s] - tab[("0.0002", b, n)][s] for b in LEVELS[1] for n in LEVELS[2]
                       for s in "012"])                                # the censored run pulls it above log 2
    assert claims["lr"]["average"]["effect"] == pytest.approx(average) and average > math.log(2.0)
    summary = {s["claim"]: s for s in result["claims_summary"]}
    s = summary["lr"]
    assert set(s) >= {"claim", "factor", "paper", "alt", "metric", "verdict", "ratio", "ratio_lo", "ratio_hi",
                      "effect", "lo", "hi", "n_seeds", "n_cells", "test"}
    assert (s["paper"], s["alt"], s["metric"], s["n_seeds"], s["n_cells"]) == ("0.0002", "0.001", "fd_final", 3, 4)
    assert s["ratio"] == pytest.approx(math.exp(s["effect"])) and s["ratio_lo"] < 2.0 < s["ratio_hi"]
    assert summary["bn"]["ratio_hi"] < 1.0
    # The secondaries: beta1 0.9 raises sample oscillation (as predicted) while the primary is inconclusive.
    osc = [r for r in claims["beta1"]["secondaries"] if r["metric"] == "sample_oscillation"][0]
    assert osc["significant"] and osc["reading"] == "as predicted"
    assert any("sample_oscillation supports the claim" in n for n in claims["beta1"]["notes"])
    untested = {c.key: why for c, why in result["untested"]}
    assert untested["d_downsample"] == "its factor does not vary in these runs"


def _records(cells, seeds, log_fd, hist=None, diverged=()):
    """Records as report.data makes them, for factors ('lr', 'beta1', 'bn_placement')."""
    out = []
    for cell in cells:
        for s in range(seeds):
            div = (cell, s) in diverged
            v = math.exp(log_fd(cell, s))
            out.append({"run_id": f"{cell}-{s}", "levels": dict(zip(("lr", "beta1", "bn_placement"), cell)),
                        "seed": str(s), "status": "diverged" if div else "finished", "final_step": 1200.0,
                        "fd_key": "fd_faces", "history": {"fd_faces": hist(cell, s, v) if hist else []},
                        "values": {"fd_final": math.nan if div else v, "diverged": float(div)}})
    return out


# The paper's levels are the config's defaults (lr 2e-4, beta1 0.5, bn_placement paper), as the report labels them.
PAPER_LEVELS = paper_levels(("lr", "beta1", "bn_placement"), dict.fromkeys(("lr", "beta1", "bn_placement"), canonical))
PAPER = tuple(PAPER_LEVELS.values())
PAIRED = (PAPER, ("0.001", "0.5", "paper"), ("0.0002", "0.9", "paper"), ("0.0002", "0.5", "all"))


def _evaluate(recs, claims=None):
    results, _ = evaluate_claims(claims or load_claims("paper")[:3], recs, ["lr", "beta1", "bn_placement"],
                                 PAPER_LEVELS, lambda f, v: canonical(str(v)))
    return {r["claim"].key: r for r in results}


def _noise(cell, s):
    return 0.1 * math.sin(7 * PAIRED.index(cell) + 3 * s)


def test_no_verdict_below_three_seeds():
    against = lambda cell, s: (math.log(0.5) if cell[0] == "0.001" else 0.0) + _noise(cell, s)  # noqa: E731
    for seeds in (1, 2):
        lr = _evaluate(_records(PAIRED, seeds, against))["lr"]
        assert lr["verdict"] == "not tested" and lr["reason"] == "needs >= 3 seeds per arm"
        assert lr["primary"]["effect"] == pytest.approx(math.log(0.5), abs=0.25) and math.isnan(lr["primary"]["lo"])


def test_diverged_runs_rank_worst():
    """The alternative's two best runs diverged: censored at the worst FD seen, they make it look worse, not better."""
    recs = _records(PAIRED, 5, lambda cell, s: _noise(cell, s) - 0.3 * (cell[0] == "0.001" and s < 2),
                    diverged={(("0.001", "0.5", "paper"), 0), (("0.001", "0.5", "paper"), 1)})
    values, censored = model.analysis_values(recs, "fd_final")
    worst = max(math.log(r["values"]["fd_final"]) for r in recs if r["values"]["diverged"] == 0)
    assert censored == 2 and [v for v, r in zip(values, recs) if r["values"]["diverged"]] == [worst, worst]
    lr = _evaluate(recs)["lr"]["primary"]
    assert lr["effect"] > 0 and lr["censored"] == 2


def _hist_falling(cell, s, v):
    return [(step, v * (1 + 4000 / step)) for step in STEPS]     # still falling at the end


def test_horizon_rule():
    against = lambda cell, s: (math.log(0.5) if cell[0] == "0.001" else 0.0) + _noise(cell, s)  # noqa: E731
    flat = _evaluate(_records(PAIRED, 5, against, lambda c, s, v: _flat_history(v, s)))["lr"]
    assert flat["plateau"]["flat"] and flat["plateau_alt"]["flat"] and flat["verdict"] == "contradicted"
    falling = _evaluate(_records(PAIRED, 5, against, _hist_falling))["lr"]
    assert falling["plateau"]["testable"] and not falling["plateau"]["flat"]
    assert falling["verdict"] == "not reproduced at this horizon" and "paper's cell is not shown flat" in falling["reason"]
    # The paper's cell flat, the alternative's still falling: not contradicted either.
    alt_falls = _evaluate(_records(PAIRED, 5, against, lambda c, s, v: _hist_falling(c, s, v) if c[0] == "0.001"
                                   else _flat_history(v, s)))["lr"]
    assert alt_falls["plateau"]["flat"] and not alt_falls["plateau_alt"]["flat"]
    assert alt_falls["verdict"] == "not reproduced at this horizon"
    assert "alternative's cell is not shown flat" in alt_falls["reason"]
    short = _evaluate(_records(PAIRED, 5, against, lambda c, s, v: [(600, 2 * v), (900, v), (1200, v)]))["lr"]
    assert not short["plateau"]["testable"] and short["verdict"] == "not reproduced at this horizon"
    # A supported claim needs no plateau.
    assert _evaluate(_records(PAIRED, 5, lambda c, s: -against(c, s), _hist_falling))["lr"]["verdict"] == "supported"


def test_plateau_slope_is_the_within_run_regression():
    recs = _records([PAPER], 3, lambda c, s: 0.0, _hist_falling)
    pl = model.plateau(recs)
    x = np.array([s / 1000 for s in STEPS if s >= 900])
    ys = [np.log([v for st, v in r["history"]["fd_faces"] if st >= 900]) for r in recs]
    slope = sum(((x - x.mean()) * (y - y.mean())).sum() for y in ys) / (3 * ((x - x.mean()) ** 2).sum())
    assert pl["n_steps"] == 4 and pl["df"] == 3 - 1 and pl["slope"] == pytest.approx(slope)   # the run the unit
    pooled = model.plateau(recs, pooled=True)                                # the pilot's fit: evaluations the unit
    assert pooled["df"] == 12 - 3 - 1 and pooled["slope"] == pytest.approx(slope)


def test_holm_levels_agree_with_multipletests():
    from statsmodels.stats.multitest import multipletests

    p = [0.04, 0.001, 0.03, 0.2]
    adjusted, rejected, levels = model.holm(p)
    assert adjusted == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert rejected == [False, True, False, False]
    assert levels == pytest.approx([0.05 / 3, 0.05 / 4, 0.05 / 3, 0.05 / 3])   # stopped at the second-smallest
    assert all((pi <= lv) == r for pi, lv, r in zip(p, levels, rejected))


def test_secondaries_never_change_a_verdict():
    """The same runs with and without the claims' secondaries (here sample_oscillation going hard
    against lr's prediction): identical verdicts; the disagreement is said in words."""
    import dataclasses

    against = lambda cell, s: (math.log(2.0) if cell[0] == "0.001" else 0.0) + _noise(cell, s)  # noqa: E731
    recs = _records(PAIRED, 6, against, lambda c, s, v: _flat_history(v, s))
    for r in recs:
        wiggle = 0.01 * math.sin(len(r["run_id"]) + int(r["seed"]) ** 2)
        r["values"]["sample_oscillation"] = 0.5 - 0.4 * (r["levels"]["lr"] == "0.001") + wiggle
    full = _evaluate(recs)
    bare = _evaluate(recs, [dataclasses.replace(c, expect=c.expect[:1]) for c in load_claims("paper")[:3]])
    assert {k: r["verdict"] for k, r in full.items()} == {k: r["verdict"] for k, r in bare.items()}
    assert full["lr"]["verdict"] == "supported"
    osc = [r for r in full["lr"]["secondaries"] if r["metric"] == "sample_oscillation"][0]
    assert osc["significant"] and osc["reading"] == "against the prediction"
    assert full["lr"]["notes"] == [f"sample_oscillation goes against the claim (Holm-adjusted p = {osc['p_holm']:.3g}), "
                                   "while the primary supports it."]


def test_interaction_is_the_anova_of_the_per_seed_effects():
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(3)
    tab = {c: {str(s): float(rng.normal(0.2 * c * (c % 2), 0.3)) for s in range(4)} for c in range(8)}
    pairs = [(0, 1), (2, 3), (4, 5), (6, 7)]
    got = model.interaction(tab, pairs)
    df = pd.DataFrame([(i, s, tab[a][str(s)] - tab[p][str(s)]) for i, (p, a) in enumerate(pairs) for s in range(4)],
                      columns=["cell", "seed", "d"])
    ref = anova_lm(smf.ols("d ~ C(cell) + C(seed)", df).fit(), typ=2).loc["C(cell)"]
    assert (got["F"], got["p"], got["df_num"], got["df_den"]) == pytest.approx((ref["F"], ref["PR(>F)"], 3, 9))


def test_welch_when_the_arms_share_no_seeds():
    recs = _records(PAIRED, 4, lambda cell, s: 0.5 * (cell[0] == "0.001") + _noise(cell, s))
    for r in recs:
        if r["levels"]["lr"] == "0.001":
            r["seed"] = str(int(r["seed"]) + 10)
    lr = _evaluate(recs)["lr"]["primary"]
    paper = [math.log(r["values"]["fd_final"]) for r in recs if r["run_id"].startswith(str(PAPER))]
    alt = [math.log(r["values"]["fd_final"]) for r in recs if r["levels"]["lr"] == "0.001"]
    ref = sps.ttest_ind(alt, paper, equal_var=False)
    assert lr["test"].startswith("log fd_final: Welch t") and lr["p"] == pytest.approx(ref.pvalue)


def test_binary_secondary_is_an_exact_share():
    from statsmodels.stats.proportion import confint_proportions_2indep

    est = model.two_proportions([1, 1, 1, 1, 0], [0, 0, 0, 0, 0], alpha=0.05 / 3)
    lo, hi = confint_proportions_2indep(4, 5, 0, 5, method="newcomb", compare="diff", alpha=0.05 / 3)
    assert est["effect"] == pytest.approx(0.8) and (est["lo"], est["hi"]) == pytest.approx((lo, hi))
    assert est["p"] == pytest.approx(sps.fisher_exact([[4, 1], [0, 5]]).pvalue)


def test_every_format_and_the_parent_run(factorial):
    uri, parent, tmp, result = factorial
    out = tmp / "out"
    assert len((out / "tables.csv").read_text().splitlines()) == 1 + 8 + 2 + 2 + 2
    runs = list(csv.DictReader(io.StringIO((out / "runs.csv").read_text())))
    assert len(runs) == 24 and {"run_id", "seed", "status", "final_step", "lr", "beta1", "bn_placement",
                                "fd_final", "fd_last_before_divergence", "diverged", "dataset"} <= set(runs[0])
    div = [r for r in runs if r["status"] == "diverged"]
    assert len(div) == 1 and div[0]["fd_final"] == "nan" and div[0]["fd_last_before_divergence"] == "80.0"
    tex = (out / "tables.tex").read_text()
    assert tex.count(r"\toprule") == 5 and r"$^\dagger$" in tex and r"$\times$1.93" in tex and "contradicted" in tex
    assert (out / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    plots = re.findall(r"<figure class='plot'><img class='plot' alt='([^']*)' src='data:image/png;base64,", html)
    assert plots[0] == "forest plot: primary effect per claim"
    assert [p.split(" (")[0].removesuffix(" per cell") for p in plots[1:]] == [
        "final FD per cell, one point per seed", "FD against step", "D loss", "G loss", "D(x)", "D(G(z))"]
    assert html.count("<img class='grid'") == 8 and "contradicted" in html and "src='data:image/png;base64,'" not in html
    md = (out / "report.md").read_text()
    assert "log fd_final" in md and "Horizon" in md and "| bn | paper's | 3 |" in md and "×2" in md
    report = __import__("json").loads((out / "report.json").read_text())
    assert {c["claim"] for c in report["claims_summary"]} == {"lr", "beta1", "bn"}
    arts = {f.path for f in MlflowClient(uri).list_artifacts(parent, "report")}
    assert arts == {f"report/{n}" for n in REPORT_FILES} | {"report/grids"}
    grids = sorted(p.name for p in (out / "grids").iterdir())
    assert len(grids) == 8 and all(n.endswith(".png") and "_seed-" in n for n in grids), grids
    assert {f.path for f in MlflowClient(uri).list_artifacts(parent, "report/grids")} == {f"report/grids/{n}" for n in grids}
    assert (out / "fd_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_horizons_in_every_format(factorial):
    """The report's Horizons: each claim at steps 300, 600 and 1,200 of the same runs; the last row is
    the claims' own summary; the run diverged at step 230 is censored at every step."""
    _uri, _parent, tmp, result = factorial
    rows = result["horizons"]
    assert [(r["claim"], r["fraction"], r["step"]) for r in rows] == [
        (c, f, s) for c in ("lr", "beta1", "bn") for f, s in (("1/4", 300), ("1/2", 600), ("all", 1200))]
    added = {"fraction", "step", "n_paper", "n_alt", "censored", "plateau", "plateau_alt"}
    full = [{k: v for k, v in r.items() if k not in added} for r in rows if r["fraction"] == "all"]
    assert full == result["claims_summary"] and all(r["censored"] == 1 for r in rows)
    md = (tmp / "out" / "report.md").read_text()
    section = md.split("\n## Horizons\n")[1]
    assert "not independent replications" in section and "| lr | lr: 0.0002 vs 0.001 | 1/4 | 300 |" in section
    assert "<h2>Horizons</h2>" in (tmp / "out" / "report.html").read_text()
    report = __import__("json").loads((tmp / "out" / "report.json").read_text())
    assert [(h["claim"], h["step"]) for h in report["horizons"]] == [(r["claim"], r["step"]) for r in rows]


def test_tpe_runs_are_binned_and_never_tested(tmp_path):
    rng = np.random.default_rng(0)
    uri, c, exp, parent = _store(tmp_path)
    for i in range(12):
        lr, beta1 = f"{10 ** rng.uniform(-5, -2):.6g}", f"{rng.uniform(0, 0.95):.4g}"
        _log_run(c, exp, parent, {"lr": lr, "beta1": beta1, "bn_placement": ("paper", "all")[i % 2], "seed": 0},
                 {"fd_final": 100.0 + i, "diverged": 0.0}, _flat_history(100.0 + i, 0))
    result = build_report(uri, tmp_path / "out", sweep=parent)
    levels = {r.levels["lr"] for r in result["tables"][0][2]}
    assert levels <= {"[-inf, 0.0001)", "[0.0001, 0.0003)", "[0.0003, 0.001)", "[0.001, 0.003)", "[0.003, inf)"}
    assert all(s["verdict"] == "not tested" for s in result["claims_summary"])   # one seed: no replication
    html = (tmp_path / "out" / "report.html").read_text()
    assert "final FD against lr, coloured by bn_placement" in html


def test_scales_are_not_pooled_unless_asked(tmp_path):
    uri, c, exp, parent = _store(tmp_path)
    for size, seed in itertools.product(("32", "64"), range(3)):
        for lr in LEVELS[0]:
            fd = math.exp(_log_fd(lr, "0.5", "paper", seed)) * (2 if size == "64" else 1)
            _log_run(c, exp, parent, {"lr": lr, "seed": seed}, {"fd_final": fd, "diverged": 0.0},
                     _flat_history(fd, seed), base={"image_size": size})
    with pytest.raises(UserError, match=r"^runs differ in image_size: 32, 64; .*--pool"):
        build_report(uri, tmp_path / "refused", sweep=parent)
    assert not (tmp_path / "refused").exists()
    result = build_report(uri, tmp_path / "pooled", sweep=parent, pool=True)
    strata = sorted((s["stratum"], s["verdict"]) for s in result["claims_summary"])
    assert strata == [("image_size=32", "supported"), ("image_size=64", "supported")]
    assert result["tables"][0][1] == ["scale", "lr"] and len(result["tables"][0][2]) == 4


BAD_CLAIMS = [
    ("factor: colour\n    alt: red", "claims.x: factor='colour' is not allowed: a config key"),
    ("factor: lr\n    alt: fast", "claims.x: lr='fast' is not allowed: a number"),
    ("factor: bn_placement\n    alt: sometimes", "claims.x: bn_placement='sometimes' is not allowed: one of paper"),
    ("factor: lr\n    alt: 2.0e-4", "claims.x: alt=0.0002 is not allowed: a level other than the paper's"),
]


@pytest.mark.parametrize("head, message", BAD_CLAIMS)
def test_bad_claims_files(tmp_path, head, message):
    path = tmp_path / "claims.yaml"
    path.write_text(f"claims:\n  x:\n    {head}\n    primary: fd_final\n    predict: {{fd_final: higher}}\n"
                    "    quote: q\n    section: '4'\n")
    with pytest.raises(UserError) as err:
        load_claims(path)
    assert str(path) in str(err.value) and message in str(err.value) and "\n" not in str(err.value)


def test_report_cli_and_bad_input(factorial, forks, tmp_path):
    uri, parent, _tmp, _result = factorial
    env = {"MLFLOW_TRACKING_URI": uri}
    mine = tmp_path / "mine.yaml"
    mine.write_text("claims:\n  slow:\n    factor: lr\n    alt: 1.0e-3\n    primary: fd_final\n"
                    "    predict: {fd_final: lower}\n    quote: a higher lr gets further in 1,200 steps\n    section: me\n"
                    "  z:\n    factor: z_dist\n    alt: uniform\n    primary: fd_final\n    predict: {fd_final: higher}\n"
                    "    quote: q\n    section: me\n")
    r = forks.cli("report", "--sweep", parent, "--claims", str(mine), "--out", str(tmp_path / "rep"), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| lr | beta1 | bn_placement | n |" in r.stdout and "**slow** (lr 0.0002 vs 0.001): contradicted" in r.stdout
    assert "z (z_dist: normal vs uniform): its factor does not vary in these runs" in \
        (tmp_path / "rep" / "report.md").read_text()
    r = forks.cli("report", "--from", str(_tmp / "out"), "--out", str(tmp_path / "again"), env={})
    assert r.returncode == 0 and "| lr | beta1 | bn_placement | n |" in r.stdout, r.stderr[-2000:]
    assert "# dcgan-lab report: report folders " in (tmp_path / "again" / "report.md").read_text()
    bad_metric = tmp_path / "bad.yaml"
    bad_metric.write_text(mine.read_text().replace("predict: {fd_final: lower}", "predict: {fd_final: lower, fid: lower}"))
    cases = [
        (["--sweep", "0" * 32], "was not found"),
        (["--experiment", "nope"], "experiment='nope' does not exist"),
        (["--sweep", parent, "--factors", "lr,not_a_param"], "factors='not_a_param'"),
        (["--sweep", parent, "--fd-threshold", "-1"], "fd-threshold=-1.0"),
        (["--sweep", parent, "--claims", "nope"], "claims='nope' is not allowed: one of paper"),
        (["--sweep", parent, "--claims", str(bad_metric)], "predict metric='fid' is not allowed: one of fd_final"),
        (["--sweep", parent, "--pooll"], "unrecognized arguments: --pooll"),
        (["--from", str(tmp_path / "nowhere")], "from='" + str(tmp_path / "nowhere") + "': no runs.csv there"),
    ]
    with ThreadPoolExecutor(max_workers=3) as pool:   # forks of one process, a few at once
        done = list(pool.map(lambda a: forks.cli("report", *a[0], "--out", str(tmp_path / "bad"), env=env), cases))
    for (args, msg), r in zip(cases, done):
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert not (tmp_path / "bad").exists()
    MlflowClient(uri).create_experiment("empty")
    r = forks.cli("report", "--experiment", "empty", env=env)
    assert r.returncode == 2 and "no runs match" in r.stderr, r.stderr


def test_a_failed_run_does_not_cut_its_cells_curve():
    """A sweep interrupted mid-trial leaves a failed run with one FD point beside finished runs: the
    cell's curve is drawn from the others (it was cut to that one step). Diverged runs stay in, up to
    their last point."""
    from orchestrator.report.figures import _mean_band, curve_histories

    def run(status, steps):
        return {"status": status, "fd_key": "fd_faces", "history": {"fd_faces": [(s, 100.0 - s / 100) for s in steps]}}

    full = range(200, 4001, 200)
    cell = [run("finished", full), run("finished", full), run("failed", [200])]
    steps, *_ = _mean_band(curve_histories(cell, "fd"))
    assert steps == list(full)
    assert len(curve_histories([run("finished", full), run("diverged", [200, 400])], "fd")) == 2
    # A run that diverged at step 400 and stopped: the curve goes on to the end with the others.
    steps, mean, lo, hi = _mean_band(curve_histories([run("finished", full), run("diverged", [200, 400])], "fd"))
    assert steps == list(full) and mean[-1] == lo[-1] == hi[-1] == 100.0 - 4000 / 100
    assert len(curve_histories([run("failed", [200])], "fd")) == 1   # a cell of failed runs only still has a curve


def _numbers(rows, skip=()):
    """Claim rows with floats as approx (a pooled report sums the same numbers in another order)."""
    return [{k: (pytest.approx(v, rel=1e-9, nan_ok=True) if isinstance(v, float) else v)
             for k, v in r.items() if k not in skip} for r in rows]


def _split(src, dest, seeds, histories=True):
    """A report folder holding ``src``'s runs of ``seeds`` (runs.csv rows, their histories, grids)."""
    import shutil

    dest.mkdir()
    runs = list(csv.DictReader(io.StringIO((src / "runs.csv").read_text())))
    keep = [r for r in runs if r["seed"] in {str(s) for s in seeds}]
    with open(dest / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(runs[0]))
        w.writeheader()
        w.writerows(keep)
    if histories:
        ids = {r["run_id"] for r in keep}
        lines = (src / "histories.csv").read_text().splitlines()
        (dest / "histories.csv").write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ln.split(",")[0] in ids]) + "\n")
    shutil.copytree(src / "grids", dest / "grids")
    return dest


def test_a_report_read_back_from_its_folder_is_the_same(factorial):
    """``--from``: the report of a report folder (runs.csv, histories.csv, grids) gives the store's
    report again: every table number, claim, horizon and plateau, and the same grids."""
    _uri, _parent, tmp, result = factorial
    again = build_report(None, tmp / "again", folders=[tmp / "out"])
    assert _numbers(again["claims_summary"]) == _numbers(result["claims_summary"])
    assert _numbers(again["horizons"]) == _numbers(result["horizons"])
    assert [c["plateau"] for c in again["claims"]] == [c["plateau"] for c in result["claims"]]
    assert [(r.levels, r.stats) for r in again["tables"][0][2]] == [(r.levels, r.stats) for r in result["tables"][0][2]]
    assert (tmp / "again" / "histories.csv").read_text() == (tmp / "out" / "histories.csv").read_text()
    assert sorted(os.listdir(tmp / "again" / "grids")) == sorted(os.listdir(tmp / "out" / "grids"))
    assert "without FD histories" not in (tmp / "again" / "report.md").read_text()


def test_blocks_in_folders_pool_to_the_report_of_all_their_runs(factorial, tmp_path):
    """Blocks of seeds reported apart are pooled by ``--from`` into the report of all their runs; a
    block without histories counts at the final step only; a run in two folders is refused."""
    _uri, _parent, tmp, result = factorial
    a, b = _split(tmp / "out", tmp_path / "a", [0, 1]), _split(tmp / "out", tmp_path / "b", [2])
    pooled = build_report(None, tmp_path / "pooled", folders=[a, b])
    assert _numbers(pooled["claims_summary"]) == _numbers(result["claims_summary"])
    assert _numbers(pooled["horizons"]) == _numbers(result["horizons"])

    # Written before histories.csv, and before runs.csv named batch_size, ngf and ndf (its report.json does).
    old = _split(tmp / "out", tmp_path / "old", [2], histories=False)
    rows = list(csv.DictReader(io.StringIO((old / "runs.csv").read_text())))
    with open(old / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k not in ("batch_size", "ngf", "ndf")], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    (old / "report.json").write_text((tmp / "out" / "report.json").read_text())
    mixed = build_report(None, tmp_path / "mixed", folders=[a, old])
    final = ("claim", "effect", "lo", "hi", "n_seeds")
    assert (_numbers([{k: r[k] for k in final} for r in mixed["claims_summary"]])
            == _numbers([{k: r[k] for k in final} for r in result["claims_summary"]]))
    early = [h for h in mixed["horizons"] if h["fraction"] == "1/4"]
    assert early and all(h["n_paper"] == 2 for h in early)   # seed 2's FD at step 300 is unknown
    assert all(c["plateau"]["n_runs"] == 2 for c in mixed["claims"])
    # steps to FD<=T: reached over the runs whose history is known (seed 2's is not)
    assert all(r.stats["n"] == 3 and r.stats["n_timed"] == 2 for r in mixed["tables"][0][2])
    assert all(r.stats["n_timed"] == r.stats["n"] for r in pooled["tables"][0][2])
    md = (tmp_path / "mixed" / "report.md").read_text()
    assert f"report folders {tmp_path}/{{a, old}} (8 of 24 runs without FD histories" in md
    assert "ngf 16 / ndf 16, batch 64," in md   # the old folder's from its report.json

    with pytest.raises(UserError, match=r"repeats a run of .*a'; allowed: folders with different seeds"):
        build_report(None, tmp_path / "twice", folders=[a, _split(tmp / "out", tmp_path / "a2", [1])])
    with pytest.raises(UserError, match=r"from='.*nowhere': no runs.csv there"):
        build_report(None, tmp_path / "none", folders=[a, tmp_path / "nowhere"])
    assert not (tmp_path / "twice").exists() and not (tmp_path / "none").exists()
