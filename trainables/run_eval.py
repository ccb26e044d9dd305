"""Evaluation inside a training run, and the histories its stability metrics read.

Every ``eval_every`` steps every rank embeds its share of the fakes; FD's statistics are reduced
across ranks, so every rank holds the same FD history. Rank 0 also keeps the losses of every
logging step and the fixed-noise samples of every sampling step. The histories travel in the
checkpoint, so a resumed run ends with the same numbers.
"""
import dataclasses
import math

import torch

from trainables.accel import unwrap
from trainables.data.render import images_to_pixels
from trainables.metrics.registry import COVERAGE_MODES, FD, VARIANCE_RATIO
from trainables.metrics.stability import DIVERGED, fd_divergence, stability_metrics
from trainables.step import LOSS_KEYS

EVAL_BATCH = 500
# Not measured during training: their cost grows as n^2 (KID: 100 subsets of 1,000 per side, as
# much as five FD evaluations), and evaluation must stay within 10 % of a run with FD every few
# dozen steps. ``dcgan-lab evaluate --run ID`` measures them on the finished generator.
NOT_IN_RUN = ("kid", "pr")


def resolve_evaluator(cfg):
    """(evaluator, note), or (None, reason) where evaluation is off or impossible."""
    from trainables.errors import UserError
    from trainables.metrics.fid import resolve_feature_extractor
    from trainables.metrics.frozen import FrozenEvaluatorError

    if cfg.eval_every == 0:
        return None, "evaluation off (eval_every=0)"
    try:
        return resolve_feature_extractor(cfg.feature_extractor, cfg.dataset, cfg.inception_weights or None,
                                         image_size=cfg.image_size, nc=cfg.nc)
    except UserError as err:
        if cfg.feature_extractor == "auto" and not isinstance(err, FrozenEvaluatorError):
            return None, f"evaluation off: {err}"
        raise


def prepare_evaluation(cfg):
    """In the driver, before any worker starts: decide the feature space once, train the evaluator
    and embed the reals. Returns ``cfg`` with ``feature_extractor`` pinned to the space chosen
    (``domain`` or ``inception``), so every trial of a sweep measures FD in the same one."""
    from trainables.metrics.evaluate import check_sample_count, reference_embedding

    evaluator, note = resolve_evaluator(cfg)
    if note:
        print(f"[dcgan-lab] {note}", flush=True)
    if evaluator is None:
        return cfg
    check_sample_count("eval_n", cfg.eval_n, evaluator)
    reference_embedding(evaluator, cfg.dataset, cfg.image_size, cfg.eval_n, EVAL_BATCH, cfg.data_root)
    return dataclasses.replace(cfg, feature_extractor="inception" if evaluator.name == "inception" else "domain")


class RunEvaluator:
    def __init__(self, cfg, device, rank=0, world=1):
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.evaluator, _ = resolve_evaluator(cfg)
        self.fd_key = FD.format(ev=self.evaluator.name) if self.enabled else None
        self.losses = {"step": [], **{k: [] for k in LOSS_KEYS}}
        self.samples = {"step": [], "features": [], "pixels": []}
        self.evals = {"step": [], "fd": [], "variance_ratio": [], "coverage_modes": []}

    @property
    def enabled(self):
        return self.evaluator is not None

    def due(self, step, n_steps):
        return self.enabled and (step % self.cfg.eval_every == 0 or step == n_steps)

    def record_losses(self, step, values):
        self.losses["step"].append(step)
        for k in LOSS_KEYS:
            self.losses[k].append(values[k])

    def record_samples(self, step, images):
        """The fixed-noise grid of ``step``: its pixels, and its features in the run's space."""
        self.samples["step"].append(step)
        self.samples["pixels"].append(images_to_pixels(images.detach()).cpu())
        if self.enabled:
            self.samples["features"].append(self.evaluator.to(self.device).features(images))

    def __call__(self, netG, step):
        """All ranks call this; returns the metrics dict (the same on every rank)."""
        from trainables.metrics.evaluate import evaluate_generator

        cfg = self.cfg
        metrics = [m for m in self.evaluator.metrics if m not in NOT_IN_RUN]
        results = evaluate_generator(unwrap(netG), nz=cfg.nz, z_dist=cfg.z_dist,
                                     dataset=cfg.dataset, image_size=cfg.image_size, n=cfg.eval_n,
                                     batch_size=EVAL_BATCH, evaluator=self.evaluator, metrics=metrics, seed=cfg.seed,
                                     device=self.device, data_root=cfg.data_root, rank=self.rank,
                                     world_size=self.world)
        e = self.evals
        e["step"].append(step)
        e["fd"].append(results[self.fd_key])
        e["variance_ratio"].append(results.get(VARIANCE_RATIO, math.nan))
        e["coverage_modes"].append(results.get(COVERAGE_MODES, math.nan))
        return {**results, "fd": results[self.fd_key]}

    def fd_diverged(self):
        """Has FD been rising for good (stability.fd_divergence) by the last evaluation?"""
        return fd_divergence(self.evals["step"], self.evals["fd"]) is not None

    def final_metrics(self, end):
        """(metrics, notes): fd_final (healthy runs), fd_best and the stability metrics of the run."""
        e = self.evals
        coverage = None if all(math.isnan(v) for v in e["coverage_modes"]) else e["coverage_modes"]
        metrics, notes = stability_metrics(self.losses, self.samples, {**e, "coverage_modes": coverage}, end)
        if e["fd"]:
            metrics["fd_best"] = min(e["fd"])
            if not metrics[DIVERGED]:
                metrics["fd_final"] = e["fd"][-1]
        return metrics, notes

    def state_dict(self):
        samples = {k: (torch.stack(v) if k != "step" and v else v) for k, v in self.samples.items()}
        return {"losses": self.losses, "samples": samples, "evals": self.evals}

    def load_state_dict(self, state):
        self.losses = {k: list(v) for k, v in state["losses"].items()}
        self.samples = {k: list(v) for k, v in state["samples"].items()}  # stacked tensors back to lists
        self.evals = {k: list(v) for k, v in state["evals"].items()}
