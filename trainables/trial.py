"""One tracked training run as Tune and Ray Train run it: the trainer of its DDP workers, closing its
MLflow run with the status rank 0 tagged, and the Tune trial function that does both for a sweep's
trial (in the trial's own process, where the driver's modules are not needed)."""
import os

from trainables import run_inputs, run_note, store
from trainables.config import config_from_dict, run_params

TRIAL_TAG = "trial_id"
DESIGN_POINT = "design_point"   # a grid of whole points (design: one_at_a_time) rather than a product


def trial_driver(config, base_cfg, parent_run_id, uri, tags, in_trial=False):
    """One Tune trial: a child MLflow run (``tags``: the driver's run_tags), trained in this
    process (``in_trial``) or by a TorchTrainer reporting to Tune."""
    import os
    import time

    import psutil
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    config = dict(config)
    searched = {**config.pop(DESIGN_POINT, {}), **config}
    cfg = config_from_dict({**base_cfg, **searched})
    trial_id = tune.get_context().get_trial_id()
    # Trial start-up = trial process start -> here -> the loop's first step (perf_loop_start +
    # perf_setup_s); the pid with the start says which process (a reused one: reuse_actors).
    perf = {"perf_trial_process_start": f"{psutil.Process().create_time():.3f}", "perf_trial_pid": str(os.getpid()),
            "perf_trial_start": f"{time.time():.3f}"}
    run_id = child_run(uri, cfg, parent_run_id, trial_id, {**tags, **perf})
    if in_trial:
        from trainables.loop import train_loop_in_trial

        fit_and_close(lambda: train_loop_in_trial({"cfg": cfg.to_dict(), "run_id": run_id, "tracking_uri": uri}),
                      uri, run_id, cfg, cell=sorted(searched))
        return
    storage = cfg.storage_path + "/trials"  # absolute already: the base config was made so
    trainer = build_trainer(cfg, run_id, uri, storage, name=f"trial-{trial_id}", callbacks=[TuneReportCallback()])
    fit_and_close(trainer.fit, uri, run_id, cfg, cell=sorted(searched))


def child_run(uri, cfg, parent_run_id, trial_id, tags):
    """The trial's child run, with ``tags``; the same one when a resumed sweep runs the trial again."""
    from mlflow.entities import RunTag

    c = store.client(uri)
    exp = store.experiment_id(c, cfg.experiment, uri)
    found = c.search_runs([exp], filter_string=f"tags.{TRIAL_TAG} = '{trial_id}' and "
                                               f"tags.mlflow.parentRunId = '{parent_run_id}'")
    if found:   # a restarted trial: its first attempt may have died before the data set was logged
        run_id = found[0].info.run_id
        c.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        if not run_inputs.has_training_input(found[0]):
            run_inputs.log_dataset(uri, run_id, cfg)
        return run_id
    run_id = store.start_run(uri, cfg.experiment, f"trial-{trial_id}", run_params(cfg),
                             {**tags, TRIAL_TAG: trial_id, "kind": "trial", run_note.SWEEP_TAG: parent_run_id},
                             parent_run_id)
    run_inputs.log_dataset(uri, run_id, cfg)
    return run_id


def fit_and_close(fit, uri, run_id, cfg, cell=run_note.CELL_KEYS):
    """Train (``fit()``, with system metrics if the config asks), then close the MLflow run:
    FAILED on an error; else the status rank 0 tagged (``finished`` or ``diverged``). The run's
    description says how it ended (``cell``: the config keys that name its cell)."""
    from trainables.system_metrics import system_metrics

    status = "failed"
    try:
        with system_metrics(uri, run_id, cfg.system_metrics):
            fit()
        status = store.client(uri).get_run(run_id).data.tags.get("status", "finished")
    finally:
        store.client(uri).set_tag(run_id, "status", status)
        run_note.describe_run(uri, run_id, cfg, status, cell)
        store.end_run(uri, run_id, "FAILED" if status == "failed" else "FINISHED")
    return status


# Ray Train's controller takes the workers' reports on its health-check poll (every 2 s by
# default), and a worker's next report waits until the last one is taken: with an evaluation or
# checkpoint every second or two, training would idle on the poll. Ray passes the variable from
# the process that calls fit() to the controller.
HEALTH_CHECK_INTERVAL = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


def build_trainer(cfg, run_id, uri, storage, name, callbacks=()):
    """The Ray Train driver of one run: DDP workers from the config, checkpoints in ``storage``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from trainables.loop import train_loop_per_worker

    os.environ.setdefault(*HEALTH_CHECK_INTERVAL)

    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.to_dict(), "run_id": run_id, "tracking_uri": uri},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=RunConfig(name=name, storage_path=storage, callbacks=list(callbacks),
                             failure_config=FailureConfig(max_failures=cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
