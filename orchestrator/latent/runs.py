"""The generators a latent command runs on (``--generators`` / ``--sweep``), and where its results go.

With several generators each gets its own report (logged to its own run) and a summary takes
every experiment's headline numbers over them: the generator is then the unit of replication,
with a t interval from 3 generators on (``trainables.latent.stats.over_generators``).
"""
import importlib
import re
import sys
from pathlib import Path

from trainables.errors import UserError

RUN_ID = re.compile(r"^[0-9a-f]{8,64}$")     # MLflow run ids are hex; they also name folders
OUT_ROOT = Path("latent")
SHARED = ("dataset", "image_size", "nc", "nz", "z_dist")   # what generators summarised together must share


def check_run_id(run_id, key="run"):
    if not RUN_ID.match(run_id or ""):
        raise UserError(f"{key}={run_id!r} is not a valid MLflow run id: expected 8-64 lowercase hex digits")
    return run_id


def generator_ids(args, uri):
    """The run ids of ``--generators`` (comma-separated) or of ``--sweep``'s finished runs."""
    from orchestrator.report.data import find_runs

    if bool(args.generators) == bool(args.sweep):
        raise UserError(f"{args.experiment} needs --generators RUN_ID[,RUN_ID...] (or --run RUN_ID) or "
                        f"--sweep PARENT_ID, one of the two")
    if args.sweep:
        check_run_id(args.sweep, "sweep")
        runs, _, _ = find_runs(uri, sweep=args.sweep)
        ids = [r.info.run_id for r in runs if r.info.status == "FINISHED"]
        if not ids:
            raise UserError(f"sweep={args.sweep!r} has no finished run to take a generator from")
        return ids
    ids = [check_run_id(s.strip()) for s in args.generators.split(",") if s.strip()]
    if not ids:
        raise UserError(f"generators={args.generators!r} names no run id")
    if len(set(ids)) < len(ids):
        raise UserError(f"generators={args.generators!r} names a run twice")
    return ids


def load_generators(args, uri):
    """[(run id, G, config)] for every generator asked for; they must share SHARED."""
    from orchestrator import tracking

    loaded = [(run_id, *tracking.load_generator(uri, run_id)) for run_id in generator_ids(args, uri)]
    first_id, _, first = loaded[0]
    for run_id, _, cfg in loaded[1:]:
        for key in SHARED:
            if getattr(cfg, key) != getattr(first, key):
                raise UserError(f"run={run_id!r} has {key}={getattr(cfg, key)!r} but run={first_id!r} has "
                                f"{getattr(first, key)!r}: generators summarised together must share "
                                f"{', '.join(SHARED)}")
    return loaded


def output_folder(args, name, run_ids):
    if args.out:
        return Path(args.out)
    if len(run_ids) == 1:
        return OUT_ROOT / run_ids[0] / name
    group = f"sweep-{args.sweep}" if args.sweep else f"{run_ids[0]}+{len(run_ids) - 1}"
    return OUT_ROOT / group / name


def summarise(experiment, reports, configs):
    """The experiment's headline numbers per generator and over the generators, or None for an
    experiment without headline numbers (the sheet)."""
    headline = getattr(importlib.import_module(f"trainables.latent.{experiment}"), "headline", None)
    if headline is None:
        return None
    per_generator = {run_id: headline(report.numbers) for run_id, report in reports.items()}
    keys = list(next(iter(per_generator.values())))
    return {"experiment": experiment, "unit": "generators", "generators": list(reports),
            "configs": {run_id: {key: getattr(cfg, key) for key in ("dataset", "z_dist", "seed", "max_steps")}
                        for run_id, cfg in configs.items()},
            "statistics": {key: _over_generators(key, per_generator) for key in keys}}


def _over_generators(key, per_generator):
    from trainables.latent.stats import over_generators

    stats = [h.get(key) or {"mean": None} for h in per_generator.values()]
    means = [s["mean"] for s in stats]
    return {**over_generators(means, stats[0].get("bounds")), "per_generator": dict(zip(per_generator, means))}


def publish(reports, configs, uri, args, name, experiment):
    """Write every report (one sub-folder per generator when there are several) and the summary,
    then log each report to its run (the summary to the sweep's parent run); print the path of
    the numbers: the summary's with several generators."""
    from trainables import store
    from trainables.latent.report import Report

    base = output_folder(args, name, list(reports))
    several = len(reports) > 1
    written = {run_id: (base / run_id if several else base) for run_id in reports}
    for run_id, report in reports.items():
        paths = report.write(written[run_id], name)
    summary = summarise(experiment, reports, configs) if several else None
    if summary is not None:
        paths = Report(summary).write(base, name)
    c = store.client(uri)
    for run_id, folder in written.items():
        c.log_artifacts(run_id, str(folder), f"latent/{name}")
    if summary is not None and args.sweep:
        c.log_artifact(args.sweep, str(paths[0]), f"latent/{name}")
    print(f"wrote {name} of {len(reports)} generator(s) to {base}/ (logged to each run under latent/{name}/)",
          file=sys.stderr)
    print(paths[0])
