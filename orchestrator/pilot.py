"""``dcgan-lab pilot``: where does FD stop falling? The report's plateau test at a ladder of horizons.

For each cell of a sweep (the ``pilot`` preset: the paper's cell and lr 1e-3 run long), every run is
read as it stood at each horizon H (``report_horizons.at_step``) and the report's plateau test
(``report_model.plateau``: OLS of log FD on step over the last quarter of the first H steps) is run
on those records. The cell's *plateau step* is the first horizon whose test passes with at least 80 % of the
tests from it on passing (``plateau_step``); the study's horizon is the latest cell's, plus 25 %,
rounded up to a thousand steps (``study_horizon``). It
is what the ``stability`` preset's ``max_steps`` is chosen from. The same test decides the report's
"contradicted" against "not reproduced at this horizon", so the pilot and the study agree on what a
plateau is. Writes ``pilot.md``, ``pilot.json`` and ``fd_curves.png`` to ``--out``.
"""
import json
import math
from pathlib import Path

from trainables.errors import UserError

SHARE = 0.8   # of the ladder's tests from the plateau step on that must say "reached"


def add_subparser(subparsers):
    p = subparsers.add_parser("pilot", help="the plateau test at a ladder of horizons, per cell of a sweep")
    p.add_argument("--sweep", required=True, help="the parent run id of the pilot sweep")
    p.add_argument("--out", default="", help="output folder (default: ./reports/pilot-<sweep id>)")
    p.add_argument("--every", type=int, default=400, help="horizon ladder step, in training steps (default 400)")
    p.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.set_defaults(func=cmd_pilot)


def cmd_pilot(args):
    from orchestrator import report_data as data
    from orchestrator import tracking
    from orchestrator.report import default_out

    if args.every < 1:
        raise UserError(f"every={args.every} is not allowed: an integer >= 1 (training steps)")
    uri = tracking.tracking_uri(args.mlflow_uri)
    if not uri.startswith("sqlite:///"):
        tracking.check_reachable(uri)
    runs, _, label = data.find_runs(uri, sweep=args.sweep)
    factors = data.choose_factors(runs, None, ())
    recs, _ = data.records(uri, runs, factors)
    out = Path(args.out) if args.out else default_out(f"pilot-{args.sweep}")
    result = write_pilot(recs, factors, label, args.every, out)
    print(result["md"])
    print(f"\npilot written to {out}/ (pilot.md, pilot.json, fd_curves.png)")
    return 0


def ladder(records, every):
    """Horizons every ``every`` steps up to the records' horizon (the horizon itself included)."""
    from orchestrator.report_horizons import horizon

    full = horizon(records)
    if not math.isfinite(full):
        return []
    steps = list(range(every, int(full) + 1, every))
    return steps if steps and steps[-1] == int(full) else steps + [int(full)]


def plateau_ladder(records, steps):
    """[(horizon, plateau result)] for one cell's records, each read as it stood at the horizon."""
    from orchestrator.report_horizons import at_step
    from orchestrator.report_model import plateau

    return [(h, plateau([at_step(r, h, math.nan) for r in records])) for h in steps]


def plateau_step(rows, share=SHARE):
    """The first horizon H whose test says "reached", with at least ``share`` of the tests from H to
    the end saying so too; None when there is none (the runs still move, or the test cannot be made).
    On flat FD each test says "still moving" 5 % of the time, so over a long ladder some will: a
    chance rejection does not undo a plateau, a run of them does."""
    flags = [bool(pl["reached"]) for _, pl in rows]
    for i, (h, _) in enumerate(rows):
        if flags[i] and sum(flags[i:]) >= share * len(flags[i:]):
            return h
    return None


def study_horizon(steps):
    """The study's max_steps from the cells' plateau steps: the latest, with a 25 % margin, rounded
    up to a thousand steps (None if a cell has none). The margin buys room for a seed slower than the
    pilot's; the report still tests the plateau on the study's own runs before it can say
    "contradicted", so a horizon chosen short costs verdicts, never a wrong one."""
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
    from orchestrator import report_figures as figures
    from trainables.atomic import write_atomic

    steps = ladder(records, every)
    if not steps:
        raise UserError(f"{label}: no run says where it stopped, so no horizon can be read")
    cells = []
    for levels, members in cells_of(records, factors):
        runs = [r for r in members if r.get("status") == "finished"]
        rows = plateau_ladder(runs, steps)
        fd = [r["history"].get(r["fd_key"], []) for r in runs]
        cells.append({"levels": dict(zip(factors, levels)), "runs": len(runs), "seeds": sorted(r["seed"] for r in runs),
                      "plateau_step": plateau_step(rows),
                      "ladder": [{"horizon": h, **{k: pl[k] for k in ("testable", "reached", "slope", "lo", "hi", "p",
                                                                      "n_steps", "df")}} for h, pl in rows],
                      "fd_history": fd})
    md = render(label, every, cells)
    png = figures.curve_figure([(c["levels"], [r for r in records if r["levels"] == c["levels"]]) for c in cells],
                               "fd", "FD against step (pilot)", "FD", log=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "pilot.md", md + "\n")
    write_atomic(out / "pilot.json", json.dumps({"label": label, "every": every, "cells": cells,
                                                 "study_horizon": study_horizon([c["plateau_step"] for c in cells])}, indent=2,
                                                default=_clean))
    write_atomic(out / "fd_curves.png", png)
    return {"md": md, "cells": cells, "horizon": study_horizon([c["plateau_step"] for c in cells])}


def _clean(x):
    return None if isinstance(x, float) and not math.isfinite(x) else str(x)


def render(label, every, cells):
    horizon = study_horizon([c["plateau_step"] for c in cells]) or "none (a cell has no plateau step)"
    lines = [f"# Pilot: the plateau test at a ladder of horizons ({label})", "",
             f"Each cell's runs are read as they stood at every horizon H ({every} steps apart); the test is "
             "the report's: OLS of log FD on step over the last quarter of the first H steps, one intercept per "
             "run, two-sided t test of slope = 0 at 5 % (slope per 1,000 steps, 95 % interval). A cell's "
             "plateau step is the first H whose test passes with at least "
             f"{SHARE:.0%} of the tests from it to the last passing (on flat FD each test fails 5 % of the time). "
             "The study's horizon: the latest cell's plateau step plus 25 %, rounded up to 1,000 steps "
             f"(the report tests the plateau again on the study's own runs): **{horizon}**.", ""]
    for c in cells:
        name = ", ".join(f"{k}={v}" for k, v in c["levels"].items()) or "all runs"
        ps = c["plateau_step"]
        lines += [f"## {name} ({c['runs']} run(s), seeds {', '.join(c['seeds'])})", "",
                  f"Plateau step: **{ps if ps is not None else 'none: still moving (or not testable) at the last horizon'}**",
                  "", "| horizon | evaluated steps in window | slope of log FD / 1,000 steps [95 %] | p | plateau |",
                  "| ---: | ---: | --- | ---: | --- |"]
        for row in c["ladder"]:
            if not row["testable"]:
                lines.append(f"| {row['horizon']} | {row['n_steps']} | | | not testable |")
                continue
            state = "reached" if row["reached"] else "still moving"
            lines.append(f"| {row['horizon']} | {row['n_steps']} | {row['slope']:+.3f} [{row['lo']:+.3f}, "
                         f"{row['hi']:+.3f}] | {row['p']:.3g} | {state} |")
        lines.append("")
    return "\n".join(lines).rstrip()
