"""``dcgan-lab sweep --sequential``: a paired study run block after block on one store, each block
the seeds up to the next planned look, stopping by itself once every claim is decided
(``orchestrator.report.sequential`` has the rule).

Block k is its own Tune experiment (``<sweep>-look<k>``) under the sweep's one MLflow parent run: its
trials are the paper's cell and the alternatives of the claims still open, for the seeds between the
previous look and this one. After each block the look is made from the runs in the store (every
look so far is recomputed from them, so a resumed driver takes the same decisions) and printed on one
line; the look history goes to the parent as ``sequential/looks.md`` and ``looks.csv`` and into its
description. ``--resume`` restores a block whose Tune state exists (its finished trials are not run
again) and goes on from there.
"""
import csv
import io

from orchestrator.report import sequential
from trainables.errors import UserError

LOOKS_DIR = "sequential"   # the parent run's artifacts: looks.md, looks.csv


def check_sequential(space, settings):
    """The design of a ``--sequential`` sweep and the claims it tests, checked before Ray starts."""
    from orchestrator.report.power import primary_claims

    if settings.search != "grid" or space.design != "one_at_a_time":
        raise UserError(f"--sequential: space={space.name!r} is not allowed: a paired design (search grid over a "
                        f"space with design: one_at_a_time, e.g. paper-claims-paired; this one: search "
                        f"{settings.search}, design {space.design or 'factorial'})")
    design = sequential.design_from(sequential.parse_looks(settings.sequential_looks), settings.sequential_spending,
                                    max_seeds=settings.seeds)
    claims = [c for c in primary_claims(settings.sequential_claims)
              if c.factor in space.params and c.alt in space.params[c.factor].values]
    if not claims:
        raise UserError(f"--sequential: space={space.name!r} is not allowed: it tests no claim of the claims file")
    return design, claims


def block_points(space, settings, design, k, open_factors):
    """The trials of block ``k``: the paper's cell and the open claims' alternatives, for the seeds
    between look k-1 and look k."""
    from search_spaces.loader import grid_points, paper_defaults

    prev = design.looks[k - 1] if k else 0
    paper = paper_defaults(space)
    points = grid_points(space, design.looks[k] - prev, settings.first_seed + prev)
    return [p for p in points if all(p[f] == paper[f] or f in open_factors for f in space.params)]


def make_look(uri, parent, design, k, settings, claims):
    """(history, outcomes) of looks 1..k+1 from the parent's runs in the store."""
    from orchestrator.report import data

    runs, _, _ = data.find_runs(uri, sweep=parent)
    recs, factors, paper, label = data.claim_inputs(runs, claims, uri)
    order = [str(s) for s in range(settings.first_seed, settings.first_seed + design.looks[-1])]
    return sequential.run_looks(recs, factors, paper, label, claims, design, order, upto=k + 1)


def look_line(k, design, history):
    """One console line per look: each claim's ratio, p against its boundary, and what was decided."""
    import math

    rows = [r for r in history if r["look"] == k + 1]
    parts = [f"{r['claim']} x{math.exp(r['effect']):.3g} p={r['p']:.2g} (boundary {r['boundary_p']:.2g}): {r['decision']}"
             for r in rows]
    return f"[sequential] look {k + 1}/{len(design.looks)}, {design.looks[k]} seeds per arm: " + "; ".join(parts)


def run_sequential(d, space, settings, parent, uri, run_block):
    """Block after block until every claim is decided or the last look; ``run_block(name, points)``
    trains one block. Returns the look history's Markdown."""
    from trainables import store

    design, claims = check_sequential(space, settings)
    factor_of = {c.key: c.factor for c in claims}
    open_factors = set(factor_of.values())
    history, outcomes = [], {}
    for k in range(len(design.looks)):
        run_block(f"{d.name}-look{k + 1}", block_points(space, settings, design, k, open_factors))
        history, outcomes = make_look(uri, parent, design, k, settings, claims)
        print(look_line(k, design, history), flush=True)
        open_factors = {f for c, f in factor_of.items() if c not in outcomes}
        if not open_factors:
            break
    trials = sequential.trials_spent({c: stop for c, (stop, _, _) in outcomes.items()}, design)
    fixed = design.looks[-1] * (1 + len(claims))
    md = sequential.history_markdown(history, outcomes, design, trials, fixed)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    c = store.client(uri)
    c.log_text(parent, md, f"{LOOKS_DIR}/looks.md")
    c.log_text(parent, buf.getvalue(), f"{LOOKS_DIR}/looks.csv")
    c.set_tag(parent, "sequential_trials", str(trials))
    return md


def expected_trials(space, settings, studies=200):
    """For ``--dry-run --sequential``: the expected trials under no effect, x1.5 and x2 (studies
    simulated as ``dcgan-lab power`` does, its default spread), beside the fixed design's."""
    import math

    from orchestrator.report import power

    design, claims = check_sequential(space, settings)
    out = {"looks": list(design.looks), "spending": design.spending, "fixed_trials": design.looks[-1] * (1 + len(claims))}
    for name, ratio in (("no effect", 1.0), ("x1.5", 1.5), ("x2", 2.0)):
        results = sequential.simulate(space.name, power.Noise(), math.log(ratio), studies, design, seed=1)
        out[f"expected_trials ({name})"] = round(sum(r[2] for r in results) / len(results), 1)
    out["note"] = (f"an estimate from {studies} simulated studies per row at the default spread "
                   f"(dcgan-lab power's), not a measurement")
    return out
