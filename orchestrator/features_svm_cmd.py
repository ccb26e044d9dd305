"""``dcgan-lab features-svm``: the paper's section 5.2 on a labelled data set (Fashion-MNIST, MNIST).

A tracked run's D as a feature extractor: its features through a linear L2-SVM trained on a few
labels per class, against a supervised CNN of D's architecture on the same labels and a randomly
initialised D's features, over random label draws (``orchestrator/features_svm``).
"""
import time
from dataclasses import asdict
from pathlib import Path

from trainables.errors import UserError, bad_value

DATASETS = ("fashion-mnist", "mnist")   # labelled data sets with a train and a test split of 10 classes


def add_subparser(subparsers):
    p = subparsers.add_parser("features-svm", help="the paper's section 5.2: D's features + a linear L2-SVM with "
                                                   "few labels, against a supervised CNN and a random D")
    p.add_argument("--run", required=True, help="MLflow run id of a run trained on fashion-mnist or mnist")
    p.add_argument("--labels-per-class", type=int, default=100, help="labelled training images per class (100)")
    p.add_argument("--val-per-class", type=int, default=100,
                   help="validation images per class, from the other training images (100)")
    p.add_argument("--draws", type=int, default=10, help="random label draws, the unit of the intervals (10)")
    p.add_argument("--cnn-epochs", type=int, default=50, help="the supervised CNN's most epochs (50)")
    p.add_argument("--seed", type=int, default=0, help="draw d uses seed + d (0)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1)")
    p.add_argument("--data-root", default="", help="where the data set lives (default: the run's data_root)")
    p.add_argument("--out", default="", help="output folder (default: ./reports/features-svm-<run id>)")
    p.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.set_defaults(func=cmd_features_svm)


def cmd_features_svm(args):
    import dataclasses

    import torch

    from orchestrator import tracking
    from orchestrator.features_svm import study
    from orchestrator.report.build import default_out

    # Check every input before loading anything.
    design = study.Design(args.labels_per_class, args.val_per_class, args.draws, args.cnn_epochs, args.seed)
    if args.draws < 2:
        raise bad_value("draws", args.draws, "at least 2 (the intervals are over draws)")
    for key in ("labels_per_class", "val_per_class", "cnn_epochs", "threads"):
        if getattr(args, key) < 1:
            raise bad_value(key.replace("_", "-"), getattr(args, key), "a positive integer")
    if args.seed < 0:
        raise bad_value("seed", args.seed, "an integer >= 0")
    uri = tracking.tracking_uri(args.mlflow_uri)
    if not uri.startswith("sqlite:///"):
        tracking.check_reachable(uri)
    run = tracking.get_run(uri, args.run)
    netD, cfg = tracking.load_discriminator(uri, args.run)
    if cfg.dataset not in DATASETS:
        raise UserError(f"run={args.run!r} was trained on dataset={cfg.dataset!r}: features-svm needs a labelled "
                        f"data set with a test split, one of {', '.join(DATASETS)}")
    if args.data_root:
        cfg = dataclasses.replace(cfg, data_root=args.data_root)

    # Label draws, each through the three classifiers.
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    records, sizes = study.run_draws(netD, cfg, design, log=lambda line: print(line, flush=True))
    about = {"run": args.run, "status": run.info.status, "dataset": cfg.dataset, "image_size": cfg.image_size,
             "ndf": cfg.ndf, "bn_placement": cfg.bn_placement, "lr": cfg.lr, "beta1": cfg.beta1, "seed": cfg.seed,
             "max_steps": cfg.max_steps, **sizes, "design": asdict(design),
             "seconds": round(time.monotonic() - started, 1)}
    out = Path(args.out) if args.out else default_out(f"features-svm-{args.run}")
    print(study.write(out, records, about))
    print(f"written to {out}/ (features_svm.md, features_svm.json, draws.csv)")
    return 0
