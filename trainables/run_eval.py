"""Evaluation inside a training run: quality every ``eval_every`` steps, stability at the end.

Every rank embeds its share of the fakes (the statistics are reduced across ranks); rank 0
keeps the history that the stability metrics read, and it travels in the checkpoint so a
resumed run ends with the same numbers.
"""
import math

import torch

from trainables.metrics.registry import COVERAGE_MODES, FD, VARIANCE_RATIO
from trainables.metrics.stability import stability_metrics
from trainables.step import generate

EVAL_BATCH = 500


def resolve_extractor(cfg):
    """(extractor, note), or (None, reason) where evaluation is off or impossible."""
    from orchestrator.errors import UserError
    from trainables.metrics.fid import resolve_feature_extractor

    if cfg.eval_every == 0:
        return None, "evaluation off (eval_every=0)"
    try:
        return resolve_feature_extractor(cfg.feature_extractor, cfg.dataset, cfg.inception_weights or None,
                                         image_size=cfg.image_size, nc=cfg.nc, data_root=cfg.data_root)
    except UserError as err:
        if cfg.feature_extractor == "auto":
            return None, f"evaluation off: {err}"
        raise


def prepare_evaluation(cfg):
    """Train the evaluator and embed the reals once, in the driver, before any worker needs them."""
    from trainables.metrics.evaluate import check_sample_count, reference_embedding

    extractor, note = resolve_extractor(cfg)
    if note:
        print(f"[dcgan-lab] {note}", flush=True)
    if extractor is not None:
        check_sample_count("eval_n", cfg.eval_n, extractor)
        reference_embedding(extractor, cfg.dataset, cfg.image_size, cfg.eval_n, EVAL_BATCH, cfg.data_root)
    return extractor


class RunEvaluator:
    def __init__(self, cfg, device):
        self.cfg, self.device = cfg, device
        self.extractor, _ = resolve_extractor(cfg)
        self.fd_key = FD.format(ev=self.extractor.name) if self.extractor is not None else None
        # Per evaluation, in order: what stability_metrics reads.
        self.history = {"step": [], "fd": [], "loss_g": [], "loss_d": [], "d_fake": [], "variance_ratio": [],
                        "coverage_modes": [], "grids": []}

    @property
    def enabled(self):
        return self.extractor is not None

    def due(self, step, n_steps):
        return self.enabled and (step % self.cfg.eval_every == 0 or step == n_steps)

    def __call__(self, netG, step, losses, fixed_noise):
        """All ranks call this; returns the metrics dict (the same on every rank)."""
        from trainables.metrics.evaluate import evaluate_generator

        cfg = self.cfg
        net = getattr(netG, "module", netG)
        results = evaluate_generator(net, nz=cfg.nz, z_dist=cfg.z_dist, dataset=cfg.dataset,
                                     image_size=cfg.image_size, n=cfg.eval_n, batch_size=EVAL_BATCH,
                                     evaluator=self.extractor, seed=cfg.seed, device=self.device,
                                     data_root=cfg.data_root)
        h = self.history
        h["step"].append(step)
        h["fd"].append(results[self.fd_key])
        for key in ("loss_g", "loss_d", "d_fake"):
            h[key].append(losses[key])
        h["variance_ratio"].append(results.get(VARIANCE_RATIO, math.nan))
        h["coverage_modes"].append(results.get(COVERAGE_MODES, math.nan))
        h["grids"].append(generate(netG, fixed_noise).detach().cpu().half())
        return {**results, "fd": results[self.fd_key]}

    def final_metrics(self):
        """fd_final, fd_best and the stability metrics, from the whole history."""
        h = self.history
        if not h["fd"]:
            return {}
        coverage = None if all(math.isnan(v) for v in h["coverage_modes"]) else h["coverage_modes"]
        stab = stability_metrics(grids=[g.float() for g in h["grids"]], fd=h["fd"], loss_g=h["loss_g"],
                                 loss_d=h["loss_d"], d_fake=h["d_fake"], variance_ratio=h["variance_ratio"],
                                 coverage_modes=coverage)
        return {"fd_final": h["fd"][-1], "fd_best": min(h["fd"]),
                **{k: float(v) for k, v in stab.items()}}

    def state_dict(self):
        return {k: (torch.stack(v) if k == "grids" and v else v) for k, v in self.history.items()}

    def load_state_dict(self, state):
        for k, v in state.items():
            self.history[k] = list(v)  # grids: a stacked tensor back to a list of grids
