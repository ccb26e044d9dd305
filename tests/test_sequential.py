"""The sequential rule (orchestrator/report/sequential.py): its boundaries, its real level and power on the
simulated studies ``dcgan-lab power`` uses, the committed study replayed, and its bad input."""
import math

import numpy as np
import pytest
from conftest import ROOT, run_cli

from orchestrator.report import power, sequential
from trainables.errors import UserError

STUDY = ROOT / "docs" / "results" / "stability"
BLOCKS = [str(STUDY / f"block-{i}") for i in range(8)]
SPACE = "paper-claims-paired"


def test_boundaries_are_lan_demets():
    """O'Brien-Fleming- and Pocock-type boundaries at four equal looks, two-sided α 0.05 (the values of
    Lan & DeMets' spending functions as published, e.g. R's gsDesign/ldbounds to 3 decimals); an
    independent Monte-Carlo of the z paths crosses them with probability α, spent as the function says."""
    obf = sequential.z_boundaries((0.25, 0.5, 0.75, 1.0), 0.05, "obf")
    assert np.allclose(obf, (4.333, 2.963, 2.359, 2.014), atol=2e-3), obf
    pocock = sequential.z_boundaries((0.25, 0.5, 0.75, 1.0), 0.05, "pocock")
    assert np.allclose(pocock, (2.368, 2.368, 2.358, 2.350), atol=0.02), pocock
    rng = np.random.default_rng(1)
    z = np.cumsum(rng.normal(size=(400_000, 4)), axis=1) / np.sqrt(np.arange(1, 5))
    for bounds, name in ((obf, "obf"), (pocock, "pocock")):
        crossed = np.abs(z) >= np.array(bounds)
        first = np.where(crossed.any(1), crossed.argmax(1), 4)
        for k, t in enumerate((0.25, 0.5, 0.75, 1.0)):
            assert abs((first <= k).mean() - sequential.spent(name, t, 0.05)) < 0.0015, (name, k)


def _rates(results):
    decisive = np.array([list(r[0].values()) for r in results], dtype=float)
    supported = np.array([[v == "supported" for v in r[1].values()] for r in results], dtype=float)
    trials = np.array([r[2] for r in results], dtype=float)
    return decisive, supported, trials


def test_calibration_level_power_and_trials(figure):
    """Under no effect the false-verdict rate over all looks is at most 5 % + 2 Monte-Carlo SE, per
    claim and family-wise; at x2 the power is within 5 points of the fixed 20-seed design's; the
    expected trials under no effect, x1.5, x2 and x3 (studies the unit of every MC SE)."""
    design = sequential.design_from(sequential.DEFAULT_LOOKS)
    noise = power.Noise()
    n_null, n_alt = 600, 200
    decisive, _, trials0 = _rates(sequential.simulate(SPACE, noise, 0.0, n_null, design, seed=11))
    per_claim = decisive.mean(0)
    family = decisive.any(1).mean()
    se = lambda p, n: math.sqrt(max(p * (1 - p), 0.05 * 0.95) / n)  # noqa: E731
    lines = [f"sequential (looks {design.looks}, {design.spending}), no effect, {n_null} studies: false verdicts per "
             f"claim {', '.join(f'{p:.1%}' for p in per_claim)}, family-wise {family:.1%} "
             f"(MC SE {se(family, n_null):.1%}); trials {trials0.mean():.1f} of 80"]
    assert all(p <= 0.05 + 2 * se(p, n_null) for p in per_claim), per_claim
    assert family <= 0.05 + 2 * se(family, n_null), family
    fixed = power.design(SPACE, design.looks[-1])
    for ratio in (1.5, 2.0, 3.0):
        _, supported, trials = _rates(sequential.simulate(SPACE, noise, math.log(ratio), n_alt, design, seed=12))
        line = f"x{ratio:g}, {n_alt} studies: power {supported.mean():.1%}"
        if ratio == 2.0:
            _, fixed_supported, _ = power.simulate(fixed, n_alt, noise, effect=math.log(ratio), seed=12)
            line += f" (fixed 20-seed design {fixed_supported.mean():.1%})"
            assert supported.mean() >= fixed_supported.mean() - 0.05
        lines.append(f"{line}; expected trials {trials.mean():.1f} of 80 (MC SE {trials.std(ddof=1) / math.sqrt(n_alt):.1f})")
    figure("\n".join(lines))


def test_the_committed_study_replayed(tmp_path, figure):
    """The 20 seeds of docs/results/stability fed to the rule in block order: each claim stops with the
    fixed design's verdict, for at most 70 % of its 80 trials."""
    from orchestrator.report import data
    from orchestrator.report.claims import evaluate_claims
    from orchestrator.report.folders import FolderRuns

    design = sequential.design_from(sequential.DEFAULT_LOOKS)
    history, outcomes, order, fixed = sequential.replay_folders(BLOCKS, design)
    assert order == [str(s) for s in range(20)] and fixed == 80
    trials = sequential.trials_spent({c: stop for c, (stop, _, _) in outcomes.items()}, design)
    # The fixed design's verdicts, from the same runs through the same report rules.
    source = FolderRuns(BLOCKS)
    claims = power.primary_claims()
    factors = data.choose_factors(source.runs, None, [c.factor for c in claims])
    maps = data.level_maps(source.runs, factors)
    recs, _ = data.records(None, source.runs, factors, history=source.history)
    results, _ = evaluate_claims(claims, recs, factors, data.paper_levels(factors, maps),
                                 lambda f, v: maps[f](str(v)), describe=False)
    fixed_verdicts = {r["claim"].key: r["verdict"] for r in results}
    figure("replay of the committed study: " + "; ".join(
        f"{c} stops at look {'-' if s is None else s + 1} ({v}; fixed: {fixed_verdicts[c]})"
        for c, (s, v, _) in outcomes.items()) + f"; {trials} trials of {fixed} ({trials / fixed:.0%})")
    assert set(outcomes) == set(fixed_verdicts) == {"lr", "beta1", "bn"}
    assert {c: v for c, (_, v, _) in outcomes.items()} == fixed_verdicts
    assert trials <= 0.7 * fixed
    for stop, _, row in outcomes.values():
        assert stop is not None and row["rci_lo"] <= row["effect"] <= row["rci_hi"]
        assert row["rci_hi"] - row["rci_lo"] >= row["hi"] - row["lo"]   # the RCI is never narrower than fixed-n
    r = run_cli("replay", "--from", *BLOCKS, "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "Trials: **50** sequential against 80" in r.stdout or f"Trials: **{trials}**" in r.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"replay.md", "replay.csv", "replay.json"}


@pytest.mark.parametrize("looks, spending, max_seeds, message", [
    ((5, 5, 10), "obf", None, "sequential_looks=5,5,10 is not allowed: increasing seed counts"),
    ((10, 5), "obf", None, "sequential_looks=10,5 is not allowed: increasing seed counts"),
    ((2, 4), "obf", None, "sequential_looks=2,4 is not allowed: whole seed counts >= 3"),
    ((5, 10, 15, 20), "obf", 4, "seeds=4 is not allowed: >= the last look (20 seeds per arm)"),
    ((5, 10), "haybittle", None, "sequential_spending='haybittle' is not allowed: one of obf, pocock"),
])
def test_bad_designs(looks, spending, max_seeds, message):
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        sequential.design_from(looks, spending, max_seeds)


def test_replay_bad_input_is_one_line(tmp_path):
    for args, key in ((["--looks", "5,x"], "sequential_looks='5,x'"), (["--spending", "none"], "sequential_spending"),
                      (["--looks", "5,10,15,20,25"], "the runs hold 20 seeds")):
        r = run_cli("replay", "--from", *BLOCKS, "--out", str(tmp_path / "out"), *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and key in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
    r = run_cli("replay", "--from", str(tmp_path))
    assert r.returncode == 2 and "a report folder holding runs.csv" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--preset", "quick", "--sequential"], "--sequential: space='paper-claims' is not allowed: a paired design"),
    (["--preset", "stability", "--sequential", "--sequential-looks", "10,5"], "sequential_looks=10,5 is not allowed"),
    (["--preset", "stability", "--sequential", "--seeds", "4"], "seeds=4 is not allowed: >= the last look"),
    (["--preset", "stability", "--sequential", "--sequential-spending", "alpha"], "--sequential-spending='alpha' is not allowed"),
])
def test_sequential_sweep_bad_input_starts_nothing(tmp_path, args, message):
    """dcgan-lab sweep --sequential refuses, before Ray starts, a space without a paired design,
    looks that do not increase, a maximum below the last look, an unknown spending rule."""
    r = run_cli("sweep", *args, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert not any(tmp_path.iterdir())
