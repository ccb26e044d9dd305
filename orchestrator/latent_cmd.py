"""``dcgan-lab latent walk|sheet|arithmetic|turn|forget|neighbours`` and ``dcgan-lab represent``:
the paper's latent-space (section 6) and representation (5.1) experiments on any tracked run.

Each writes ``<experiment>.json`` (the numbers), PNG figures and ``.npy`` arrays to ``--out``
(default ``./latent/<run_id>/<experiment>``) and logs the same files to the run as artifacts
under ``latent/<experiment>/``. The math lives in ``trainables/latent/``.
"""
import argparse
import re
import sys
from pathlib import Path

from orchestrator.errors import UserError

RUN_ID = re.compile(r"^[0-9a-f]{8,64}$")     # MLflow run ids are hex; they also name folders
OUT_ROOT = Path("latent")
BEDROOMS = "synthetic-bedrooms"


def _count(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed: a whole number >= 1")
    return value


def _common(p):
    p.add_argument("--run", required=True, help="MLflow run id")
    p.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.add_argument("--out", default="", help="output folder (default: ./latent/<run_id>/<experiment>)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")


def add_subparser(subparsers):
    p = subparsers.add_parser("latent", help="the paper's latent-space experiments on a tracked generator")
    sub = p.add_subparsers(dest="experiment", required=True)

    s = sub.add_parser("walk", help="interpolations between random z, and how evenly the images change")
    s.add_argument("--points", type=_count, default=9, help="random z; a path between each consecutive pair")
    s.add_argument("--steps", type=_count, default=8, help="steps per path")

    s = sub.add_parser("sheet", help="a numbered contact sheet, with its z stored (z.npy)")
    s.add_argument("--n", type=_count, default=64, help="samples")

    s = sub.add_parser("arithmetic", help="Y = mean(z_A) - mean(z_B) + mean(z_C), against pixel space")
    s.add_argument("--recipe", choices=sorted(_recipes()), help="one of the paper's analogies (sets --a/--b/--c/--target)")
    for name in ("a", "b", "c"):
        s.add_argument(f"--{name}", help='sheet indices ("3,17,40") or an attribute query ("smiling & ~long_hair")')
    s.add_argument("--target", help="query the outputs should match (default: derived from the three queries)")
    s.add_argument("--exemplars", type=_count, default=3, help="exemplars averaged per concept")
    s.add_argument("--trials", type=_count, default=5, help="draws of exemplars (queries only)")
    s.add_argument("--budget", type=_count, default=4096, help="samples searched for exemplars")
    s.add_argument("--sheet", default="", help="z.npy of the sheet that indices refer to "
                                               "(default: the run's latest `latent sheet`)")

    s = sub.add_parser("turn", help="the turn vector from evaluator yaw, and the yaw along it")
    s.add_argument("--exemplars", type=_count, default=4, help="faces looking left, and looking right, averaged")
    s.add_argument("--rows", type=_count, default=8, help="random faces turned")
    s.add_argument("--steps", type=_count, default=9, help="images per row")
    s.add_argument("--pool", type=_count, default=512, help="samples the exemplars are chosen from")

    s = sub.add_parser("forget", help="drop G's window feature maps (a synthetic-bedrooms generator)")
    s.add_argument("--n", type=_count, default=150, help="samples (the paper's 150)")

    s = sub.add_parser("neighbours", help="nearest training images of generated samples (memorisation)")
    s.add_argument("--n", type=_count, default=1000, help="generated samples")
    s.add_argument("--train-n", type=_count, default=5000, help="training images searched")
    s.add_argument("--heldout-n", type=_count, default=1000, help="held-out real images (the reference)")

    for s in sub.choices.values():
        _common(s)
    p.set_defaults(func=cmd_latent)

    r = subparsers.add_parser("represent", help="D's features + a linear SVM (paper 5.1), against baselines")
    _common(r)
    r.add_argument("--dataset", default="", help="labelled data set (default: the run's)")
    r.add_argument("--labels", default="", help="comma-separated class labels (default: every one)")
    r.add_argument("--per-class", type=_count, default=100, help="labelled training examples per class and draw")
    r.add_argument("--draws", type=_count, default=5, help="random draws of the labelled examples")
    r.add_argument("--pool", type=_count, default=4000, help="training images the draws come from")
    r.add_argument("--test-n", type=_count, default=2000, help="test images")
    r.add_argument("--data-root", default="", help="where real data sets live (default: the run's data_root)")
    r.set_defaults(func=cmd_represent, experiment="represent")


def _recipes():
    from trainables.latent.arithmetic import RECIPES
    return RECIPES


def check_run_id(run_id):
    if not RUN_ID.match(run_id or ""):
        raise UserError(f"run={run_id!r} is not a valid MLflow run id: expected 8-64 lowercase hex digits")
    return run_id


def output_folder(args, name):
    return Path(args.out) if args.out else OUT_ROOT / args.run / name


# ---------------------------------------------------------------------------------------------
# latent
# ---------------------------------------------------------------------------------------------

def cmd_latent(args):
    from orchestrator import tracking
    from trainables.latent.generator import fixed_bn

    check_run_id(args.run)
    uri = tracking.tracking_uri(args.mlflow_uri)
    netG, cfg = tracking.load_generator(uri, args.run)
    check = CHECKS.get(args.experiment)
    if check:
        check(args, cfg)
    netG = fixed_bn(netG, cfg.nz, cfg.z_dist, seed=args.seed)
    report = EXPERIMENTS[args.experiment](args, netG, cfg, uri)
    # Each recipe keeps its own folder and artifacts.
    publish(report, uri, args, args.experiment + (f"-{args.recipe}" if getattr(args, "recipe", None) else ""))
    return 0


def _evaluator(cfg):
    from trainables.metrics.evaluators import get_evaluator
    return get_evaluator(cfg.dataset, cfg.image_size, seed=0, nc=cfg.nc, data_root=cfg.data_root)


def walk(args, netG, cfg, uri):
    from trainables.latent.walk import run_walk
    if args.points < 2:
        raise UserError(f"points={args.points} is not allowed: at least 2 (a path needs two ends)")
    return run_walk(netG, _evaluator(cfg), cfg.nz, cfg.z_dist, args.points, args.steps, args.seed)


def sheet(args, netG, cfg, uri):
    from trainables.latent.sheet import run_sheet
    from trainables.metrics.evaluators import EVALUATORS
    evaluator = _evaluator(cfg) if cfg.dataset in EVALUATORS else None
    return run_sheet(netG, cfg.nz, cfg.z_dist, args.n, args.seed, evaluator)


def check_arithmetic(args, cfg):
    """Recipe or --a/--b/--c; indices or queries, never mixed; attribute names known."""
    from trainables.latent.queries import attributes, parse_query
    from trainables.metrics.evaluators import evaluator_spec

    if args.recipe:
        recipe = _recipes()[args.recipe]
        args.a, args.b, args.c = recipe["a"], recipe["b"], recipe["c"]
        args.target = args.target or recipe["target"]
    missing = [f"--{n}" for n in "abc" if not getattr(args, n)]
    if missing:
        raise UserError(f"arithmetic needs --recipe ({', '.join(sorted(_recipes()))}) or all of --a, --b, --c; "
                        f"missing {', '.join(missing)}")
    kinds = {_is_indices(getattr(args, n)) for n in "abc"}
    if len(kinds) > 1:
        raise UserError("--a, --b and --c must all be sheet indices or all be attribute queries, not a mix")
    args.by_index = kinds.pop()
    needs_queries = not args.by_index or args.target
    allowed = attributes(evaluator_spec(cfg.dataset)) if needs_queries else []
    if not args.by_index:
        args.queries = [parse_query(getattr(args, n), allowed, f"--{n}") for n in "abc"]
    args.target_query = parse_query(args.target, allowed, "--target") if args.target else None


def _is_indices(text):
    return bool(re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", text))


def arithmetic(args, netG, cfg, uri):
    from trainables.latent.arithmetic import derive_target, run_arithmetic
    from trainables.latent.queries import find_exemplars

    evaluator = _evaluator(cfg)
    target = args.target_query
    if args.by_index:
        groups = [_sheet_rows(args, uri, getattr(args, n), f"--{n}") for n in "abc"]
        if len({len(g) for g in groups}) > 1:
            raise UserError(f"--a, --b and --c name {', '.join(str(len(g)) for g in groups)} indices: "
                            f"give each the same number")
        k = len(groups[0])
    else:
        target = target or derive_target(*args.queries)
        k = args.exemplars
        groups = find_exemplars(netG, evaluator, args.queries, k * args.trials, cfg.nz, cfg.z_dist,
                                budget=args.budget, seed=args.seed, flags=["--a", "--b", "--c"],
                                need=f" (--exemplars {k} x --trials {args.trials})")
    report = run_arithmetic(netG, evaluator, groups, target, k, cfg.nz, cfg.z_dist, seed=args.seed)
    report.numbers.update(recipe=args.recipe, a=args.a, b=args.b, c=args.c)
    return report


def _sheet_rows(args, uri, text, flag):
    import numpy as np
    import torch

    z = torch.from_numpy(np.load(_sheet_path(args, uri), allow_pickle=False)).float()
    rows = [int(i) for i in text.split(",")]
    bad = [i for i in rows if i >= len(z)]
    if bad:
        raise UserError(f"{flag}={text!r}: index {bad[0]} is outside the sheet's {len(z)} samples (0..{len(z) - 1})")
    return z[rows]


def _sheet_path(args, uri):
    """--sheet, else the sheet folder's z.npy, else the run's logged latent/sheet/z.npy."""
    from orchestrator import tracking

    if args.sheet:
        if not Path(args.sheet).is_file():
            raise UserError(f"sheet={args.sheet!r} is not a file: give the z.npy that `latent sheet` wrote")
        return args.sheet
    local = OUT_ROOT / args.run / "sheet" / "z.npy"
    if local.is_file():
        return str(local)
    try:
        return tracking.client(uri).download_artifacts(args.run, "latent/sheet/z.npy")
    except Exception:  # noqa: BLE001 - any failure: the run has no sheet
        raise UserError(f"run={args.run!r} has no contact sheet: run `dcgan-lab latent sheet --run {args.run}` "
                        f"first, or pass --sheet PATH") from None


def check_turn(args, cfg):
    from trainables.metrics.evaluators import evaluator_spec

    if not any(key == "yaw" for key, _, _ in evaluator_spec(cfg.dataset).heads):
        raise UserError(f"run={args.run!r} was trained on dataset={cfg.dataset!r}, whose evaluator has no yaw: "
                        f"turn needs a synthetic-faces generator")
    if 2 * args.exemplars > args.pool:
        raise UserError(f"exemplars={args.exemplars} is not allowed with pool={args.pool}: at most pool / 2")


def turn(args, netG, cfg, uri):
    from trainables.latent.turn import run_turn
    return run_turn(netG, _evaluator(cfg), cfg.nz, cfg.z_dist, args.exemplars, args.rows, args.steps, args.pool,
                    args.seed)


def check_forget(args, cfg):
    if cfg.dataset != BEDROOMS:
        raise UserError(f"run={args.run!r} was trained on dataset={cfg.dataset!r}: forget needs a generator "
                        f"trained on {BEDROOMS} (its evaluator finds the windows)")


def forget(args, netG, cfg, uri):
    from trainables.latent.forget import run_forget
    return run_forget(netG, _evaluator(cfg), cfg.nz, cfg.z_dist, args.n, args.seed)


def neighbours(args, netG, cfg, uri):
    from trainables.latent.data import load_images
    from trainables.latent.neighbours import run_neighbours

    evaluator = _evaluator(cfg)
    train, _ = load_images(cfg.dataset, cfg.image_size, cfg.nc, "train", args.train_n, cfg.data_root,
                           cfg.data_seed, cfg.dataset_size)
    heldout, _ = load_images(cfg.dataset, cfg.image_size, cfg.nc, "test", args.heldout_n, cfg.data_root, cfg.data_seed)
    return run_neighbours(netG, evaluator, cfg.nz, cfg.z_dist, train, heldout, args.n, args.seed)


EXPERIMENTS = {"walk": walk, "sheet": sheet, "arithmetic": arithmetic, "turn": turn, "forget": forget,
               "neighbours": neighbours}
CHECKS = {"arithmetic": check_arithmetic, "turn": check_turn, "forget": check_forget}


# ---------------------------------------------------------------------------------------------
# represent
# ---------------------------------------------------------------------------------------------

def cmd_represent(args):
    import torch

    from orchestrator import tracking
    from trainables.data import get_entry
    from trainables.latent.data import load_images
    from trainables.latent.represent import discrete_labels, run_represent
    from trainables.models import build_discriminator, weights_init

    check_run_id(args.run)
    uri = tracking.tracking_uri(args.mlflow_uri)
    _, cfg = tracking.load_generator(uri, args.run)
    dataset = args.dataset or cfg.dataset
    keys = get_entry(dataset).label_keys
    if not keys:
        raise UserError(f"dataset={dataset!r} has no labels: represent needs a labelled data set")
    labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    unknown = [key for key in labels if key not in keys]
    if unknown:
        raise UserError(f"labels={unknown[0]!r} is not a label of dataset={dataset!r}; its labels: {', '.join(keys)}")
    netD = load_discriminator(uri, args.run, cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        random_D = build_discriminator(cfg)
        random_D.apply(weights_init)

    # Load the data (in D's image size and channels).
    root = args.data_root or cfg.data_root
    train = load_images(dataset, cfg.image_size, cfg.nc, "train", args.pool, root)
    test = load_images(dataset, cfg.image_size, cfg.nc, "test", args.test_n, root)
    labels = labels or discrete_labels(train[1])
    report = run_represent(netD, random_D, {"train": train, "test": test}, labels, args.per_class, args.draws,
                           args.seed)
    report.numbers.update(dataset=dataset, run=args.run)
    publish(report, uri, args, f"represent-{dataset}")
    return 0


def load_discriminator(uri, run_id, cfg):
    from orchestrator import tracking
    from trainables.checkpoints import load_safe
    from trainables.models import build_discriminator

    try:
        path = tracking.client(uri).download_artifacts(run_id, f"{tracking.MODEL_DIR}/discriminator.pt")
    except Exception:  # noqa: BLE001 - any failure: the run has no D
        raise UserError(f"run={run_id!r} has no discriminator: {tracking.MODEL_DIR}/discriminator.pt is missing") from None
    netD = build_discriminator(cfg)
    netD.load_state_dict(load_safe(path))
    return netD.eval()


# ---------------------------------------------------------------------------------------------

def publish(report, uri, args, name):
    """Write the report to the output folder, log the folder to the run, print the numbers' path."""
    from orchestrator import tracking

    out = output_folder(args, name)
    paths = report.write(out, name)
    tracking.client(uri).log_artifacts(args.run, str(out), f"latent/{name}")
    print(f"wrote {len(paths)} files to {out}/ (logged to run {args.run} under latent/{name}/): "
          f"{', '.join(p.name for p in paths)}", file=sys.stderr)
    print(paths[0])
