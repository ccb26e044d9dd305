"""``dcgan-lab sweep`` (and ``run_sweep.py``): Ray Tune + Optuna over any config keys. The options are
resolved and checked here, before Ray starts; the sweep itself is in ``orchestrator/sweep/``."""
from orchestrator.config import SWEEP_FIELDS, load_sweep_settings, parse_overrides, preset_names, resolve_config, sweep_flag
from orchestrator.sweep.plan import check_resumable, sweep_dir
from trainables.errors import bad_value


def add_subparser(subparsers):
    p = subparsers.add_parser("sweep", help="Ray Tune + Optuna sweep; one MLflow parent run, a child per trial")
    p.add_argument("--preset", default="quick", help=f"one of: {', '.join(preset_names())}")
    for key, f in SWEEP_FIELDS.items():  # the preset's sweep.<key>, else the default
        choices = f" (one of: {', '.join(f.metadata['choices'])})" if "choices" in f.metadata else ""
        p.add_argument(sweep_flag(key), type=f.type, help=f"{f.metadata['help']}{choices}; default: the preset's "
                                                          f"sweep.{key}, else {f.default}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of every trial (repeatable)")
    p.add_argument("--sequential", action="store_true",
                   help="a paired study in blocks up to planned looks (--sequential-looks), stopping once its claims are "
                        "decided (orchestrator/report/sequential.py)")
    p.add_argument("--resume", action="store_true", help="continue the last interrupted sweep of this preset")
    p.add_argument("--dry-run", action="store_true", help="print the resolved sweep and exit")
    p.set_defaults(func=cmd_sweep)


def resolve_sweep(args):
    """Base config, search space and settings, all checked before Ray starts."""
    from search_spaces.loader import grid_points, load_space, to_optuna

    base = resolve_config(args.preset, parse_overrides(args.overrides))
    settings = load_sweep_settings(args.preset, {key: getattr(args, key) for key in SWEEP_FIELDS})
    if settings.scheduler == "asha" and base.eval_every == 0:
        raise bad_value("eval_every", 0, "> 0 with the asha scheduler (it ranks trials by FD)")
    space = load_space(settings.space)
    if settings.search == "tpe":
        to_optuna(space)  # a grid space cannot be searched by TPE: say so before Ray starts
        if base.eval_every == 0:
            raise bad_value("eval_every", 0, "> 0 for --search tpe (TPE minimises the run's FD)")
    if getattr(args, "sequential", False):
        from orchestrator.sweep.sequential import check_sequential

        check_sequential(space, settings)
    points = None
    if settings.search == "grid":
        points = grid_points(space, settings.seeds, settings.first_seed)
        if args.num_samples is not None and len(points) > args.num_samples:
            raise bad_value(sweep_flag("num_samples"), args.num_samples,
                            f">= {len(points)}: the grid of {space.name} x {settings.seeds} seeds has {len(points)} trials")
    return base, space, settings, points


def cmd_sweep(args):
    base, space, settings, points = resolve_sweep(args)
    n_trials = len(points) if points is not None else settings.num_samples
    if args.dry_run:
        import yaml

        from orchestrator.sweep.estimate import sweep_estimate

        print(yaml.safe_dump({"sweep": {**settings.to_dict(), "space": space.name, "trials": n_trials},
                              "base_config": base.to_dict()}, sort_keys=False).rstrip())
        print(yaml.safe_dump({"cost": sweep_estimate(base, n_trials)}, sort_keys=False).rstrip())
        if args.sequential:
            from orchestrator.sweep.sequential import expected_trials

            print(yaml.safe_dump({"sequential": expected_trials(space, settings)}, sort_keys=False).rstrip())
        return 0
    if args.resume:
        check_resumable(sweep_dir(args.preset, space.name, settings.search, resume=True), base, args.sequential)
    from orchestrator.sweep.run import run_sweep

    summary = run_sweep(args.preset, base, space, settings, points, resume=args.resume, sequential=args.sequential)
    print(summary)
    return 0
