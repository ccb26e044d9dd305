"""Improved precision and recall (Kynkaanniemi et al. 2019) in a feature space.

Each sample set approximates its manifold by balls around its points whose radius is the
distance to the point's k-th nearest neighbour in the same set (k = 3, the paper's default).
Precision is the share of fakes inside the real manifold (quality); recall is the share of
reals inside the fake manifold (diversity).
"""
import torch

from trainables.metrics.registry import PRECISION, RECALL, register_metric

PR_K = 3
_ROWS = 1024          # rows of the distance matrix held at once: bounds memory at large n


def knn_radii(features, k=PR_K):
    """Distance from each point to its k-th nearest neighbour, itself excluded."""
    radii = [torch.cdist(chunk, features).kthvalue(k + 1, dim=1).values for chunk in features.split(_ROWS)]
    return torch.cat(radii)


def manifold_coverage(manifold, radii, queries):
    """Share of ``queries`` within ``radii[j]`` of some ``manifold[j]``."""
    inside = [(torch.cdist(chunk, manifold) <= radii).any(dim=1) for chunk in queries.split(_ROWS)]
    return float(torch.cat(inside).float().mean())


def pr_features_to_metric(real, fake, k=PR_K):
    real, fake = real.to(torch.float32), fake.to(torch.float32)
    precision = manifold_coverage(real, knn_radii(real, k), fake)
    recall = manifold_coverage(fake, knn_radii(fake, k), real)
    return precision, recall


@register_metric("pr")
def pr(inputs):
    precision, recall = pr_features_to_metric(inputs.real_features, inputs.fake_features)
    return {PRECISION: precision, RECALL: recall}
