"""Where does FD stop falling? The plateau at a ladder of horizons (``dcgan-lab pilot``,
``orchestrator/pilot_cmd.py``).

For each cell of a sweep (the ``pilot`` preset: the paper's cell and lr 1e-3 run long, one seed),
every run is read as it stood at each horizon H (``report.horizons.at_step``) and the slope of log
FD over the last quarter of the first H steps is fitted by ``report.model.plateau`` with
``pooled=True`` (one formula OLS, one intercept per run: with one run per cell the evaluations are
the unit; the report's own test takes the run as the unit and needs 2 runs). *Flat*: the report's
equivalence test (``report.model.equivalence``, the one helper both use), the slope's 90 % interval
inside +-MARGIN per 1,000 steps (two one-sided tests at 5 %), which few or noisy points cannot pass.

A cell's *plateau step* is the first horizon from which it is flat at every later horizon
(``plateau_step``); the study's horizon is the latest cell's plus 25 %, rounded up to a thousand
steps (``study_horizon``), or none when a cell has no plateau step. Writes ``pilot.md``,
``pilot.json`` and ``fd_curves.png`` to ``--out``.
"""
import json
import math
from pathlib import Path

from trainables.errors import UserError

MARGIN = 0.2   # log FD per 1,000 steps: about half of log(1.5), the effect the study is powered for


def ladder(records, every):
    """Horizons every ``every`` steps up to the records' horizon (the horizon itself included)."""
    from orchestrator.report.horizons import horizon

    full = horizon(records)
    if not math.isfinite(full):
        return []
    steps = list(range(every, int(full) + 1, every))
    return steps if steps and steps[-1] == int(full) else steps + [int(full)]


def plateau_ladder(records, steps):
    """[(horizon, plateau result)] for one cell's records, each read as it stood at the horizon."""
    from orchestrator.report.horizons import at_step
    from orchestrator.report.model import plateau

    return [(h, plateau([at_step(r, h, math.nan) for r in records], MARGIN, pooled=True)) for h in steps]


def flat(pl, margin=MARGIN):
    """Is FD shown flat at this horizon? The report's equivalence test (TOST at 5 %) on the fitted
    slope, at ``margin`` per 1,000 steps: few or noisy points cannot pass it, their interval is wide."""
    from orchestrator.report.model import equivalence

    return pl["testable"] and equivalence(pl["slope"], pl["se"], pl["df"], margin)["equivalent"]


def plateau_step(rows, margin=MARGIN):
    """The first horizon H from which FD is shown flat (``flat``) at H and at every later horizon of
    the ladder; None when there is none: the runs still move at some later horizon, or their slope
    is not measured precisely enough to show it flat (one noisy run often cannot be)."""
    found = None
    for h, pl in rows:
        found = (found or h) if flat(pl, margin) else None
    return found


def study_horizon(steps):
    """The study's max_steps from the cells' plateau steps: the latest, with a 25 % margin, rounded
    up to a thousand steps (None if a cell has none). The report tests the paper cell's plateau again
    on the study's own runs before it calls a claim contradicted."""
    if not steps or any(s is None for s in steps):
        return None
    return int(math.ceil(1.25 * max(steps) / 1000.0) * 1000)


def cells_of(records, factors):
    cells = {}
    for r in records:
        cells.setdefault(tuple(r["levels"][f] for f in factors), []).append(r)
    return sorted(cells.items())


def write_pilot(records, factors, label, every, out):
    """Per cell: the ladder, the plateau step, the FD at the last horizon; written to ``out``."""
    from orchestrator.report import figures
    from orchestrator.report.build import json_ready
    from trainables.atomic import write_atomic

    steps = ladder(records, every)
    if not steps:
        raise UserError(f"{label}: no run says where it stopped, so no horizon can be read")
    cells = []
    for levels, members in cells_of(records, factors):
        runs = [r for r in members if r.get("status") == "finished"]
        rows = plateau_ladder(runs, steps)
        fd = [r["history"].get(r["fd_key"], []) for r in runs]
        seeds = sorted((r["seed"] for r in runs), key=_seed_order)
        cells.append({"levels": dict(zip(factors, levels)), "runs": len(runs), "seeds": seeds,
                      "plateau_step": plateau_step(rows),
                      "ladder": [{"horizon": h, "flat": flat(pl), **{k: pl[k] for k in (
                          "testable", "slope", "lo", "hi", "p", "power", "n_steps", "df")}} for h, pl in rows],
                      "fd_history": fd})
    md = render(label, every, cells)
    png = figures.curve_figure([(c["levels"], [r for r in records if r["levels"] == c["levels"]]) for c in cells],
                               "fd", "FD against step (pilot)", "FD", log=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "pilot.md", md + "\n")
    doc = {"label": label, "every": every, "margin": MARGIN, "cells": cells,
           "study_horizon": study_horizon([c["plateau_step"] for c in cells])}
    write_atomic(out / "pilot.json", json.dumps(json_ready(doc), indent=2, allow_nan=False))
    write_atomic(out / "fd_curves.png", png)
    return {"md": md, "cells": cells, "horizon": study_horizon([c["plateau_step"] for c in cells])}


def _seed_order(seed):
    return (0, int(seed), "") if str(seed).isdigit() else (1, 0, str(seed))


def render(label, every, cells):
    horizon = study_horizon([c["plateau_step"] for c in cells]) or "none (a cell has no plateau step)"
    lines = [f"# Pilot: the plateau at a ladder of horizons ({label})", "",
             f"Each cell's runs are read as they stood at every horizon H ({every} steps apart), and the slope of "
             "log FD on step over the last quarter of the first H steps is fitted by OLS, one intercept per run "
             "(slope per 1,000 steps, 90 % interval). *Flat*: the slope's 90 % interval lies inside "
             f"+-{MARGIN:g} per 1,000 steps (equivalence, two one-sided tests at 5 %, the report's test). A cell's "
             "plateau step is the first H from which it is flat at every later H. The study's horizon: the latest "
             f"cell's plateau step plus 25 %, rounded up to 1,000 steps: **{horizon}**.", ""]
    for c in cells:
        name = ", ".join(f"{k}={v}" for k, v in c["levels"].items()) or "all runs"
        ps = c["plateau_step"]
        lines += [f"## {name} ({c['runs']} run(s), seeds {', '.join(c['seeds'])})", "",
                  f"Plateau step: **{ps if ps is not None else 'none: not shown flat from any horizon on'}**",
                  "", "| horizon | evaluated steps in window | slope of log FD / 1,000 steps [90 %] | TOST p | power to show "
                  "flat | flat |", "| ---: | ---: | --- | ---: | ---: | --- |"]
        for row in c["ladder"]:
            if not row["testable"]:
                lines.append(f"| {row['horizon']} | {row['n_steps']} | not testable | | | no |")
                continue
            lines.append(f"| {row['horizon']} | {row['n_steps']} | {row['slope']:+.3f} [{row['lo']:+.3f}, "
                         f"{row['hi']:+.3f}] | {row['p']:.3g} | {row['power']:.0%} | {'yes' if row['flat'] else 'no'} |")
        lines.append("")
    return "\n".join(lines).rstrip()
