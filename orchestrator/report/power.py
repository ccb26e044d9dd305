"""How many seeds a claim test needs (``dcgan-lab power``, ``orchestrator/power_cmd.py``), from simulated
studies run through the report's own machinery (``report.claims.evaluate_claims``, on records shaped
as ``report.data.records`` makes them, with the shipped claims file and a shipped space's design).

A simulated study has the design's cells and seeds. Log final FD in a run is
``4.5 + cell mean + seed effect + noise``: the seed effect (SD ``seed_sd``) is shared by every cell
of a seed (the grid gives every cell the same seeds); the noise has SD ``sd`` in every cell, or each
cell's SD is drawn from ``cell_sds`` (variances that differ by setting). A share ``diverged`` of
runs diverge, in every cell. FD histories are flat over the last quarter (3 % noise per evaluation),
or in the paper's cell still falling at ``paper_slope`` log FD per 1,000 steps.
Under the null a claim's arms (the paper's cell and the cells one factor away) share one mean;
cells further away get their own (interactions a factorial may hold). With an effect, log(ratio)
is added to every one-factor-away cell: the alternative's geometric-mean FD is ``ratio`` x the
paper's. The power is the share of claims called "supported"; studies are the independent units
of its Monte-Carlo standard error.

``--from RUNS_CSV`` (a report's runs.csv, or its folder) takes the spread per claim from runs
already made: the SD over seeds of the claim's paired contrast (alt − paper within a seed, log
final FD, diverged runs censored as the report does), not a within-cell SD pooled over cells.
Each claim is then simulated with that spread (each arm's SD the contrast's / sqrt 2, the report's
Holm family over the file's claims), and its single-test power from statsmodels ``TTestPower``
printed beside it.

The default noise is the committed CPU-scale study's (docs/results/stability/factorial-1200, 8 cells x 2 seeds,
1,200 steps): within-cell SD of log final FD 0.012 to 0.64 by cell, pooled 0.33; seed SD 0.15 is
an assumption, not a measurement. A study at another horizon or recipe has its own spread: measure
it (a pilot) and pass ``--sd``.
"""
import dataclasses
import math
import statistics

CELL_SDS = (0.012, 0.189, 0.637, 0.085, 0.049, 0.458, 0.424, 0.081)   # measured, per cell (see above)
POOLED_SD = 0.33
SEED_SD = 0.15
DIVERGED = 0.05
STEPS = (300, 600, 900, 1000, 1100, 1200)


@dataclasses.dataclass(frozen=True)
class Noise:
    sd: float = POOLED_SD           # within-cell SD of log final FD
    seed_sd: float = SEED_SD        # SD of a seed's shared effect
    diverged: float = DIVERGED      # share of runs that diverge
    cell_sds: tuple = ()            # when given, each cell's SD is drawn from these instead of ``sd``
    paper_slope: float = 0.0        # log FD per 1,000 steps in the paper cell's histories (0: flat)


def seeds_for_power(space, ratio, noise, target=0.8, min_seeds=5, max_seeds=40, studies=200):
    """([(seeds, trials, power, MC SE)], the fewest seeds whose power reaches ``target`` or None).
    Seed counts from ``min_seeds`` up, doubling until the target is reached, then bisected."""
    rows = {}

    def at(seeds):
        if seeds not in rows:
            d = design(space, seeds)
            _, supported, _ = simulate(d, studies, noise, effect=math.log(ratio), seed=seeds)
            rows[seeds] = (seeds, len(d[1]), *rate(supported))
        return rows[seeds][2]

    lo, hi = min_seeds, min_seeds
    while at(hi) < target:
        if hi == max_seeds:
            return sorted(rows.values()), None
        lo, hi = hi, min(2 * hi, max_seeds)
    while hi - lo > 1:   # at(lo) < target <= at(hi), or lo == hi == min_seeds
        mid = (lo + hi) // 2
        if at(mid) >= target:
            hi = mid
        else:
            lo = mid
    return sorted(rows.values()), hi


def contrast_spreads(runs_csv, space="paper-claims-paired", claims="paper"):
    """[(claim key, seeds, SD of its paired contrast on log FD)] for the shipped claims that the runs of
    ``runs_csv`` (a report's runs.csv or its folder, read as ``report --from`` reads it) test."""
    from pathlib import Path

    from orchestrator.report.claims import evaluate_claims
    from orchestrator.report.data import claim_inputs
    from orchestrator.report.folders import FolderRuns
    from orchestrator.report.model import seed_table

    path = Path(runs_csv)
    source = FolderRuns([path.parent if path.name == "runs.csv" else path])
    claim_list = primary_claims(claims)
    recs, factors, paper, label = claim_inputs(source.runs, claim_list, history=source.history)
    results, _ = evaluate_claims(claim_list, recs, factors, paper, label, describe=False)
    out = []
    for res in results:
        tab, _ = seed_table(recs, factors, res["claim"].primary)
        paper, alt = (tab.get(arm, {}) for arm in res["arms"])
        d = [alt[s] - paper[s] for s in sorted(set(paper) & set(alt))]
        if len(d) >= 2:
            out.append((res["claim"].key, len(d), float(statistics.stdev(d))))
    return out


def claim_power(space, seeds, ratio, contrast_sd, studies=200, seed=0):
    """(power, MC SE) of the claims of ``space``'s design with ``seeds`` seeds when each arm's SD of
    log FD is ``contrast_sd`` / sqrt 2 (no seed effect: it cancels within a seed; no divergence:
    the spread measured already holds it), the report's verdict rules and Holm family."""
    noise = Noise(sd=contrast_sd / math.sqrt(2), seed_sd=0.0, diverged=0.0)
    _, supported, _ = simulate(design(space, seeds), studies, noise, effect=math.log(ratio), seed=seed)
    return rate(supported)


def design(space_name, seeds):
    """(factors searched, the grid's points with ``seeds`` seeds, the paper's level of each factor)."""
    from orchestrator.report.data import canonical, paper_levels
    from search_spaces.loader import grid_points, load_space

    space = load_space(space_name)
    factors = [k for k, p in space.params.items() if len(p.values) > 1]
    points = grid_points(space, seeds)
    return factors, points, paper_levels(factors, {f: canonical for f in factors})


def simulate_study(rng, design, noise, effect=0.0):
    """Records of one simulated study (see the module's text)."""
    from orchestrator.report.data import canonical

    factors, points, paper = design
    cells = sorted({tuple(canonical(str(p[f])) for f in factors) for p in points})
    base = tuple(paper[f] for f in factors)
    away = {c: sum(a != b for a, b in zip(c, base)) for c in cells}
    mean = {c: (effect if away[c] == 1 else 0.0) if away[c] <= 1 else rng.normal(0, 0.5) for c in cells}
    sd = {c: (rng.choice(noise.cell_sds) if noise.cell_sds else noise.sd) for c in cells}
    seed_effect = rng.normal(0, noise.seed_sd, size=max(p["seed"] for p in points) + 1)
    out = []
    for p in points:
        cell = tuple(canonical(str(p[f])) for f in factors)
        fd = math.exp(4.5 + mean[cell] + seed_effect[p["seed"]] + rng.normal(0, sd[cell]))
        div = rng.random() < noise.diverged
        slope = noise.paper_slope if away[cell] == 0 else 0.0
        hist = [(s, fd * math.exp(slope * (s - STEPS[-1]) / 1000 + rng.normal(0, 0.03))) for s in STEPS[:2 if div else None]]
        out.append({"run_id": f"{cell}-{p['seed']}", "levels": dict(zip(factors, cell)), "seed": str(p["seed"]),
                    "params": {}, "status": "diverged" if div else "finished", "final_step": 1200.0,
                    "fd_key": "fd_faces", "history": {"fd_faces": hist},
                    "values": {"fd_final": math.nan if div else fd, "diverged": float(div),
                               "fd_last_before_divergence": hist[-1][1] if div else math.nan}})
    return out


def primary_claims(claims="paper"):
    """The claims file's claims (default: the shipped paper claims) with their primary metric alone:
    verdicts come from it alone (tests/test_report.py checks that secondaries never change one), so
    simulations and sequential looks skip the rest."""
    from search_spaces.claims import load_claims

    return [dataclasses.replace(c, expect=c.expect[:1]) for c in load_claims(claims)]


def simulate(design, studies, noise, effect=0.0, seed=0, verdict="supported"):
    """Per study, the share of its claims with a decisive verdict, and the share with ``verdict``
    (numpy arrays), and the number of claims tested per study."""
    import numpy as np

    from orchestrator.report.claims import DECISIVE, evaluate_claims
    from orchestrator.report.data import canonical

    factors, _, paper = design
    claims = primary_claims()
    rng = np.random.default_rng(seed)
    decisive, supported, n_claims = [], [], 0
    for _ in range(studies):
        recs = simulate_study(rng, design, noise, effect)
        results, _ = evaluate_claims(claims, recs, factors, paper, lambda f, v: canonical(str(v)), describe=False)
        n_claims = len(results)
        decisive.append(np.mean([r["verdict"] in DECISIVE for r in results]))
        supported.append(np.mean([r["verdict"] == verdict for r in results]))
    return np.array(decisive), np.array(supported), n_claims


def rate(shares):
    """Mean share over studies and its Monte-Carlo SE (studies are the independent units)."""
    return float(shares.mean()), float(shares.std(ddof=1) / math.sqrt(len(shares)))
