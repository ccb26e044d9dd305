"""``dcgan-lab report``: ablation tables and verdicts on the paper's claims, from tracked runs or report
folders written before; the report itself is built in ``orchestrator/report/`` (``build.build_report``)."""
import math
from pathlib import Path

from orchestrator import tracking
from orchestrator.report.build import REPORT_FILES, build_report, default_out
from trainables.errors import UserError


def add_subparser(subparsers):
    p = subparsers.add_parser("report", help="ablation tables and claim verdicts from MLflow runs")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="every run of this MLflow experiment (sweep parents excluded)")
    which.add_argument("--sweep", help="the child runs of this sweep's parent run id")
    which.add_argument("--from", dest="folders", nargs="+", metavar="DIR",
                       help="the runs of report folders written before (runs.csv, histories.csv, grids/), pooled: "
                            "one report over blocks of a study tracked in different MLflow stores")
    p.add_argument("--out", default="", help="output folder (default: ./reports/<sweep id or experiment>)")
    p.add_argument("--factors", default="", help="comma-separated params to tabulate (default: those that vary)")
    p.add_argument("--claims", default="paper",
                   help="claims file: a name in search_spaces/claims/ or a path to a YAML file (default: paper)")
    p.add_argument("--pool", action="store_true",
                   help="report runs measured at different scales (data set, image size, steps, eval_n, FD "
                        "features) together, each scale analysed separately")
    p.add_argument("--fd-threshold", type=float, default=None,
                   help="FD for the steps-to-threshold column (default: the median final FD of the runs)")
    p.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.set_defaults(func=cmd_report)


def cmd_report(args):
    factors = [f.strip() for f in args.factors.split(",") if f.strip()] or None
    if args.fd_threshold is not None and not (math.isfinite(args.fd_threshold) and args.fd_threshold > 0):
        raise UserError(f"fd-threshold={args.fd_threshold!r} must be a positive number")
    uri = None
    if not args.folders:
        uri = tracking.tracking_uri(args.mlflow_uri)
        if not uri.startswith("sqlite:///"):
            tracking.check_reachable(uri)
    out = Path(args.out) if args.out else default_out(args.sweep or args.experiment or "from-folders")
    result = build_report(uri, out, sweep=args.sweep, experiment=args.experiment, folders=args.folders, factors=factors,
                          fd_threshold=args.fd_threshold, claims=args.claims, pool=args.pool)
    print(result["summary"])
    print(f"\nreport written to {out}/ ({', '.join(REPORT_FILES)})")
    return 0
