"""``dcgan-lab sweep`` (and ``run_sweep.py``): Ray Tune + Optuna over any config keys.

Each Tune trial is a Train driver: a function that builds a ``TorchTrainer`` reporting to Tune
through ``TuneReportCallback``. MLflow holds one parent run per sweep and one child per trial.
"""
import json
import math
from pathlib import Path

from orchestrator.config import load_sweep_settings, parse_overrides, preset_names, resolve_config
from orchestrator.errors import UserError, bad_value

SEARCH_MODES = ("tpe", "grid", "random")
SWEEP_FILE = "sweep.json"   # beside Tune's state: the parent run id, for --resume


def add_subparser(subparsers):
    p = subparsers.add_parser("sweep", help="Ray Tune + Optuna sweep; one MLflow parent run, a child per trial")
    p.add_argument("--preset", default="quick", help=f"one of: {', '.join(preset_names())}")
    p.add_argument("--space", help="search space name (search_spaces/NAME.yaml) or a YAML path")
    p.add_argument("--search", help=f"one of: {', '.join(SEARCH_MODES)}")
    p.add_argument("--num-samples", type=int, help="trials for tpe/random; a cap for grid")
    p.add_argument("--seeds", type=int, help="seeds per grid point")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of every trial (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the last interrupted sweep of this preset")
    p.add_argument("--dry-run", action="store_true", help="print the resolved sweep and exit")
    p.set_defaults(func=cmd_sweep)


def resolve_sweep(args):
    """Base config, search space and settings, all checked before Ray starts."""
    from search_spaces.loader import grid_points, load_space, to_optuna

    base = resolve_config(args.preset, parse_overrides(args.overrides))
    settings = load_sweep_settings(args.preset)
    for key in ("space", "search", "num_samples", "seeds"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if settings["scheduler"] not in ("none", "asha"):
        raise bad_value("sweep.scheduler", settings["scheduler"], "none or asha")
    if settings["scheduler"] == "asha" and base.eval_every == 0:
        raise bad_value("eval_every", 0, "> 0 with the asha scheduler (it ranks trials by FD)")
    if settings["search"] not in SEARCH_MODES:
        raise bad_value("search", settings["search"], f"one of {', '.join(SEARCH_MODES)}")
    for key in ("num_samples", "seeds"):
        if not isinstance(settings[key], int) or settings[key] < 1:
            raise bad_value(key.replace("_", "-"), settings[key], "an integer >= 1")
    space = load_space(settings["space"])
    if settings["search"] == "tpe":
        to_optuna(space)  # a grid space cannot be searched by TPE: say so before Ray starts
        if base.eval_every == 0:
            raise bad_value("eval_every", 0, "> 0 for --search tpe (TPE minimises the run's FD)")
    points = None
    if settings["search"] == "grid":
        points = grid_points(space, settings["seeds"])
        if args.num_samples is not None and len(points) > args.num_samples:
            raise bad_value("num-samples", args.num_samples,
                            f">= {len(points)}: the grid of {space.name} x {settings['seeds']} seeds has {len(points)} trials")
    return base, space, settings, points


def cmd_sweep(args):
    base, space, settings, points = resolve_sweep(args)
    n_trials = len(points) if points is not None else settings["num_samples"]
    if args.dry_run:
        import yaml

        print(yaml.safe_dump({"sweep": {**settings, "space": space.name, "trials": n_trials},
                              "base_config": base.to_dict()}, sort_keys=False).rstrip())
        return 0
    if args.resume:
        check_resumable(sweep_dir(args.preset, space.name, settings["search"], resume=True), base)
    from orchestrator.sweep_run import run_sweep

    summary = run_sweep(args.preset, base, space, settings, points, resume=args.resume)
    print(summary)
    return 0


def concurrency(base, cluster_cpus):
    """Trials that fit at once: the cluster's CPUs over one trial's workers."""
    per_trial = base.num_workers * base.cpus_per_worker
    return max(1, math.floor(cluster_cpus / per_trial))


SWEEPS_DIR = "sweeps"   # local state of each sweep: sweep.json, the Optuna study, the server log


def sweep_dir(preset, space_name, search, resume):
    """``./sweeps/<preset>-<space>-<search>-<n>``: a new n per sweep, the last one on --resume."""
    root = Path(SWEEPS_DIR).absolute()
    stem = f"{preset}-{space_name}-{search}"
    taken = sorted((int(p.name.rsplit("-", 1)[1]), p) for p in root.glob(f"{stem}-*")
                   if p.name.rsplit("-", 1)[1].isdigit() and (p / SWEEP_FILE).is_file())
    if resume:
        if not taken:
            raise UserError(f"--resume: no sweep {stem} to resume under {root}")
        return taken[-1][1]
    return root / f"{stem}-{taken[-1][0] + 1 if taken else 1}"


def tune_storage(storage_path):
    """Where Tune keeps its sweeps' state (``<storage_path>/sweeps/<sweep name>``)."""
    return storage_path + "/sweeps"


def check_resumable(d, base):
    """--resume, before Ray starts: this storage_path must hold Tune's state of sweep ``d``;
    if not, say where the sweep ran (its sweep.json) instead of failing inside Tune's restore."""
    from ray.tune import Tuner

    from orchestrator.train import with_absolute_paths

    looked_in = f"{tune_storage(with_absolute_paths(base).storage_path)}/{d.name}"
    if Tuner.can_restore(looked_in):
        return
    ran = read_sweep_file(d).get("storage_path")
    where = f"the sweep ran with storage_path={ran!r}" if ran else f"{d / SWEEP_FILE} does not say where it ran"
    raise UserError(f"--resume: storage_path={base.storage_path!r} holds no Tune state of sweep {d.name} "
                    f"(looked in {looked_in}); {where}")


def read_sweep_file(d):
    return json.loads((Path(d) / SWEEP_FILE).read_text())


def write_sweep_file(d, data):
    Path(d).mkdir(parents=True, exist_ok=True)
    tmp = Path(d) / (SWEEP_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(Path(d) / SWEEP_FILE)
