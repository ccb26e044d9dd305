"""Calibration of the claim verdicts, on simulated studies run through the report's own machinery
(``report_claims.evaluate_claims``, the function ``build_report`` calls, on records shaped as
``report_data.records`` makes them) and the shipped claims file, for each shipped design: its
points come from ``search_spaces.loader.grid_points`` on the presets' spaces and seed counts.

Under no effect, a verdict that asserts one (supported, contradicted, not reproduced at this
horizon) is a false verdict: at most 5 % plus two Monte-Carlo standard errors per claim, exactly 0
for designs without replication. With a true x2 in FD at the stability design, the share of
"supported" is the power.

The noise model is taken from the committed CPU-scale study (docs/results/stability, 8 cells x 2
seeds): the within-cell SD of log final FD there was 0.012 to 0.64 by cell (pooled 0.33). Studies
are simulated with every cell at SD 0.33, and with each cell's SD drawn from those 8 values (FD's
variance differs by setting: the case a variance pooled over cells gets wrong). Seed effects
(SD 0.15, shared by every cell of a seed), 5 % of runs diverged in every cell, a flat last quarter.
"""
import dataclasses
import math

import numpy as np
import pytest

from orchestrator.config import load_sweep_settings
from orchestrator.report_claims import DECISIVE, evaluate_claims
from orchestrator.report_data import canonical, paper_levels
from search_spaces.claims import load_claims
from search_spaces.loader import grid_points, load_space

CELL_SDS = (0.012, 0.189, 0.637, 0.085, 0.049, 0.458, 0.424, 0.081)   # measured, per cell (see above)
POOLED_SD = 0.33
SEED_SD = 0.15
DIVERGED = 0.05
STEPS = (300, 600, 900, 1000, 1100, 1200)
# Verdicts come from the primary metric alone (test_secondaries_never_change_a_verdict checks it), so
# the studies carry final FD and divergence only and the claims their primary.
CLAIMS = [dataclasses.replace(c, expect=c.expect[:1]) for c in load_claims("paper")]


def _design(space_name, seeds):
    space = load_space(space_name)
    factors = [k for k, p in space.params.items() if len(p.values) > 1]
    points = grid_points(space, seeds)
    maps = {f: canonical for f in factors}
    return factors, points, paper_levels(factors, maps)


def _preset(name):
    s = load_sweep_settings(name)
    return s.space, s.seeds


def _study(rng, factors, points, paper, unequal, effect=0.0):
    """Records of one simulated study. Under the null the cells that are a claim's arms (the paper's
    cell and those one factor away from it) share one mean; cells further away get their own (the
    interactions a factorial may hold). ``effect``: log FD added to every one-factor-away cell."""
    cells = sorted({tuple(canonical(str(p[f])) for f in factors) for p in points})
    base = tuple(paper[f] for f in factors)
    away = {c: sum(a != b for a, b in zip(c, base)) for c in cells}
    mean = {c: (effect if away[c] == 1 else 0.0) if away[c] <= 1 else rng.normal(0, 0.5) for c in cells}
    sd = {c: (rng.choice(CELL_SDS) if unequal else POOLED_SD) for c in cells}
    seed_effect = rng.normal(0, SEED_SD, size=max(p["seed"] for p in points) + 1)
    out = []
    for p in points:
        cell = tuple(canonical(str(p[f])) for f in factors)
        fd = math.exp(4.5 + mean[cell] + seed_effect[p["seed"]] + rng.normal(0, sd[cell]))
        div = rng.random() < DIVERGED
        hist = [(s, fd * math.exp(rng.normal(0, 0.03))) for s in STEPS[:2 if div else None]]
        out.append({"run_id": f"{cell}-{p['seed']}", "levels": dict(zip(factors, cell)), "seed": str(p["seed"]),
                    "params": {}, "status": "diverged" if div else "finished", "final_step": 1200.0,
                    "fd_key": "fd_faces", "history": {"fd_faces": hist},
                    "values": {"fd_final": math.nan if div else fd, "diverged": float(div)}})
    return out


def _simulate(design, studies, unequal, effect=0.0, seed=0):
    """Per study, the share of its claims with a decisive (and the share with a supported) verdict."""
    factors, points, paper = design
    rng = np.random.default_rng(seed)
    decisive, supported, n_claims = [], [], 0
    for _ in range(studies):
        recs = _study(rng, factors, points, paper, unequal, effect)
        results, _ = evaluate_claims(CLAIMS, recs, factors, paper, lambda f, v: canonical(str(v)))
        n_claims = len(results)
        decisive.append(np.mean([r["verdict"] in DECISIVE for r in results]))
        supported.append(np.mean([r["verdict"] == "supported" for r in results]))
    return np.array(decisive), np.array(supported), n_claims


def _rate(shares):
    """Mean share over studies and its Monte-Carlo SE (studies are the independent units)."""
    return float(shares.mean()), float(shares.std(ddof=1) / math.sqrt(len(shares)))


DESIGNS = [   # (label, space, seeds, studies, replicated)
    ("quick: paper-claims 2x2x2 x 1 seed", *_preset("quick"), 100, False),
    ("stability: paper-claims-paired 4 cells x {} seeds", *_preset("stability"), 1000, True),
    ("stability-factorial: paper-claims 2x2x2 x {} seeds", *_preset("stability-factorial"), 400, True),
    ("architecture one-at-a-time x 1 seed (quick's)", "architecture", _preset("quick")[1], 50, False),
    ("architecture one-at-a-time x 2 seeds", "architecture", 2, 100, False),
    ("architecture one-at-a-time x {} seeds (stability's)", "architecture", _preset("stability")[1], 300, True),
]


@pytest.mark.parametrize("label, space, seeds, studies, replicated", DESIGNS,
                         ids=[d[0].split(":")[0].format(d[2]) for d in DESIGNS])
def test_false_verdicts_under_no_effect(label, space, seeds, studies, replicated, figure):
    design = _design(space, seeds)
    lines = []
    for unequal in ((False, True) if replicated else (False,)):
        shares, _, n_claims = _simulate(design, studies, unequal, seed=seeds)
        rate, se = _rate(shares)
        lines.append(f"{'unequal' if unequal else 'equal'} cell SDs {rate:.1%} (MC SE {se:.1%})")
        if replicated:
            assert rate <= 0.05 + 2 * max(se, math.sqrt(0.05 * 0.95 / (studies * n_claims))), lines[-1]
        else:
            assert rate == 0.0, lines[-1]
    figure(f"calibration, no effect, {label.format(seeds)}: false verdicts per claim: {'; '.join(lines)} "
           f"({studies} studies x {n_claims} claims)")


def test_power_at_twice_the_fd(figure):
    space, seeds = _preset("stability")
    design = _design(space, seeds)
    lines = []
    for unequal in (False, True):
        _, supported, n_claims = _simulate(design, 400, unequal, effect=math.log(2.0), seed=100 + seeds)
        power, se = _rate(supported)
        lines.append(f"{'unequal' if unequal else 'equal'} cell SDs {power:.0%} (MC SE {se:.1%})")
    figure(f"power, stability ({len(design[1]) // seeds} cells x {seeds} seeds), each alternative x2 FD: "
           f"claims supported {'; '.join(lines)} (400 studies x {n_claims} claims)")
    assert power > 0.2   # far above the 2.5 % a null gives on one side
