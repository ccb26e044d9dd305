"""The training loop: on every DDP rank of a Ray Train run, or in a single-worker Tune trial's
own process (``trainables.session`` holds the difference).

Rank 0 alone logs to MLflow and writes checkpoints; every rank reports at the same steps,
since ``ray.train.report`` is a barrier.
"""
import math
import sys
import time
import warnings

import torch
from torch.utils.data import DataLoader

from trainables.accel import DeviceMemoryError, configure_backends, memory_named, prepare_nets, unwrap
from trainables.checkpoints import restore_training_state, training_state
from trainables.config import config_from_dict
from trainables.data import DataRequest, build_dataset
from trainables.data.cache import open_cache
from trainables.data.device_batches import device_batches
from trainables.data.sampler import ResumableBatchSampler
from trainables.metrics.stability import DIVERGED
from trainables.models import build_models, sample_z
from trainables.perf import PhaseClock
from trainables.run_eval import RunEvaluator
from trainables.run_logger import MODEL_DIR, RunLogger, torch_bytes
from trainables.step import GANStep, StepMode, all_ranks, generate, make_optimizers, noise_generator, reduce_outputs


def data_request(cfg, split="train"):
    return DataRequest(dataset=cfg.dataset, image_size=cfg.image_size, nc=cfg.nc, data_root=cfg.data_root,
                       download=cfg.download, dataset_size=cfg.dataset_size, data_seed=cfg.data_seed, split=split)


def real_batches(cfg, rank, world, start_step, device):
    """(images in the training set, this rank's batches from ``start_step`` on, on ``device``, in
    [-1, 1]): sliced from the data cache and scaled on the device, or with ``data_cache=false``
    drawn item by item through a DataLoader. Both give the same floats in the same order."""
    images = None
    if cfg.data_cache:
        try:
            images = open_cache(data_request(cfg))
        except OSError as err:   # no room for the cache: the same batches the slow way
            warnings.warn(f"data cache not built ({err}); decoding each item instead", stacklevel=2)
    source = images if images is not None else build_dataset(data_request(cfg))
    sampler = ResumableBatchSampler(len(source), cfg.batch_size // world, rank, world, seed=cfg.seed,
                                    start_step=start_step)
    if images is not None:
        if on_device(cfg, device):
            try:
                return len(images), device_batches(images.images, sampler, device, images.scale)
            except (torch.OutOfMemoryError, MemoryError):
                raise DeviceMemoryError(f"data_placement={cfg.data_placement!r}: the data set "
                                        f"({images.images.nbytes / 1e9:.2f} GB as uint8) does not fit in {device}'s "
                                        "memory: set data_placement=host") from None
        return len(images), (images.batch(indices, device) for indices in sampler)
    loader = DataLoader(source, batch_sampler=sampler, num_workers=cfg.loader_workers,
                        persistent_workers=cfg.loader_workers > 0)
    return len(source), (real.to(device, non_blocking=True) for real, _labels in loader)


def on_device(cfg, device):
    """Does the cached data set live on the training device (``data_placement``; auto: on CUDA)?"""
    return cfg.data_placement == "device" or (cfg.data_placement == "auto" and torch.device(device).type == "cuda")


def total_steps(cfg, n_items):
    per_epoch = n_items // cfg.batch_size
    by_epochs = cfg.epochs * per_epoch if cfg.epochs else math.inf
    by_steps = cfg.max_steps if cfg.max_steps else math.inf
    return int(min(by_epochs, by_steps))


def train_loop_per_worker(config):
    """Ray Train's entry point: one DDP rank of a TorchTrainer."""
    from trainables.session import TrainSession

    with memory_named(config["cfg"]):
        train_loop(config, TrainSession())


def train_loop_in_trial(config):
    """A single-worker Tune trial's entry point: the loop in the trial's own process."""
    from trainables.session import TrialSession

    cfg = config["cfg"]
    with memory_named(cfg):
        train_loop(config, TrialSession(cfg["use_gpu"], cfg["gpus_per_trial"]))


def train_loop(config, session):
    import ray


    clock = PhaseClock()
    cfg = config_from_dict(config["cfg"])
    run_id, uri = config["run_id"], config["tracking_uri"]
    rank, world = session.rank, session.world
    master = rank == 0
    torch.set_num_threads(cfg.cpus_per_worker)
    device = session.device
    configure_backends(cfg)

    # Build models and optimizers, seeded: every rank starts from the same weights.
    torch.manual_seed(cfg.seed)
    netG, netD = build_models(cfg)
    fixed_noise = sample_z(cfg.n_samples, cfg.nz, cfg.z_dist, generator=torch.Generator().manual_seed(cfg.seed))
    netG, netD = prepare_nets(cfg, session, netG, netD)  # SyncBatchNorm, layout, compile, device / DDP
    optG, optD = make_optimizers(cfg, netG, netD)

    # Resume from the latest checkpoint, if Ray restarted us after a failure.
    start_step = 0
    resumed = session.load_checkpoint()
    if resumed is not None:
        start_step, fixed_noise = restore_training_state(resumed, netG, netD, optG, optD)
    fixed_noise = fixed_noise.to(device)
    evaluator = RunEvaluator(cfg, device, rank, world)
    if resumed is not None and "run_history" in resumed:
        evaluator.load_state_dict(resumed["run_history"])
    # Ray registers a checkpoint only when it next polls the workers (every 2 s), so a restart
    # may begin before the last checkpoint reported: skip whatever steps the store already holds.
    logger = RunLogger.resuming(uri, run_id) if master else None
    if master:
        logger.tags({"node_id": ray.get_runtime_context().get_node_id()})
        if evaluator.enabled:   # the frozen weights FD is measured with: runs pool only when these match
            logger.params({"evaluator_sha": evaluator.evaluator.sha256})

    # Load training set, sharded by rank.
    n_items, batches = real_batches(cfg, rank, world, start_step, device)
    n_steps = total_steps(cfg, n_items)

    step_fn = GANStep(netG, netD, optG, optD, cfg.nz, cfg.z_dist, StepMode.of(cfg, device))
    if resumed is not None and "scalers" in resumed:
        step_fn.load_state_dict(resumed["scalers"])
    progress = Progress(n_steps, start_step, cfg.batch_size) if master else None
    status, step, latest = "finished", start_step, {}
    clock.lap("setup")
    for real in batches:
        clock.lap("data")
        if step >= n_steps:
            break
        out = step_fn(real, noise_generator(cfg.seed, rank, step, device))
        step += 1
        last = step == n_steps
        if cfg.inject_nan_at == (rank, step):  # the fault-injection hook: this rank's losses only
            out = {k: v * math.nan for k, v in out.items()}
        clock.lap("step")

        # Losses and D outputs, means over ranks, and the finite flag all ranks agree on: the only
        # host sync, on logging (and evaluation) steps.
        if step % cfg.log_every == 0 or last or evaluator.due(step, n_steps):
            values, finite = reduce_outputs(out, world)
            if not finite:
                status = "diverged"
            if master and (step % cfg.log_every == 0 or last or not finite):
                evaluator.record_losses(step, values)
                values["images_per_s"] = progress.rate(step)
                logger.metrics(step, values)
                progress.show(step, values)
        sampled = master and (step % cfg.sample_every == 0 or last or status == "diverged")
        if sampled:
            images = generate(netG, fixed_noise)
            logger.image(step, to_grid_image(images))
        clock.lap("log")

        # Evaluate (every rank takes part), then report to Ray (a barrier) with a checkpoint.
        if sampled and status != "diverged":
            evaluator.record_samples(step, images)
        evaluated = status != "diverged" and evaluator.due(step, n_steps)
        if evaluated:
            latest = evaluator(netG, step)
            if master:  # "fd" is Tune's generic key; MLflow keeps the evaluator's name (fd_faces, ...)
                logger.metrics(step, {k: v for k, v in latest.items() if k != "fd"})
            if not all_ranks(not evaluator.fd_diverged(), world, device):
                status = "diverged"
        clock.lap("eval")
        checkpointing = step % cfg.checkpoint_every == 0 or last or status == "diverged"
        if evaluated or checkpointing:
            metrics = {"step": step, "diverged": status == "diverged", **latest}
            state = training_state(step, netG, netD, optG, optD, fixed_noise, cfg.to_dict()) \
                if checkpointing and master else None
            if state is not None:
                state["run_history"] = evaluator.state_dict()
                state["scalers"] = step_fn.state_dict()
            if logger is not None:
                logger.flush()
            session.report(metrics, state)
        clock.lap("checkpoint")
        if status == "diverged":
            break

    if master:
        final, notes = evaluator.final_metrics(step)
        if final[DIVERGED]:
            status = "diverged"
        logger.metrics(step, final)
        if notes:  # why a stability metric is NaN (a history too short for it), one line each
            logger.tags({"metric_notes": "; ".join(notes)})
        logger.flush(retries=30)
        _log_final_models(logger, netG, netD, cfg, status, step)
        clock.lap("final")
        logger.metrics(step, clock.metrics())
        logger.tags(clock.tags())
        logger.flush(retries=30)


def _log_final_models(logger, netG, netD, cfg, status, step):
    import yaml


    logger.artifact_bytes(torch_bytes(unwrap(netG).state_dict()), MODEL_DIR, "generator.pt")
    logger.artifact_bytes(torch_bytes(unwrap(netD).state_dict()), MODEL_DIR, "discriminator.pt")
    logger.artifact_bytes(yaml.safe_dump(cfg.to_dict()).encode(), MODEL_DIR, "config.yaml")
    logger.tags({"status": status, "final_step": step})


def to_grid_image(images, nrow=8):
    """A [-1, 1] image batch as one PIL grid."""
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(images.detach().float().cpu(), nrow=nrow, padding=2, normalize=True, value_range=(-1, 1))
    return Image.fromarray(grid.mul(255).add(0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy())


class Progress:
    """One line per log step: step, images/s, losses, ETA."""

    def __init__(self, n_steps, start_step, batch_size):
        self.n_steps, self.batch_size = n_steps, batch_size
        self.t0, self.s0 = time.perf_counter(), start_step
        self.t_last, self.s_last = self.t0, start_step

    def rate(self, step):
        now = time.perf_counter()
        r = (step - self.s_last) * self.batch_size / max(now - self.t_last, 1e-9)
        self.t_last, self.s_last = now, step
        return r

    def show(self, step, v):
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / max(step - self.s0, 1) * (self.n_steps - step)
        sys.stdout.write(f"step {step}/{self.n_steps} | {v['images_per_s']:.0f} img/s | loss_d {v['loss_d']:.3f} "
              f"loss_g {v['loss_g']:.3f} | D(x) {v['d_real']:.2f} D(G(z)) {v['d_fake']:.2f}/{v['d_fake_g']:.2f} "
              f"| ETA {eta:.0f}s\n")
        sys.stdout.flush()
