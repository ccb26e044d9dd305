"""``dcgan-lab replay``: a finished study's runs fed to the sequential rule (``orchestrator.report.sequential``)
in their block order: the look at which each claim would have stopped, its verdict and repeated
confidence interval, and the trials it would have cost against the fixed design's."""
import csv
import io
import json
from pathlib import Path

from orchestrator.report import sequential
from trainables.atomic import write_atomic
from trainables.errors import UserError


def add_subparser(subparsers):
    p = subparsers.add_parser("replay", help="replay a finished study's runs through the sequential rule (planned looks)")
    p.add_argument("--from", dest="folders", nargs="+", required=True, metavar="DIR",
                   help="report folders written before (runs.csv), in block order, e.g. docs/results/stability/block-*")
    p.add_argument("--looks", default=",".join(map(str, sequential.DEFAULT_LOOKS)),
                   help="seeds per arm at each look, increasing (default: %(default)s)")
    p.add_argument("--spending", default="obf", help=f"Lan-DeMets spending function: {' | '.join(sequential.SPENDING)}")
    p.add_argument("--claims", default="paper", help="claims file (name or path)")
    p.add_argument("--out", default="", help="folder for replay.md, replay.csv, replay.json (default: print only)")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args):
    looks = sequential.parse_looks(args.looks)
    design = sequential.design_from(looks, args.spending)
    for f in args.folders:
        if not (Path(f) / "runs.csv").is_file():
            raise UserError(f"from={f!r} is not allowed: a report folder holding runs.csv")
    history, outcomes, order, fixed = sequential.replay_folders(args.folders, design, args.claims)
    trials = sequential.trials_spent({c: stop for c, (stop, _, _) in outcomes.items()}, design)
    md = sequential.history_markdown(history, outcomes, design, trials, fixed)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        summary = {"looks": list(design.looks), "spending": design.spending, "alpha": design.alpha, "seed_order": order,
                   "trials": trials, "fixed_trials": fixed,
                   "claims": {c: {"stop_look": None if stop is None else stop + 1, "verdict": v, **row}
                              for c, (stop, v, row) in outcomes.items()}}
        write_atomic(out / "replay.md", f"# Sequential replay of {', '.join(args.folders)}\n\n{md}\n")
        write_atomic(out / "replay.csv", buf.getvalue())
        write_atomic(out / "replay.json", json.dumps(summary, indent=2, default=float))
    return 0


