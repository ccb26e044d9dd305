"""Kernel distance (KID, Binkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel.

    k(x, y) = (x.y / d + 1)^3
    MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
              - 2 sum_{i,j} k(x_i, y_j) / m^2

averaged over ``n_subsets`` random subsets of ``m = min(subset_size, n_real, n_fake)`` points
per side (torch-fidelity's defaults: 100 subsets of 1000). Unlike FD it is unbiased in the
sample count, so small evaluations stay comparable with large ones.
"""
import torch

from trainables.metrics.registry import KID, register_metric

KID_SUBSET_SIZE = 1000
KID_SUBSETS = 100


def polynomial_kernel(x, y):
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x, y):
    """Unbiased MMD^2 between two equally sized float64 samples."""
    m = len(x)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / m ** 2)


def kid_features_to_metric(real, fake, subset_size=KID_SUBSET_SIZE, n_subsets=KID_SUBSETS, seed=0):
    """Mean MMD^2 over random subsets (the same subsets for a given seed)."""
    real, fake = real.to(torch.float64), fake.to(torch.float64)
    m = min(subset_size, len(real), len(fake))
    gen = torch.Generator().manual_seed(seed)
    mmds = torch.tensor([
        mmd2_unbiased(real[torch.randperm(len(real), generator=gen)[:m]],
                      fake[torch.randperm(len(fake), generator=gen)[:m]])
        for _ in range(n_subsets)
    ], dtype=torch.float64)
    return float(mmds.mean())


@register_metric("kid")
def kid(inputs):
    return {KID.format(ev=inputs.evaluator): kid_features_to_metric(inputs.real_features, inputs.fake_features)}
