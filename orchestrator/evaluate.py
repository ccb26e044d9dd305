"""``dcgan-lab evaluate --run ID``: quality metrics of any tracked generator, logged back to its run."""
import json
import sys

from trainables.errors import UserError


def add_subparser(subparsers):
    p = subparsers.add_parser("evaluate", help="FD/KID/precision/recall of a tracked generator")
    p.add_argument("--run", required=True, help="MLflow run id")
    p.add_argument("--eval-n", "--n", dest="n", type=int, default=10_000,
                   help="generated (and real) images (the config's eval_n; --n: the same)")
    p.add_argument("--feature-extractor", default=None, help="auto, domain or inception (default: the run's)")
    p.add_argument("--metrics", default="", help="comma-separated metric names (default: the evaluator's)")
    p.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args):
    import dataclasses

    from orchestrator import tracking
    from trainables import store
    from trainables.config import coerce
    from trainables.metrics.evaluate import check_sample_count, evaluate_generator
    from trainables.metrics.registry import get_metric
    from trainables.run_eval import EVAL_BATCH, resolve_evaluator

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] or None
    for name in metrics or []:
        get_metric(name)  # unknown names: one line listing the valid ones
    uri = tracking.tracking_uri(args.mlflow_uri)
    netG, cfg = tracking.load_generator(uri, args.run)
    changes = {"eval_every": 1}  # evaluation is what was asked for, whatever the run did
    if args.feature_extractor:
        changes["feature_extractor"] = coerce("feature_extractor", args.feature_extractor)
    cfg = dataclasses.replace(cfg, **changes)
    evaluator, note = resolve_evaluator(cfg)
    if evaluator is None:
        raise UserError(f"run={args.run!r}: {note}")
    check_sample_count("eval-n", args.n, evaluator)
    if note:
        print(f"[dcgan-lab] {note}", file=sys.stderr)
    results = evaluate_generator(netG, nz=cfg.nz, z_dist=cfg.z_dist, dataset=cfg.dataset, image_size=cfg.image_size,
                                 n=args.n, batch_size=EVAL_BATCH, evaluator=evaluator, metrics=metrics,
                                 seed=cfg.seed, data_root=cfg.data_root)
    suffix = f"_n{args.n}"
    c = store.client(uri)
    for key, value in results.items():
        c.log_metric(args.run, key + suffix, float(value))
    print(json.dumps({"run": args.run, "n": args.n, **results}, indent=2))
    return 0
