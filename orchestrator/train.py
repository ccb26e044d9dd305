"""``dcgan-lab train`` and ``dcgan-lab sample``: one tracked DCGAN run on Ray Train, and reloading it."""
import sys
from pathlib import Path

from orchestrator.config import preset_names, resolve_config
from orchestrator.ray_run import prepare_ray_run, run_tags
from trainables import run_inputs
from trainables.config import run_params
from trainables.errors import UserError
from trainables.trial import build_trainer, fit_and_close


def add_subparser(subparsers):
    p = subparsers.add_parser("train", help="train one DCGAN on Ray Train, tracked in MLflow")
    p.add_argument("--preset", help=f"one of: {', '.join(preset_names())}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and parameter counts, then exit")
    p.set_defaults(func=cmd_train)

    s = subparsers.add_parser("sample", help="reload a tracked generator and write a sample grid")
    s.add_argument("--run", required=True, help="MLflow run id")
    s.add_argument("--n-samples", "--n", dest="n", type=int, default=64,
                   help="images in the grid (the config's n_samples; --n kept)")
    s.add_argument("--noise-seed", "--seed", dest="seed", type=int, default=0,
                   help="seed of the grid's noise (not the run's training seed; --seed kept)")
    s.add_argument("--out", required=True, help="output PNG")
    s.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    s.set_defaults(func=cmd_sample)


def cmd_train(args):
    from orchestrator.config import parse_overrides

    cfg = resolve_config(args.preset, parse_overrides(args.overrides))
    if args.dry_run:
        print_dry_run(cfg)
        return 0
    run_id, status = run_training(cfg, run_name=args.preset or "train")
    print(f"run {run_id}: {status}")
    print("last sample grid in the MLflow run's artifacts (images/); open the UI with: dcgan-lab ui")
    return 0 if status == "finished" else 1


def print_dry_run(cfg):
    import yaml

    from trainables.models import build_models, count_params

    netG, netD = build_models(cfg)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    print(f"# parameters: G = {count_params(netG):,}  D = {count_params(netD):,}")


def run_training(cfg, run_name="train", parent_run_id=None, tags=None):
    """Check the inputs and start Ray if needed (``prepare_ray_run``), create the MLflow run, train,
    and close the run with its status."""
    from trainables import store

    run = prepare_ray_run(cfg)
    cfg, uri = run.cfg, run.uri
    run_id = store.start_run(uri, cfg.experiment, run_name, run_params(cfg),
                             {**run_tags(), **(tags or {})}, parent_run_id)
    run_inputs.log_dataset(uri, run_id, cfg)
    trainer = build_trainer(cfg, run_id, uri, run.storage, name=f"train-{run_id}")
    return run_id, fit_and_close(trainer.fit, uri, run_id, cfg)


def cmd_sample(args):
    import torch

    from orchestrator import tracking
    from trainables.loop import to_grid_image
    from trainables.models import sample_z
    from trainables.step import generate

    if args.n < 1:
        raise UserError(f"n={args.n} is not allowed: >= 1")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"out={args.out!r} is not allowed: a .png file")
    uri = tracking.tracking_uri(args.mlflow_uri)
    netG, cfg = tracking.load_generator(uri, args.run)
    z = sample_z(args.n, cfg.nz, cfg.z_dist, generator=torch.Generator().manual_seed(args.seed))
    out.parent.mkdir(parents=True, exist_ok=True)
    to_grid_image(generate(netG, z)).save(out)
    print(f"wrote {out} ({args.n} samples from run {args.run})", file=sys.stderr)
    return 0
