"""Frechet distance (FD) between Gaussians fitted to features, accumulated in batches.

:class:`FeatureStats` keeps ``n``, the feature sum and the sum of outer products in float64, so
the fitted Gaussian does not depend on the batch size, and workers merge theirs by summing the
three (:func:`all_reduce_stats`). FD itself is

    ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)),

where the last trace is taken as ``sum(sqrt(eig(A S2 A)))`` with ``A = S1^(1/2)``: ``A S2 A`` is
symmetric positive semi-definite and has the eigenvalues of ``S1 S2``, so no complex ``sqrtm``
and no imaginary residue arise, and near-singular covariances only give eigenvalues near 0.
"""
import numpy as np
import torch
import torch.distributed as dist

from trainables.metrics.registry import FD, VARIANCE_RATIO, register_metric


class FeatureStats:
    """Running ``n``, ``sum`` and ``outer`` (sum of x x^T) of feature vectors, in float64."""

    def __init__(self, dim):
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    @property
    def dim(self):
        return self.sum.numel()

    def append(self, features):
        x = features.detach().reshape(len(features), -1).to("cpu", torch.float64)
        self.n += len(x)
        self.sum += x.sum(0)
        self.outer += x.T @ x

    def state_dict(self):
        return {"n": torch.tensor(self.n), "sum": self.sum, "outer": self.outer}

    @classmethod
    def from_state_dict(cls, state):
        stats = cls(state["sum"].numel())
        stats.n, stats.sum, stats.outer = int(state["n"]), state["sum"].clone(), state["outer"].clone()
        return stats


def all_reduce_stats(stats):
    """Sum ``n``, ``sum`` and ``outer`` over all workers, in place; a no-op without a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return stats
    # NCCL reduces only GPU tensors; gloo reduces CPU ones.
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    d = stats.dim
    flat = torch.cat([torch.tensor([float(stats.n)], dtype=torch.float64), stats.sum, stats.outer.reshape(-1)])
    flat = flat.to(device)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = flat.cpu()
    stats.n = int(round(flat[0].item()))
    stats.sum = flat[1:1 + d].clone()
    stats.outer = flat[1 + d:].reshape(d, d).clone()
    return stats


def stats_to_gaussian(stats):
    """Mean and unbiased covariance (float64 numpy) of the accumulated features."""
    assert stats.n >= 2, "a covariance needs at least two samples"
    mu = stats.sum / stats.n
    cov = (stats.outer - stats.n * torch.outer(mu, mu)) / (stats.n - 1)
    return mu.numpy(), cov.numpy()


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """FD between N(mu1, sigma1) and N(mu2, sigma2), computed in float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(_clip_null(np.linalg.eigvalsh((middle + middle.T) / 2))).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fd_stats_to_metric(stats_real, stats_fake):
    return frechet_distance(*stats_to_gaussian(stats_real), *stats_to_gaussian(stats_fake))


def _psd_sqrt(sigma):
    eig, vec = np.linalg.eigh((sigma + sigma.T) / 2)
    return (vec * np.sqrt(_clip_null(eig))) @ vec.T


def _clip_null(eig):
    # A singular covariance has eigenvalues that are 0 up to rounding, of either sign; their
    # square roots would add ~sqrt(rounding) each. Zero those below numpy's rank tolerance.
    tol = max(eig.max(), 0.0) * len(eig) * np.finfo(np.float64).eps
    return np.where(eig > tol, eig, 0.0)


@register_metric("fd")
def fd(inputs):
    return {FD.format(ev=inputs.evaluator): fd_stats_to_metric(inputs.real_stats, inputs.fake_stats)}


@register_metric("variance")
def variance(inputs):
    """Feature spread of the fakes relative to the reals: near 0 for a collapsed generator."""
    _, cov_real = stats_to_gaussian(inputs.real_stats)
    _, cov_fake = stats_to_gaussian(inputs.fake_stats)
    return {VARIANCE_RATIO: float(np.trace(cov_fake) / np.trace(cov_real))}
