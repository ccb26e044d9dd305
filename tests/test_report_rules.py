"""The verdict rules of issue 32 on constructed runs, each against the library computation it
stands for: the plateau's TOST on run-level slopes (statsmodels ``ttost_mean``, formula OLS
``conf_int(alpha=0.1)``, ``TTestPower``), the primary family under Holm (``multipletests``),
McNemar's exact p for paired flags, the divergence sensitivity analyses and the fragile label,
and the claims file's plateau_margin."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps

from orchestrator.report import model
from orchestrator.report.claims import evaluate_claims
from orchestrator.report.data import canonical, paper_levels
from search_spaces.claims import load_claims
from trainables.errors import UserError

FACTORS = ("lr", "beta1", "bn_placement")
PAPER_LEVELS = paper_levels(FACTORS, dict.fromkeys(FACTORS, canonical))
PAPER = tuple(PAPER_LEVELS.values())
LR, BETA1, BN = ("0.001", "0.5", "paper"), ("0.0002", "0.9", "paper"), ("0.0002", "0.5", "all")
PAIRED = (PAPER, LR, BETA1, BN)
STEPS = tuple(range(100, 1201, 100))


def _record(cell, seed, log_fd, slope=0.0, diverged=False, last=math.nan):
    """A run as report.data makes it: FD flat (or falling at ``slope`` log FD per 1,000 steps) to its end."""
    rng = np.random.default_rng(hash((cell, seed)) % 2**32)
    fd = math.exp(log_fd)
    hist = [(s, fd * math.exp(slope * (s - 1200) / 1000 + rng.normal(0, 0.005))) for s in STEPS]
    return {"run_id": f"{cell}-{seed}", "levels": dict(zip(FACTORS, cell)), "seed": str(seed),
            "status": "diverged" if diverged else "finished", "final_step": 1200.0, "fd_key": "fd_faces",
            "history": {"fd_faces": hist[:3] if diverged else hist},
            "values": {"fd_final": math.nan if diverged else fd, "diverged": float(diverged),
                       "fd_last_before_divergence": last}}


def _evaluate(recs, n_claims=3):
    results, _ = evaluate_claims(load_claims("paper")[:n_claims], recs, list(FACTORS), PAPER_LEVELS,
                                 lambda f, v: canonical(str(v)))
    return {r["claim"].key: r for r in results}


def _noise(cell, s):
    return 0.1 * math.sin(7 * PAIRED.index(cell) + 3 * s)


def test_the_plateau_is_statsmodels_tost_on_run_level_slopes():
    rng = np.random.default_rng(0)
    recs = [_record(PAPER, s, 4.0, slope=rng.normal(-0.02, 0.05)) for s in range(6)]
    pl = model.plateau(recs, margin=0.1)
    slopes = [sps.linregress([x / 1000 for x, _ in w], np.log([v for _, v in w])).slope
              for w in ([(s, v) for s, v in r["history"]["fd_faces"] if s >= 900] for r in recs)]
    assert pl["slopes"] == pytest.approx(slopes) and pl["df"] == 5 and pl["unit"] == "run"
    fit = smf.ols("slope ~ 1", pd.DataFrame({"slope": slopes})).fit()
    assert (pl["lo"], pl["hi"]) == pytest.approx(tuple(fit.conf_int(alpha=0.1).iloc[0]))
    from statsmodels.stats.power import TTestPower
    from statsmodels.stats.weightstats import DescrStatsW

    assert pl["p"] == pytest.approx(DescrStatsW(slopes).ttost_mean(-0.1, 0.1)[0])
    assert pl["flat"] == (pl["p"] < 0.05) == (-0.1 < pl["lo"] and pl["hi"] < 0.1)
    one_sided = TTestPower().power(effect_size=0.1 / np.std(slopes, ddof=1), nobs=6, alpha=0.05, alternative="larger")
    assert pl["power"] == pytest.approx(max(0.0, 2 * one_sided - 1))
    # One run: no run-level test (the pilot's pooled fit still has one).
    assert not model.plateau(recs[:1])["testable"] and model.plateau(recs[:1], pooled=True)["testable"]


def test_a_cell_still_falling_is_not_flat_and_blocks_contradicted():
    against = lambda cell, s: -0.7 * (cell == LR) + _noise(cell, s)  # noqa: E731
    flat = [_record(c, s, against(c, s)) for c in PAIRED for s in range(6)]
    assert _evaluate(flat)["lr"]["verdict"] == "contradicted"
    for falling_cell in (PAPER, LR):
        recs = [_record(c, s, against(c, s), slope=-0.2 if c == falling_cell else 0.0) for c in PAIRED for s in range(6)]
        lr = _evaluate(recs)["lr"]
        assert lr["verdict"] == "not reproduced at this horizon", lr["reason"]
        which = "plateau" if falling_cell == PAPER else "plateau_alt"
        assert not lr[which]["flat"] and lr[which]["hi"] < -0.1


def test_a_claims_file_declares_its_margin(tmp_path):
    assert {c.plateau_margin for c in load_claims("paper")} == {0.1}
    text = (Path(__file__).parents[1] / "search_spaces" / "claims" / "paper.yaml").read_text()
    wide = tmp_path / "wide.yaml"
    wide.write_text(text.replace("plateau_margin: 0.1", "plateau_margin: 0.5"))
    assert {c.plateau_margin for c in load_claims(str(wide))} == {0.5}
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("plateau_margin: 0.1", "plateau_margin: -1"))
    with pytest.raises(UserError, match="plateau_margin=-1 is not allowed: a positive number"):
        load_claims(str(bad))


def test_the_primary_tests_of_a_claims_file_are_one_holm_family():
    from statsmodels.stats.multitest import multipletests

    # lr strong, beta1 weaker: chosen so that beta1's unadjusted p is below 0.05 and its Holm p above.
    for k in np.linspace(0.05, 0.3, 26):
        effect = {LR: 0.8, BETA1: k, BN: 0.0}
        recs = [_record(c, s, effect.get(c, 0.0) + _noise(c, s)) for c in PAIRED for s in range(6)]
        res = _evaluate(recs)
        ps = [res[c]["primary"]["p"] for c in ("lr", "beta1", "bn")]
        if 0.05 / 2 < ps[1] < 0.05:
            break
    else:
        pytest.fail("no effect size gave a p between 0.025 and 0.05")
    adjusted = multipletests(ps, method="holm")[1]
    assert [res[c]["primary"]["p_holm"] for c in ("lr", "beta1", "bn")] == pytest.approx(list(adjusted))
    assert res["beta1"]["primary"]["lo"] > 0 and res["beta1"]["verdict"] == "inconclusive"   # by the adjusted p
    assert res["lr"]["verdict"] == "supported" and res["lr"]["primary"]["family"] == 3
    alone = _evaluate(recs, n_claims=2)   # a family of two: a smaller correction
    assert alone["beta1"]["primary"]["p_holm"] == pytest.approx(multipletests(ps[:2], method="holm")[1][1])


def test_paired_flags_use_mcnemar_exact():
    from statsmodels.stats.contingency_tables import mcnemar

    alt = [(str(s), f) for s, f in enumerate([1, 1, 1, 1, 1, 0, 0, 0])]
    paper = [(str(s), f) for s, f in enumerate([0, 0, 0, 0, 1, 0, 0, 1])]
    est = model.two_proportions(alt, paper)
    assert est["p"] == pytest.approx(mcnemar([[1, 4], [1, 2]], exact=True).pvalue)
    assert est["flag_test"].startswith("McNemar exact") and est["effect"] == pytest.approx(5 / 8 - 2 / 8)
    unpaired = model.two_proportions([1, 1, 0], [0, 0, 0])
    assert unpaired["p"] == pytest.approx(sps.fisher_exact([[2, 1], [0, 3]]).pvalue)


def test_divergence_sensitivity_and_the_fragile_label():
    """The alternative a little worse, and two of its runs diverged: censored at the worst FD the
    effect is clear; with their last FDs, without their seeds, or by ranks, each as computed here."""
    log_fd = {(c, s): 0.2 * (c == BN) + _noise(c, s) for c in PAIRED for s in range(6)}
    diverged = {(BN, 0): 3.0, (BN, 1): 2.0}    # their last FD before divergence (log)
    recs = [_record(c, s, v, diverged=(c, s) in diverged, last=math.exp(diverged.get((c, s), math.nan)))
            for (c, s), v in log_fd.items()]
    bn = _evaluate(recs)["bn"]
    sens = bn["sensitivity"]
    seeds = range(6)
    last = [(diverged.get((BN, s), log_fd[BN, s])) - log_fd[PAPER, s] for s in seeds]
    assert sens["last_fd"]["effect"] == pytest.approx(np.mean(last)) and sens["last_fd"]["n"] == 6
    dropped = [log_fd[BN, s] - log_fd[PAPER, s] for s in seeds if s > 1]
    assert sens["dropped"]["effect"] == pytest.approx(np.mean(dropped)) and sens["dropped"]["n"] == 4
    assert sens["dropped"]["p"] == pytest.approx(sps.ttest_1samp(dropped, 0).pvalue)
    finished = [v for (c, s), v in log_fd.items() if c in (PAPER, BN) and (c, s) not in diverged]
    worst = 2 * max(finished) - min(finished) + 1
    ranks = [(worst if s < 2 else log_fd[BN, s]) - log_fd[PAPER, s] for s in seeds]
    assert sens["rank"]["p"] == pytest.approx(sps.wilcoxon(ranks).pvalue)
    verdicts = {bn["verdict"]} | {e["verdict"] for e in sens.values()}
    assert bn["verdict"] == "supported" and bn["fragile"] and verdicts == {"supported", "inconclusive"}
    # No run of the arms diverged: nothing to vary, never fragile.
    clean = _evaluate([_record(c, s, v) for (c, s), v in log_fd.items()])["bn"]
    assert clean["sensitivity"] is None and not clean["fragile"]


def test_fragile_is_said_in_every_format():
    """md, tex, claims.csv, the JSON summary and the sweep parent's note all carry the label."""
    import csv
    import io

    from orchestrator.report import verdicts as text
    from orchestrator.report.claims import summary_row
    from orchestrator.run_notes import sweep_note

    log_fd = {(c, s): 0.2 * (c == BN) + _noise(c, s) for c in PAIRED for s in range(6)}
    recs = [_record(c, s, v, diverged=c == BN and s < 2, last=math.exp(3.0)) for (c, s), v in log_fd.items()]
    results = list(_evaluate(recs).values())
    rows = [summary_row(r) for r in results]
    bn = {r["claim"]: r for r in rows}["bn"]
    assert bn["fragile"] and bn["verdict"] == "supported" and bn["verdict_dropped"] == "inconclusive"
    assert "**supported, fragile** |" in text.claims_markdown(results, [])
    assert "supported, fragile" in text.claims_latex(results, "claims") and "supported, fragile" in text.verdict_lines(results)[2]
    (row,) = [r for r in csv.DictReader(io.StringIO(text.claims_csv(rows))) if r["claim"] == "bn"]
    assert row["fragile"] == "True" and row["verdict_rank"] in ("supported", "inconclusive")
    outcome = {"trials": 24, "trials_finished": 22, "trials_diverged": 2, "trials_failed": 0, "best_fd_final": 1.0,
               "best_run": "t"}
    assert "**supported, fragile**" in sweep_note("sweep", "0", "p", outcome, rows)
    assert "| **yes** |" in "\n".join(text.sensitivity_markdown(results))
