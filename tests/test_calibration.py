"""Calibration of the claim verdicts, on simulated studies run through the report's own machinery
(``orchestrator.report.power``: ``report.claims.evaluate_claims``, the function ``build_report`` calls, on
records shaped as ``report.data.records`` makes them) and the shipped claims file, for each shipped
design: its points come from ``search_spaces.loader.grid_points`` on the presets' spaces and seed counts.

Under no effect, a verdict that asserts one (supported, contradicted, not reproduced at this
horizon) is a false verdict: at most 5 % plus two Monte-Carlo standard errors per claim, exactly 0
for designs without replication. With a true x2 in FD at the stability design, the share of
"supported" is the power.

The noise model (``orchestrator.report.power``) is taken from the committed CPU-scale study
(docs/results/stability/factorial-1200, 8 cells x 2 seeds): the within-cell SD of log final FD there was 0.012 to
0.64 by cell (pooled 0.33). Studies are simulated with every cell at SD 0.33, and with each cell's
SD drawn from those 8 values (FD's variance differs by setting: the case a variance pooled over
cells gets wrong). Seed effects (SD 0.15, shared by every cell of a seed), 5 % of runs diverged in
every cell, a flat last quarter.

The verdicts are those of issue 32's rules: the primary tests of the claims file are one Holm family,
and "contradicted" needs both cells of a claim shown flat (TOST at the file's plateau_margin, the
run the unit). A paper cell still falling (-0.2 log FD per 1,000 steps, twice the margin) must be
called contradicted in at most 5 % (+ 2 MC SE) of studies whose effect goes against the claim;
heavier divergence (20 % of runs) must not raise the false verdicts above 5 %.
"""
import math
from pathlib import Path

import pytest
from conftest import run_cli

from orchestrator.config import load_sweep_settings
from orchestrator.report import power as sim
from orchestrator.report.power import CELL_SDS, Noise, seeds_for_power


def _preset(name):
    s = load_sweep_settings(name)
    return s.space, s.seeds


def _simulate(design, studies, unequal, effect=0.0, seed=0):
    return sim.simulate(design, studies, Noise(cell_sds=CELL_SDS if unequal else ()), effect, seed)


DESIGNS = [   # (label, space, seeds, studies, replicated)
    ("quick: paper-claims 2x2x2 x 1 seed", *_preset("quick"), 100, False),
    ("stability: paper-claims-paired 4 cells x {} seeds", *_preset("stability"), 400, True),
    ("stability-factorial: paper-claims 2x2x2 x {} seeds", *_preset("stability-factorial"), 400, True),
    ("architecture one-at-a-time x 1 seed (quick's)", "architecture", _preset("quick")[1], 50, False),
    ("architecture one-at-a-time x 2 seeds", "architecture", 2, 100, False),
    ("architecture one-at-a-time x {} seeds (stability's)", "architecture", _preset("stability")[1], 150, True),
]


@pytest.mark.parametrize("label, space, seeds, studies, replicated", DESIGNS,
                         ids=[d[0].split(":")[0].format(d[2]) for d in DESIGNS])
def test_false_verdicts_under_no_effect(label, space, seeds, studies, replicated, figure):
    design = sim.design(space, seeds)
    lines = []
    for unequal in ((False, True) if replicated else (False,)):
        shares, _, n_claims = _simulate(design, studies, unequal, seed=seeds)
        rate, se = sim.rate(shares)
        lines.append(f"{'unequal' if unequal else 'equal'} cell SDs {rate:.1%} (MC SE {se:.1%})")
        if replicated:
            assert rate <= 0.05 + 2 * max(se, math.sqrt(0.05 * 0.95 / (studies * n_claims))), lines[-1]
        else:
            assert rate == 0.0, lines[-1]
    figure(f"calibration, no effect, {label.format(seeds)}: false verdicts per claim: {'; '.join(lines)} "
           f"({studies} studies x {n_claims} claims)")


def test_power_at_twice_the_fd(figure):
    space, seeds = _preset("stability")
    design = sim.design(space, seeds)
    lines = []
    for unequal in (False, True):
        _, supported, n_claims = _simulate(design, 400, unequal, effect=math.log(2.0), seed=100 + seeds)
        power, se = sim.rate(supported)
        lines.append(f"{'unequal' if unequal else 'equal'} cell SDs {power:.0%} (MC SE {se:.1%})")
    figure(f"power, stability ({len(design[1]) // seeds} cells x {seeds} seeds), each alternative x2 FD: "
           f"claims supported {'; '.join(lines)} (400 studies x {n_claims} claims)")
    assert power > 0.9   # x2 is far above the x1.5 the preset is sized for


def test_the_stability_preset_power_at_x1_5_under_the_family_rule(figure):
    """stability.yaml was sized for x1.5 in geometric-mean FD at 80 % power, one test at 5 %, at the
    noise of the time (the module's default: the 1,200-step study's pooled SD 0.33, seed SD 0.15).
    Holm over the file's three primary tests costs some of it: printed, and held above 70 %."""
    space, seeds = _preset("stability")
    _, supported, n_claims = sim.simulate(sim.design(space, seeds), 400, Noise(), math.log(1.5), seed=7)
    power, se = sim.rate(supported)
    figure(f"power, stability ({seeds} seeds), each alternative x1.5 FD at SD 0.33, Holm over {n_claims} claims: "
           f"{power:.0%} (MC SE {se:.1%}, 400 studies)")
    assert power >= 0.7 - 2 * se


@pytest.mark.parametrize("preset", ["stability", "stability-factorial"])
def test_a_paper_cell_still_falling_is_rarely_contradicted(preset, figure):
    """Every alternative at x0.5 the paper's FD (against the claims), the paper's cell flat or still
    falling at -0.2 log FD per 1,000 steps over its last quarter: the share called contradicted."""
    space, seeds = _preset(preset)
    design = sim.design(space, seeds)
    rates = {}
    for slope in (0.0, -0.2):
        _, contradicted, n_claims = sim.simulate(design, 150, Noise(paper_slope=slope), math.log(0.5), seed=11,
                                                 verdict="contradicted")
        rates[slope] = sim.rate(contradicted)
    rate, se = rates[-0.2]
    figure(f"contradicted at x0.5 against the claims, {preset} ({seeds} seeds): paper's cell flat "
           f"{rates[0.0][0]:.0%} (MC SE {rates[0.0][1]:.1%}); still falling at -0.2 / 1,000 steps {rate:.1%} "
           f"(MC SE {se:.1%}); 150 studies x {n_claims} claims, margin 0.1")
    assert rate <= 0.05 + 2 * max(se, math.sqrt(0.05 * 0.95 / (150 * n_claims)))


def test_heavy_divergence_keeps_the_false_verdicts_at_5_percent(figure):
    """20 % of runs diverged in every cell (censored at the worst FD), no effect, unequal cell SDs."""
    space, seeds = _preset("stability")
    shares, _, n_claims = sim.simulate(sim.design(space, seeds), 200, Noise(cell_sds=CELL_SDS, diverged=0.2),
                                       seed=13)
    rate, se = sim.rate(shares)
    figure(f"calibration, no effect, stability ({seeds} seeds), 20 % of runs diverged, unequal cell SDs: "
           f"false verdicts {rate:.1%} (MC SE {se:.1%}, 200 studies x {n_claims} claims)")
    assert rate <= 0.05 + 2 * max(se, math.sqrt(0.05 * 0.95 / (200 * n_claims)))


def test_seeds_for_power_finds_the_fewest_seeds_that_reach_the_target():
    """The search's answer reaches the target and one seed fewer does not (same simulations), and
    a huge effect needs no more than the minimum."""
    rows, chosen = seeds_for_power("paper-claims-paired", 2.0, Noise(), target=0.6, min_seeds=3, max_seeds=12,
                                   studies=60)
    power = {s: p for s, _, p, _ in rows}
    assert chosen is not None and power[chosen] >= 0.6
    assert chosen == 3 or power[chosen - 1] < 0.6
    assert [s for s, *_ in rows] == sorted(power) and all(n == 4 * s for s, n, _, _ in rows)   # 4 cells per seed
    _, easy = seeds_for_power("paper-claims-paired", 50.0, Noise(sd=0.05, seed_sd=0.05), target=0.8, min_seeds=3,
                              max_seeds=12, studies=40)
    assert easy == 3


def test_power_from_runs_csv_uses_each_claims_contrast_sd():
    """``dcgan-lab power --from``: the spread per claim is the SD of its paired contrast in the
    committed study's runs.csv (recomputed here with pandas: log final FD, a diverged run at the worst
    finished FD), and the simulated power sits between one paired t at 5 % and one at 5 % / 3
    (statsmodels TTestPower): Holm over the three claims costs at most a Bonferroni's worth."""
    import numpy as np
    import pandas as pd
    from statsmodels.stats.power import TTestPower

    path = Path(__file__).parents[1] / "docs" / "results" / "stability" / "runs.csv"
    runs = pd.read_csv(path, dtype={"bn_placement": str})
    runs["y"] = np.log(runs["fd_final"].where(runs["diverged"] != 1.0, runs["fd_final"].max()))
    cell = lambda lr, b1, bn: runs[(runs.lr == lr) & (runs.beta1 == b1) & (runs.bn_placement == bn)].set_index("seed")["y"]  # noqa: E731
    paper = cell(2e-4, 0.5, "paper")
    expected = {"lr": cell(1e-3, 0.5, "paper"), "beta1": cell(2e-4, 0.9, "paper"), "bn": cell(2e-4, 0.5, "all")}
    spreads = {k: (n, sd) for k, n, sd in sim.contrast_spreads(str(path))}
    for key, alt in expected.items():
        assert spreads[key] == (20, pytest.approx(float((alt - paper).std(ddof=1))))
    assert spreads["bn"][1] == pytest.approx(0.984, abs=5e-4)   # issue 32: not the pooled cell SD 0.483
    for sd in (0.5, 0.984):
        power, se = sim.claim_power("paper-claims-paired", 20, 1.5, sd, studies=150, seed=3)
        effect = math.log(1.5) / sd
        lo, hi = (TTestPower().power(effect_size=effect, nobs=20, alpha=a) for a in (0.05 / 3, 0.05))
        assert lo - 2 * se - 0.02 <= power <= hi + 2 * se + 0.02, (sd, power, lo, hi)


def test_power_from_a_pilot_with_a_tiny_spread(tmp_path):
    """``power --from`` on the committed Fashion-MNIST pilot (2 seeds; contrast SDs near 0.05, so a
    x1.5 effect is 8 SDs): a table, not a traceback. statsmodels' solver returns NaN where 2 seeds
    already suffice; the table says 2 there, and the one-t column agrees with TTestPower."""
    from statsmodels.stats.power import TTestPower

    from orchestrator.power_cmd import t_power, t_seeds_for

    pilot = Path(__file__).parents[1] / "docs" / "results" / "fashion" / "pilot" / "runs.csv"
    r = run_cli("power", "--from", str(pilot), "--studies", "40", cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "| lr | 2 |" in r.stdout, r.stdout
    for effect in (19.0, 9.56, 0.5):   # solver NaN; solver below 2 and statsmodels' power NaN at 3; solver right
        need = int(t_seeds_for(effect, 0.8))
        assert t_power(effect, need) >= 0.8 and (need == 2 or t_power(effect, need - 1) < 0.8), effect
    assert t_power(0.5, 34) == pytest.approx(TTestPower().power(effect_size=0.5, nobs=34, alpha=0.05))
