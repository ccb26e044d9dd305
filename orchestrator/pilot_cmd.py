"""``dcgan-lab pilot``: where does FD stop falling? The plateau test at a ladder of horizons, per cell
of a pilot sweep; the test and the files written are in ``orchestrator/report/pilot.py``."""
from pathlib import Path

from orchestrator.report.pilot import write_pilot
from trainables.errors import UserError


def add_subparser(subparsers):
    p = subparsers.add_parser("pilot", help="the plateau test at a ladder of horizons, per cell of a sweep")
    p.add_argument("--sweep", required=True, help="the parent run id of the pilot sweep")
    p.add_argument("--out", default="", help="output folder (default: ./reports/pilot-<sweep id>)")
    p.add_argument("--every", type=int, default=400, help="horizon ladder step, in training steps (default 400)")
    p.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.set_defaults(func=cmd_pilot)


def cmd_pilot(args):
    from orchestrator import tracking
    from orchestrator.report import data
    from orchestrator.report.build import default_out

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
