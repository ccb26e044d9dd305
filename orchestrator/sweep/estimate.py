"""What a sweep will cost, from a trial measured now: ``dcgan-lab sweep --dry-run``.

A few training steps of the preset's own nets, and one evaluation at its ``eval_n`` (when the
domain evaluator is already cached here: a dry run trains nothing), are timed on this machine; a
trial's time is those rates scaled to its ``max_steps`` and evaluations. It is an estimate: it
leaves out each trial's start-up (seconds) and a loaded machine's slowdown.
"""
import math
import os

STEPS = 12    # timed after 3 warm-up steps


def measured_trial(cfg, device="cpu"):
    """Seconds per training step and per evaluation for ``cfg`` on this machine."""
    import torch

    from orchestrator.timing import timed_loop
    from trainables.accel import convert_net
    from trainables.metrics.evaluate import fd_speed
    from trainables.metrics.evaluators import evaluator_shipped
    from trainables.models import build_models
    from trainables.step import GANStep, StepMode, make_optimizers, noise_generator

    torch.manual_seed(0)
    real = torch.rand(cfg.batch_size, cfg.nc, cfg.image_size, cfg.image_size, device=device) * 2 - 1
    netG, netD = (convert_net(cfg, 1, n.to(device)) for n in build_models(cfg))   # the trial's layout
    step = GANStep(netG, netD, *make_optimizers(cfg, netG, netD), cfg.nz, cfg.z_dist, StepMode.of(cfg, device))
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.cpus_per_worker)   # a trial's torch threads (trainables.loop)
    try:
        run = timed_loop(lambda i: step(real, noise_generator(0, 0, i)), lambda out: out["loss_d"].item())
        step_s = run(STEPS) / STEPS
        eval_s = 0.0 if not cfg.eval_every else None
        if cfg.eval_every and _space(cfg) == "domain" and evaluator_shipped(cfg.dataset, cfg.image_size, nc=cfg.nc):
            eval_s = fd_speed(cfg.dataset, cfg.image_size, cfg.eval_n, ngf=cfg.ngf, device=device,
                              nc=cfg.nc)["seconds"]
    finally:
        torch.set_num_threads(threads)
    return {"step_seconds": step_s, "eval_seconds": eval_s}


def _space(cfg):
    """The run's feature space (``trainables.metrics.fid.feature_space``), None where it cannot be had."""
    from trainables.errors import UserError
    from trainables.metrics.fid import feature_space

    try:
        return feature_space(cfg.feature_extractor, cfg.inception_weights or None)[0]
    except UserError:
        return None


def sweep_estimate(cfg, n_trials, cpus=None):
    """The dry run's cost lines: per trial, in CPU time over all trials, and in wall time on this
    machine's CPUs at the sweep's concurrency."""
    m = measured_trial(cfg)
    evals = cfg.max_steps // cfg.eval_every if cfg.eval_every else 0
    trial_s = cfg.max_steps * m["step_seconds"] + evals * (m["eval_seconds"] or 0.0)
    cpus_per_trial = cfg.num_workers * cfg.cpus_per_worker
    at_once = max(1, (cpus or os.cpu_count() or 1) // cpus_per_trial)
    wall_s = math.ceil(n_trials / at_once) * trial_s
    return {"trials": n_trials, "measured_step_seconds": round(m["step_seconds"], 4),
            "measured_eval_seconds": None if m["eval_seconds"] is None else round(m["eval_seconds"], 2),
            "evaluations_per_trial": evals,
            "estimated_trial_seconds": round(trial_s),
            "estimated_cpu_hours": round(n_trials * trial_s * cpus_per_trial / 3600, 2),
            "estimated_wall_hours_here": round(wall_s / 3600, 2), "trials_at_once_here": at_once,
            "note": "an estimate from steps and one evaluation timed now; excludes trial start-up"
                    + ("" if m["eval_seconds"] is not None else
                       "; evaluations not timed (their feature extractor is not ready on this machine) nor counted")}
