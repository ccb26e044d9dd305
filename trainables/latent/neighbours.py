"""Memorisation check: the nearest training images of generated samples, in evaluator features.
A generator that copies its training set puts its samples much closer to a training image than
held-out real images are; one that does not gives the two distributions of nearest distances
the same shape."""
import numpy as np
import torch

from trainables.latent.figures import from_matplotlib, grid, pyplot, side_by_side, titled
from trainables.latent.generator import render
from trainables.latent.report import Report
from trainables.models import sample_z

SHOW = 8              # rows of the figure: the closest samples, then random ones
SHOW_NEIGHBOURS = 3
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75)


def nearest(queries, references, k=1, chunk=1000):
    """(distances, indices), each (N, k): the ``k`` nearest references of each query (L2)."""
    dists, idx = [], []
    for i in range(0, len(queries), chunk):
        d = torch.cdist(queries[i:i + chunk], references)
        v, j = d.topk(k, dim=1, largest=False)
        dists.append(v)
        idx.append(j)
    return torch.cat(dists), torch.cat(idx)


def summary(d):
    q = torch.quantile(d, torch.tensor(QUANTILES))
    return {"mean": d.mean().item(), **{f"q{int(p * 100):02d}": v.item() for p, v in zip(QUANTILES, q)}}


def run_neighbours(netG, evaluator, nz, z_dist, train_images, heldout_images, n=1000, seed=0):
    """Generated -> train against held-out real -> train nearest distances."""
    gen = torch.Generator().manual_seed(seed)
    fakes = render(netG, sample_z(n, nz, z_dist, generator=gen))
    f_train = evaluator.features(train_images)
    d_fake, i_fake = nearest(evaluator.features(fakes), f_train, SHOW_NEIGHBOURS)
    d_real, _ = nearest(evaluator.features(heldout_images), f_train)
    d_fake1, d_real1 = d_fake[:, 0], d_real[:, 0]
    numbers = {
        "generated": n, "train_images": len(train_images), "heldout_images": len(heldout_images), "seed": seed,
        "evaluator": evaluator.name,
        "generated_to_train": summary(d_fake1), "heldout_to_train": summary(d_real1),
        "median_ratio": (d_fake1.median() / d_real1.median()).item(),
        # Generated samples closer to a training image than all but 1% (5%) of held-out reals are.
        "generated_below_heldout_q01": (d_fake1 < torch.quantile(d_real1, 0.01)).float().mean().item(),
        "generated_below_heldout_q05": (d_fake1 < torch.quantile(d_real1, 0.05)).float().mean().item(),
    }
    closest = d_fake1.argsort()[:SHOW]
    random_rows = torch.randperm(n, generator=gen)[:SHOW]
    panels = []
    for title, rows in (("closest generated samples", closest), ("random generated samples", random_rows)):
        tiles = torch.cat([torch.cat([fakes[r:r + 1], train_images[i_fake[r]]]) for r in rows])
        panels.append(titled(grid(tiles, 1 + SHOW_NEIGHBOURS), f"{title}: sample | 3 nearest training images"))
    return Report(numbers, {"neighbours": side_by_side(*panels), "neighbours_hist": _histogram(d_fake1, d_real1)},
                  {"generated_to_train": d_fake1.numpy(), "heldout_to_train": d_real1.numpy()})


def _histogram(d_fake, d_real):
    fig, ax = pyplot().subplots(figsize=(4.5, 2.8), dpi=100)
    bins = np.linspace(0, float(max(d_fake.max(), d_real.max())), 40)
    ax.hist(d_real.numpy(), bins, alpha=0.6, density=True, label="held-out real -> train")
    ax.hist(d_fake.numpy(), bins, alpha=0.6, density=True, label="generated -> train")
    ax.set_xlabel("distance to the nearest training image (evaluator features)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return from_matplotlib(fig)
