"""Running a resolved sweep: the MLflow server and parent run, the Tune trials, the summary."""
import contextlib
from pathlib import Path

from orchestrator import run_notes
from orchestrator.ray_run import DRIVER_PHASES, prepare_ray_run, run_tags
from orchestrator.report.build import print_sweep_report
from orchestrator.sweep.plan import plan_trials, read_sweep_file, sweep_dir, tune_storage, write_sweep_file
from trainables import store
from trainables.errors import UserError
from trainables.trial import DESIGN_POINT, trial_driver


def run_sweep(preset, base, space, settings, points, resume=False, sequential=False):
    import ray

    from trainables.perf import PhaseClock

    clock = PhaseClock(DRIVER_PHASES)
    d = sweep_dir(preset, space.name, settings.search, resume)
    in_trial = trains_in_trial(base, space)
    with contextlib.ExitStack() as stack:
        server = []
        # Every check, the data cache, one feature space pinned for every trial, Ray; a trial plan
        # that cannot run is refused before the parent run exists.
        run = prepare_ray_run(base, dashboard=not in_trial, clock=clock,
                              check_cluster=lambda cfg: plan_trials(cfg, space, in_trial, ray.nodes()),
                              after_checks=lambda uri: server.append(stack.enter_context(tracking_for_sweep(uri, d))))
        base = run.cfg
        uri = server[0].wait()
        clock.lap("mlflow_server")
        if resume:
            parent = read_sweep_file(d)["parent_run_id"]
        else:
            parent = store.start_run(
                uri, base.experiment, d.name,
                {**{f"sweep_{k}": v for k, v in settings.to_dict().items()}, "sweep_space": space.name, **base.to_dict()},
                {**run_tags(), "kind": "sweep", "space_file": space.path})
            run_notes.start_sweep(uri, parent)
            write_sweep_file(d, {"parent_run_id": parent, "preset": preset, "settings": settings.to_dict(),
                                 "storage_path": base.storage_path, "sequential": sequential})
        clock.lap("parent_run")
        store.client(uri).set_tag(parent, "perf_driver_start", f"{clock.started:.3f}")
        for phase, seconds in clock.seconds.items():
            store.client(uri).set_tag(parent, f"perf_driver_{phase}_s", f"{seconds:.3f}")
        store.client(uri).set_tag(parent, "perf_ray_init_s", f"{run.ray_init_s:.3f}")
        looks = None
        if sequential:   # block after block, each its own Tune experiment, until the claims are decided
            from ray import tune

            from orchestrator.sweep.sequential import run_sequential

            blocks = []

            def run_block(name, block):
                again = tune.Tuner.can_restore(f"{tune_storage(base.storage_path)}/{name}")
                blocks.append(len(run_tuner(d, base, space, settings, block, parent, uri, again, name=name)))

            looks = run_sequential(d, space, settings, parent, uri, run_block)
            n_trials = sum(blocks)
        else:
            n_trials = len(run_tuner(d, base, space, settings, points, parent, uri, resume))
        summary = summarize(uri, parent)
        store.client(uri).set_tag(parent, "n_trials", n_trials)
        report = print_sweep_report(uri, parent, Path(d) / "report")
        run_notes.describe_sweep(uri, parent, report, looks)
        if looks:   # the verdicts of record of a sequential study, beside the fixed-n report
            from trainables.atomic import write_atomic

            write_atomic(Path(d) / "report" / "sequential.md", f"# Sequential looks of {d.name}\n\n{looks}\n")
            store.client(uri).log_artifact(parent, str(Path(d) / "report" / "sequential.md"), "report")
            print(f"\nSequential looks (the verdicts of record; also report/sequential.md):\n\n{looks}")
        store.end_run(uri, parent)
    return summary if report is None else f"parent run {parent}; open the MLflow UI with: dcgan-lab ui"


class SweepTracking:
    """The tracking URI of a sweep's trials; a local SQLite store is served by a server of the
    sweep's own (concurrent trials, one writer). ``wait()`` returns the URI once it answers: from
    then on the sweep writes to it, and what was created for it is kept."""

    def __init__(self, store_uri, d):
        self.store_uri, self.d = store_uri, Path(d)
        self.served = None
        self.kept = self.server_failed = False

    def wait(self):
        try:
            uri = self.store_uri if self.served is None else self.served()
        except UserError:  # the server's log is what the error line names
            self.server_failed = True
            raise
        self.kept = True
        return uri


@contextlib.contextmanager
def tracking_for_sweep(store_uri, d):
    """Start serving a SQLite store; yields a SweepTracking. If the block fails before ``wait()``
    has returned, what it created goes again (a sweep refused after its input checks leaves
    nothing behind), but for the log of a server that did not start."""
    from orchestrator.sweep.mlflow_server import starting_server

    tracking = SweepTracking(store_uri, d)
    if not store_uri.startswith("sqlite:///"):
        yield tracking
        return
    db, log = Path(store_uri[len("sqlite:///"):]), tracking.d / "mlflow-server.log"
    created = [path for path in (db, Path(f"{db}.lock"), log) if not path.exists()]
    new_dirs = [folder for folder in (tracking.d, tracking.d.parent) if not folder.exists()]
    store.open_store(store_uri)  # created here under the store's lock, not by the server
    try:
        with starting_server(store_uri, store.artifact_root(store_uri), log) as tracking.served:
            yield tracking
    except BaseException:
        if not tracking.kept:
            for path in created:
                if not (path == log and tracking.server_failed):
                    path.unlink(missing_ok=True)
            for folder in new_dirs if not tracking.server_failed else ():
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise


def run_tuner(d, base, space, settings, points, parent, uri, resume, name=None, search=None, tags=None):
    """Tune's run of ``points`` (or the search) as experiment ``name`` (default: the sweep's); ``search``:
    the caller's own (search_alg, param_space, num_samples), ``tags``: the trial runs' extra tags."""
    import time

    import ray
    from ray import tune

    in_trial = trains_in_trial(base, space)
    plan = plan_trials(base, space, in_trial, ray.nodes())
    trainable = tune.with_resources(
        tune.with_parameters(trial_driver, base_cfg=base.to_dict(), parent_run_id=parent, uri=uri,
                             tags={**run_tags(), **(tags or {})}, in_trial=in_trial),
        plan.resources)
    storage = tune_storage(base.storage_path)  # absolute already (run_sweep)
    name = name or d.name
    if resume:
        tuner = tune.Tuner.restore(f"{storage}/{name}", trainable=trainable, resume_errored=True)
    else:
        search_alg, param_space, num_samples = search or search_setup(space, settings, points, base, d)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=num_samples,
                                        scheduler=make_scheduler(settings.scheduler, base),
                                        max_concurrent_trials=plan.concurrency,
                                        trial_name_creator=lambda t: f"trial-{t.trial_id}",
                                        trial_dirname_creator=lambda t: f"trial-{t.trial_id}",
                                        # A finished in-trial trial's process runs the next trial:
                                        # no new process, no second import of torch, Ray and MLflow.
                                        reuse_actors=in_trial),
            # No stopper on "diverged": the loop stops itself at a NaN loss once it has tagged the run;
            # a Tune stopper would end the trial first, and MLflow would call it failed.
            run_config=tune.RunConfig(name=name, storage_path=storage, verbose=1,
                                      # In-trial training: Tune keeps the checkpoints and restarts failed trials.
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                                      failure_config=tune.FailureConfig(max_failures=base.max_failures if in_trial else 0)),
        )
    # Where the sweep's wall time goes: ``dcgan-lab bench`` reads these with the trials' perf_* metrics.
    store.client(uri).set_tag(parent, "perf_tuner_start", f"{time.time():.3f}")
    results = tuner.fit()
    store.client(uri).set_tag(parent, "perf_tuner_end", f"{time.time():.3f}")
    return results


def search_setup(space, settings, points, base, d):
    """(search_alg, param_space, num_samples) for tpe, grid or random. TPE's study lives in an
    SQLite RDB in the sweep's folder, so its history outlives the driver."""
    from ray import tune

    from search_spaces.loader import paper_defaults, to_optuna, to_tune

    mode = settings.search
    if mode == "grid":
        if space.design == "one_at_a_time":  # not a product: each trial gets one whole point
            return None, {DESIGN_POINT: tune.grid_search(points)}, 1
        # Tune's grid is the cartesian product of each key's values: the same trials as ``points``.
        return None, {k: tune.grid_search(list(dict.fromkeys(p[k] for p in points))) for k in points[0]}, 1
    if mode == "random":
        return None, to_tune(space), settings.num_samples
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    storage = optuna.storages.RDBStorage(f"sqlite:///{Path(d).absolute() / 'optuna.db'}")
    alg = OptunaSearch(space=to_optuna(space), metric="fd", mode="min", storage=storage,
                       study_name=d.name, points_to_evaluate=[paper_defaults(space)], seed=base.seed)
    return alg, None, settings.num_samples


def make_scheduler(name, base):
    """``asha``: stop trials whose FD lags at each rung. Rungs are in training steps (the reports'
    ``step``), not in reports: a report comes at every evaluation and every checkpoint, so a
    count of reports would put rungs at different steps for different checkpoint settings. The
    first rung is after four evaluations; the last is the run's own length."""
    if name == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    grace = 4 * base.eval_every
    return ASHAScheduler(time_attr="step", metric="fd", mode="min", grace_period=grace,
                         max_t=max(base.max_steps, 2 * grace) if base.max_steps else 10**9, reduction_factor=2)


def trains_in_trial(base, space):
    """Single-worker trials train in the trial's own process: no Train controller and worker
    group to start for each (seconds a trial on a small machine). Not when the space searches
    the worker layout: the trial's resources are fixed from the base config."""
    return base.num_workers == 1 and not {"num_workers", "cpus_per_worker", "use_gpu"} & set(space.params)


def summarize(uri, parent):
    """A Markdown table of the child runs; the best one's id goes to the parent run."""
    c = store.client(uri)
    exp = c.get_run(parent).info.experiment_id
    runs = c.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    keys = ("lr", "beta1", "bn_placement", "seed")
    rows = []
    for r in runs:
        fd = r.data.metrics.get("fd_final", float("nan"))
        rows.append((fd, r.info.run_id, [r.data.params.get(k, "") for k in keys], r.data.tags.get("status", "")))
    rows.sort(key=lambda x: (x[0] != x[0], x[0]))  # NaN last
    lines = ["| run | " + " | ".join(keys) + " | status | fd_final |", "|" + "---|" * (len(keys) + 3)]
    for fd, run_id, vals, status in rows:
        lines.append(f"| {run_id[:8]} | " + " | ".join(vals) + f" | {status} | {fd:.4g} |")
    table = "\n".join(lines)
    c.log_text(parent, table, "summary.md")
    if rows and rows[0][0] == rows[0][0]:
        c.set_tag(parent, "best_run_id", rows[0][1])
    return table + f"\n\nparent run {parent}; open the MLflow UI with: dcgan-lab ui"
