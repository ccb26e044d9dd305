"""``dcgan-lab search-study``: the two-stage search (orchestrator/search/protocol.py), resumable with
``--resume ID``; ``--report ID`` writes the report of a study done or part-way, training nothing."""
from orchestrator.search import settings as study


def add_subparser(subparsers):
    from orchestrator.config import preset_names

    p = subparsers.add_parser("search-study", help="Optuna search over lr, beta1 and bn_placement, then its best "
                                                   "configurations against the paper's on fresh seeds")
    p.add_argument("--preset", default="search-study", help=f"one of: {', '.join(preset_names())}")
    for key, f in study.STUDY_FIELDS.items():   # the preset's search_study.<key>, else the default
        choices = f" (one of: {', '.join(f.metadata['choices'])})" if "choices" in f.metadata else ""
        p.add_argument(study.flag(key), type=f.type, help=f"{f.metadata['help']}{choices}; default: the preset's "
                                                          f"search_study.{key}, else {f.default}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of every trial (repeatable)")
    p.add_argument("--resume", metavar="ID", help="continue study ID (a folder of ./search_studies) with the "
                                                  "settings it was started with")
    p.add_argument("--report", metavar="ID", help="write study ID's report (done or part-way) and exit")
    p.add_argument("--out", default="", help="with --report: the report's folder (default: the study's report/)")
    p.add_argument("--log-to-parent", action="store_true", help="with --report: also put it on the study's MLflow "
                                                                "parent run (its artifacts and description)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved study and its cost, and exit")
    p.set_defaults(func=cmd_search_study)


def resolve(args):
    """(preset, overrides, settings, base config, space), checked before anything starts; a resumed
    study takes them from its study.json."""
    from orchestrator.config import parse_overrides, preset_section, resolve_config
    from search_spaces.loader import load_space, paper_defaults, to_optuna
    from trainables.config import config_from_dict
    from trainables.errors import UserError, bad_value

    if args.resume:
        given = [study.flag(k) for k in study.STUDY_FIELDS if getattr(args, k) is not None] + \
            ["--set"] * bool(args.overrides)
        if given:
            raise UserError(f"{given[0]} with --resume is not allowed: a resumed study keeps the settings it was "
                            f"started with (search_studies/{args.resume}/{study.STUDY_FILE})")
        state = study.read_study(study.study_dir(None, args.resume))
        preset, overrides, s = state["preset"], state["overrides"], study.settings_from(state)
    else:
        preset, overrides = args.preset, parse_overrides(args.overrides)
        s = study.load_study_settings(preset_section(preset, "search_study"),
                                      {k: getattr(args, k) for k in study.STUDY_FIELDS})
    base = resolve_config(preset, overrides)
    if base.eval_every == 0:
        raise bad_value("eval_every", 0, "> 0 (the search minimises each trial's FD)")
    space = load_space(s.space)
    to_optuna(space)
    paper_defaults(space)
    config_from_dict({**base.to_dict(), "max_steps": s.stage1_steps or base.max_steps})   # stage 1's config
    return preset, overrides, s, base, space


def cmd_search_study(args):
    if args.report:
        return report_only(args)
    preset, overrides, s, base, space = resolve(args)
    if args.dry_run:
        print(dry_run(preset, s, base, space))
        return 0
    from orchestrator.search.protocol import run_study

    d = study.study_dir(preset, args.resume)
    if not args.resume:
        state = {"name": d.name, "preset": preset, "overrides": overrides, "settings": s.to_dict(), "done": []}
    out = run_study(d, base, space, s, resume=bool(args.resume), new_state=None if args.resume else state)
    print(f"[search-study] report: {out / 'report.md'}; resume with: dcgan-lab search-study --resume {d.name}")
    return 0


def dry_run(preset, s, base, space):
    """The resolved study and its cost: a stage-1 trial and a stage-2 trial timed now (the sweep's
    estimate), each experiment priced from them."""
    import yaml

    from orchestrator.search.settings import STAGE2, experiments
    from orchestrator.sweep.estimate import sweep_estimate
    from trainables.config import config_from_dict

    stage1 = config_from_dict({**base.to_dict(), "max_steps": s.stage1_steps or base.max_steps})
    per_trial = {"stage 1": sweep_estimate(stage1, 1), STAGE2: sweep_estimate(base, 1)}
    cost, total = {}, 0.0
    for tag, _, _, budget in experiments(s):
        trials = (s.top_k + 1) * s.fresh_seeds if tag == STAGE2 else budget
        one = per_trial[STAGE2 if tag == STAGE2 else "stage 1"]
        hours = -(-trials // one["trials_at_once_here"]) * one["estimated_trial_seconds"] / 3600
        cost[tag] = {"trials": trials, "estimated_wall_hours_here": round(hours, 2)}
        total += hours
    return "\n".join([
        yaml.safe_dump({"search_study": {**s.to_dict(), "preset": preset, "space": space.name,
                                         "stage1_steps": stage1.max_steps, "stage2_steps": base.max_steps}},
                       sort_keys=False).rstrip(),
        yaml.safe_dump({"trial_cost": per_trial, "cost": cost, "total_wall_hours_here": round(total, 2)},
                       sort_keys=False).rstrip()])


def report_only(args):
    from pathlib import Path

    from orchestrator.search.findings import write_report

    d = study.study_dir(None, args.report)
    state = study.read_study(d)
    if "parent_run_id" not in state:
        from trainables.errors import UserError

        raise UserError(f"--report: study {args.report} has no MLflow parent run yet (it never started)")
    out = Path(args.out) if args.out else d / "report"
    write_report(state["store_uri"], state["parent_run_id"], out, study.settings_from(state), state,
                 log_to_parent=args.log_to_parent)
    print(f"[search-study] report of {args.report}: {out / 'report.md'}")
    return 0
