"""What each ``dcgan-lab latent`` command runs (declared in ``orchestrator/latent_cmd.py``): a check
before any generator runs, then the experiment per generator.

Each runs on one generator or several (``--generators ID,ID,...`` or ``--sweep PARENT_ID``) and
writes ``<experiment>.json`` (the numbers), PNG figures and ``.npy`` arrays to ``--out`` (default
``./latent/<run_id>/<experiment>``), logging the same files to each run as artifacts under
``latent/<experiment>/`` (``orchestrator/latent/runs.py``). With several generators each gets a
sub-folder named by its run id and ``<experiment>.json`` at the top summarises the headline numbers
over them, the generator being the unit (logged to the sweep's parent run with ``--sweep``).
Everything is computed before anything is written. The math lives in ``trainables/latent/``.
"""
import functools
import re
from pathlib import Path

from trainables.errors import UserError

BEDROOMS = "synthetic-bedrooms"


def recipes():
    from trainables.latent.recipes import RECIPES
    return RECIPES


# ---------------------------------------------------------------------------------------------
# latent
# ---------------------------------------------------------------------------------------------

def cmd_latent(args):
    from orchestrator import tracking
    from orchestrator.latent.runs import load_generators, publish
    from trainables.latent.generator import fixed_bn

    uri = tracking.tracking_uri(args.mlflow_uri)
    generators = load_generators(args, uri)
    args.several = len(generators) > 1
    command = args.latent_command
    for run_id, _, cfg in generators:
        if command.check:
            command.check(args, cfg, run_id)
    reports = {}
    try:
        for run_id, netG, cfg in generators:
            netG = fixed_bn(netG, cfg.nz, cfg.z_dist, seed=args.seed)
            reports[run_id] = command.run(args, netG, cfg, uri, run_id)
    except UserError as err:
        if args.several:
            raise UserError(f"run={run_id!r}: {err}") from None
        raise
    finally:
        _real_references.cache_clear()     # shared by this command's generators only
    # Each recipe keeps its own folder and artifacts.
    name = args.experiment + (f"-{args.recipe}" if getattr(args, "recipe", None) else "")
    publish(reports, {run_id: cfg for run_id, _, cfg in generators}, uri, args, name, args.experiment)
    return 0


def _evaluator(cfg):
    from trainables.metrics.evaluators import get_evaluator
    return get_evaluator(cfg.dataset, cfg.image_size, nc=cfg.nc)


def walk(args, netG, cfg, uri, run_id):
    from trainables.latent.walk import run_walk
    if args.points < 2:
        raise UserError(f"points={args.points} is not allowed: at least 2 (a path needs two ends)")
    return run_walk(netG, _evaluator(cfg), nz=cfg.nz, z_dist=cfg.z_dist, points=args.points, steps=args.steps,
                    seed=args.seed)


def sheet(args, netG, cfg, uri, run_id):
    from trainables.latent.sheet import run_sheet
    from trainables.metrics.evaluators import EVALUATORS
    evaluator = _evaluator(cfg) if cfg.dataset in EVALUATORS else None
    return run_sheet(netG, nz=cfg.nz, z_dist=cfg.z_dist, n=args.n, seed=args.seed, evaluator=evaluator)


def check_arithmetic(args, cfg, run_id):
    """Recipe or --a/--b/--c; indices or queries, never mixed; attribute names known."""
    from trainables.latent.queries import attributes, parse_query
    from trainables.metrics.evaluators import evaluator_spec

    if args.recipe:
        recipe = recipes()[args.recipe]
        args.a, args.b, args.c = recipe["a"], recipe["b"], recipe["c"]
        args.target = args.target or recipe["target"]
    missing = [f"--{n}" for n in "abc" if not getattr(args, n)]
    if missing:
        raise UserError(f"arithmetic needs --recipe ({', '.join(sorted(recipes()))}) or all of --a, --b, --c; "
                        f"missing {', '.join(missing)}")
    kinds = {_is_indices(getattr(args, n)) for n in "abc"}
    if len(kinds) > 1:
        raise UserError("--a, --b and --c must all be sheet indices or all be attribute queries, not a mix")
    args.by_index = kinds.pop()
    if args.by_index and args.sheet and args.several:
        raise UserError(f"sheet={args.sheet!r} is one generator's sheet: with several generators, indices refer to "
                        f"each run's own latest `latent sheet` (leave --sheet out)")
    needs_queries = not args.by_index or args.target
    allowed = attributes(evaluator_spec(cfg.dataset)) if needs_queries else []
    if not args.by_index:
        args.queries = [parse_query(getattr(args, n), allowed, f"--{n}") for n in "abc"]
    args.target_query = parse_query(args.target, allowed, "--target") if args.target else None


def _is_indices(text):
    return bool(re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", text))


def arithmetic(args, netG, cfg, uri, run_id):
    from trainables.latent.arithmetic import derive_target, run_arithmetic
    from trainables.latent.queries import find_exemplars

    evaluator = _evaluator(cfg)
    target = args.target_query
    if args.by_index:
        groups = [_sheet_rows(args, uri, run_id, getattr(args, n), f"--{n}") for n in "abc"]
        if len({len(g) for g in groups}) > 1:
            raise UserError(f"--a, --b and --c name {', '.join(str(len(g)) for g in groups)} indices: "
                            f"give each the same number")
        k = len(groups[0])
    else:
        target = target or derive_target(*args.queries)
        k = args.exemplars
        groups = find_exemplars(netG, evaluator, args.queries, k * args.trials, nz=cfg.nz, z_dist=cfg.z_dist,
                                budget=args.budget, seed=args.seed, flags=["--a", "--b", "--c"],
                                need=f" (--exemplars {k} x --trials {args.trials})")
    report = run_arithmetic(netG, evaluator, groups, target, k=k, nz=cfg.nz, z_dist=cfg.z_dist, seed=args.seed)
    report.numbers.update(recipe=args.recipe, a=args.a, b=args.b, c=args.c)
    return report


def _sheet_rows(args, uri, run_id, text, flag):
    import numpy as np
    import torch

    z = torch.from_numpy(np.load(_sheet_path(args, uri, run_id), allow_pickle=False)).float()
    rows = [int(i) for i in text.split(",")]
    bad = [i for i in rows if i >= len(z)]
    if bad:
        raise UserError(f"{flag}={text!r}: index {bad[0]} is outside the sheet's {len(z)} samples (0..{len(z) - 1})")
    return z[rows]


def _sheet_path(args, uri, run_id):
    """--sheet, else the sheet folder's z.npy, else the run's logged latent/sheet/z.npy."""
    from orchestrator.latent.runs import OUT_ROOT
    from trainables import store

    if args.sheet:
        if not Path(args.sheet).is_file():
            raise UserError(f"sheet={args.sheet!r} is not a file: give the z.npy that `latent sheet` wrote")
        return args.sheet
    local = OUT_ROOT / run_id / "sheet" / "z.npy"
    if local.is_file():
        return str(local)
    try:
        return store.client(uri).download_artifacts(run_id, "latent/sheet/z.npy")
    except Exception:  # noqa: BLE001 - any failure: the run has no sheet
        raise UserError(f"run={run_id!r} has no contact sheet: run `dcgan-lab latent sheet --run {run_id}` "
                        f"first, or pass --sheet PATH") from None


def check_turn(args, cfg, run_id):
    from trainables.metrics.evaluators import evaluator_spec

    if not any(key == "yaw" for key, _, _ in evaluator_spec(cfg.dataset).heads):
        raise UserError(f"run={run_id!r} was trained on dataset={cfg.dataset!r}, whose evaluator has no yaw: "
                        f"turn needs a synthetic-faces generator")
    if 2 * args.exemplars > args.pool:
        raise UserError(f"exemplars={args.exemplars} is not allowed with pool={args.pool}: at most pool / 2")


def turn(args, netG, cfg, uri, run_id):
    from trainables.latent.turn import run_turn
    return run_turn(netG, _evaluator(cfg), nz=cfg.nz, z_dist=cfg.z_dist, exemplars=args.exemplars, rows=args.rows,
                    steps=args.steps, pool=args.pool, draws=args.draws, seed=args.seed)


def check_forget(args, cfg, run_id):
    from trainables.models import n_upsamplings

    if cfg.dataset != BEDROOMS:
        raise UserError(f"run={run_id!r} was trained on dataset={cfg.dataset!r}: forget needs a generator "
                        f"trained on {BEDROOMS} (its evaluator finds the windows)")
    hidden = n_upsamplings(cfg.image_size)
    if args.layer > hidden:
        raise UserError(f"layer={args.layer} is not allowed: the {cfg.image_size}x{cfg.image_size} G of run={run_id!r} "
                        f"has {hidden} hidden layers (1 = the last .. {hidden} = the first)")


def forget(args, netG, cfg, uri, run_id):
    from trainables.latent.forget import run_forget
    return run_forget(netG, _evaluator(cfg), nz=cfg.nz, z_dist=cfg.z_dist, n=args.n, heldout_n=args.heldout_n,
                      layer=args.layer, seed=args.seed)


def neighbours(args, netG, cfg, uri, run_id):
    from trainables.latent.neighbours import run_neighbours

    evaluator = _evaluator(cfg)
    train, references = _real_references(cfg.dataset, cfg.image_size, cfg.nc, args.train_n or cfg.dataset_size,
                                         args.heldout_n, cfg.data_root, cfg.data_seed, cfg.dataset_size)
    return run_neighbours(netG, evaluator, nz=cfg.nz, z_dist=cfg.z_dist, train_images=train, references=references,
                          n=args.n, seed=args.seed)


@functools.lru_cache(maxsize=1)
def _real_references(dataset, image_size, nc, train_n, heldout_n, data_root, data_seed, dataset_size):
    """The training images and their embeddings, once for all the generators of a command."""
    from trainables.latent.data import load_images
    from trainables.latent.neighbours import real_references
    from trainables.metrics.evaluators import get_evaluator

    train, _ = load_images(dataset, image_size, nc, "train", train_n, data_root, data_seed, dataset_size)
    heldout, _ = load_images(dataset, image_size, nc, "test", heldout_n, data_root, data_seed)
    evaluator = get_evaluator(dataset, image_size, nc=nc)
    return train, real_references(evaluator, train, heldout)


# ---------------------------------------------------------------------------------------------
# represent
# ---------------------------------------------------------------------------------------------

def cmd_represent(args):
    import torch

    from orchestrator import tracking
    from orchestrator.latent.runs import load_generators, publish
    from trainables.data import get_entry
    from trainables.latent.data import load_images
    from trainables.latent.represent import discrete_labels, run_represent
    from trainables.models import build_discriminator, weights_init

    uri = tracking.tracking_uri(args.mlflow_uri)
    generators = load_generators(args, uri)
    cfg = generators[0][2]
    dataset = args.dataset or cfg.dataset
    keys = get_entry(dataset).label_keys
    if not keys:
        raise UserError(f"dataset={dataset!r} has no labels: represent needs a labelled data set")
    labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    unknown = [key for key in labels if key not in keys]
    if unknown:
        raise UserError(f"labels={unknown[0]!r} is not a label of dataset={dataset!r}; its labels: {', '.join(keys)}")
    discriminators = {run_id: load_discriminator(uri, run_id, c) for run_id, _, c in generators}

    # Load the data (in D's image size and channels; the generators share both).
    root = args.data_root or cfg.data_root
    train = load_images(dataset, cfg.image_size, cfg.nc, "train", args.pool, root)
    test = load_images(dataset, cfg.image_size, cfg.nc, "test", args.test_n, root)
    labels = labels or discrete_labels(train[1])
    reports = {}
    for run_id, _, run_cfg in generators:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            random_D = build_discriminator(run_cfg)
            random_D.apply(weights_init)
        reports[run_id] = run_represent(discriminators[run_id], random_D, {"train": train, "test": test}, labels,
                                        per_class=args.per_class, draws=args.draws, seed=args.seed)
        setting = "in-domain" if dataset == run_cfg.dataset else f"transfer: D trained on {run_cfg.dataset}"
        reports[run_id].numbers.update(dataset=dataset, trained_on=run_cfg.dataset, setting=setting, run=run_id)
    publish(reports, {run_id: c for run_id, _, c in generators}, uri, args, f"represent-{dataset}", "represent")
    return 0


def load_discriminator(uri, run_id, cfg):
    from trainables import run_logger, store
    from trainables.checkpoints import load_safe
    from trainables.models import build_discriminator

    try:
        path = store.client(uri).download_artifacts(run_id, f"{run_logger.MODEL_DIR}/discriminator.pt")
    except Exception:  # noqa: BLE001 - any failure: the run has no D
        raise UserError(f"run={run_id!r} has no discriminator: {run_logger.MODEL_DIR}/discriminator.pt is missing") from None
    netD = build_discriminator(cfg)
    netD.load_state_dict(load_safe(path))
    return netD.eval()
