"""Memorisation check: the nearest training images of generated samples, over the whole
training set, in evaluator features and in pixels. A generator that copies its training set puts
its samples much closer to a training image than held-out real images are (the real-to-real
baseline); one that does not gives the two distributions of nearest distances the same shape.
Intervals resample the generated and the held-out samples (percentile bootstrap, scipy)."""
import numpy as np
import torch
from scipy import stats

from trainables.latent.figures import from_matplotlib, grid, pyplot, side_by_side, titled
from trainables.latent.generator import render
from trainables.latent.report import Report
from trainables.latent.stats import SHARE, mean_ci
from trainables.models import sample_z

SHOW = 8              # rows of the figure: the closest samples, then random ones
SHOW_NEIGHBOURS = 3
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75)
BOOTSTRAP_RESAMPLES = 2000
UNIT = "generated and held-out samples (both resampled)"


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


def _below(q):
    """Share of generated distances below the held-out distances' ``q`` quantile (vectorised)."""
    def statistic(fake, real, axis=-1):
        return np.mean(fake < np.quantile(real, q, axis=axis, keepdims=True), axis=axis)
    return statistic


def _median_ratio(fake, real, axis=-1):
    return np.median(fake, axis=axis) / np.median(real, axis=axis)


def bootstrapped(statistic, d_fake, d_real, seed, bounds=None):
    """The statistic of (generated, held-out) distances with its percentile bootstrap interval."""
    data = (d_fake.numpy().astype(np.float64), d_real.numpy().astype(np.float64))
    res = stats.bootstrap(data, statistic, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                          rng=np.random.default_rng(seed), batch=200)
    ci = res.confidence_interval
    return {"unit": UNIT, "mean": float(statistic(*data)), "ci": [float(ci.low), float(ci.high)], "bounds": bounds,
            "interval": f"percentile bootstrap, {BOOTSTRAP_RESAMPLES} resamples"}


def share_below(q, d_fake, d_real, seed):
    """Share of generated samples closer to a training image than all but ``q`` of held-out reals
    are. When none (or all) are, every resample agrees and the bootstrap interval has zero width:
    the exact binomial interval over the generated samples is given instead."""
    below = d_fake < torch.quantile(d_real, q)
    if below.all() or not below.any():
        return mean_ci(below.float().tolist(), "generated samples", SHARE)
    return bootstrapped(_below(q), d_fake, d_real, seed, list(SHARE))


def compare(d_fake, d_real, seed):
    """Nearest-distance numbers of generated samples against held-out reals, in one space."""
    return {"generated_to_train": summary(d_fake), "heldout_to_train": summary(d_real),
            "median_ratio": bootstrapped(_median_ratio, d_fake, d_real, seed),
            "generated_below_heldout_q01": share_below(0.01, d_fake, d_real, seed),
            "generated_below_heldout_q05": share_below(0.05, d_fake, d_real, seed)}


SPACES = {"evaluator": lambda evaluator, x: evaluator.features(x), "pixels": lambda _evaluator, x: x.flatten(1)}


def real_references(evaluator, train_images, heldout_images):
    """Per space: the training set's embeddings, and each held-out real image's distance to its
    nearest training image (the real-to-real baseline). The same for every generator of a data
    set, so computed once for all of them."""
    refs = {}
    for space, embed in SPACES.items():
        f_train = embed(evaluator, train_images)
        refs[space] = f_train, nearest(embed(evaluator, heldout_images), f_train)[0][:, 0]
    return refs


def run_neighbours(netG, evaluator, *, nz, z_dist, train_images, references, n=1000, seed=0):
    """Generated -> train against held-out real -> train nearest distances, in each space
    (``references``: :func:`real_references` of ``train_images`` and the held-out images)."""
    gen = torch.Generator().manual_seed(seed)
    fakes = render(netG, sample_z(n, nz, z_dist, generator=gen))
    d_heldout = references["evaluator"][1]
    numbers = {"generated": n, "train_images": len(train_images), "heldout_images": len(d_heldout),
               "seed": seed, "evaluator": evaluator.name, "unit": UNIT}
    images, arrays, distances = {}, {}, {}
    random_rows = torch.randperm(n, generator=gen)[:SHOW]
    for space, embed in SPACES.items():
        f_train, d_real = references[space]
        d_fake, i_fake = nearest(embed(evaluator, fakes), f_train, SHOW_NEIGHBOURS)
        numbers[space] = compare(d_fake[:, 0], d_real, seed)
        suffix = "" if space == "evaluator" else f"_{space}"
        images[f"neighbours{suffix}"] = _neighbour_grid(fakes, train_images, d_fake[:, 0], i_fake, random_rows, space)
        distances[space] = d_fake[:, 0], d_real
        arrays[f"generated_to_train{suffix}"] = d_fake[:, 0].numpy()
        arrays[f"heldout_to_train{suffix}"] = d_real.numpy()
    images["neighbours_hist"] = _histogram(distances)
    return Report(numbers, images, arrays)


def headline(numbers):
    """The per-generator numbers summarised over generators."""
    return {f"{space}: {key}": numbers[space][key] for space in SPACES
            for key in ("median_ratio", "generated_below_heldout_q01", "generated_below_heldout_q05")}


def _neighbour_grid(fakes, train_images, d_fake, i_fake, random_rows, space):
    panels = []
    for title, rows in (("closest generated samples", d_fake.argsort()[:SHOW]), ("random generated samples", random_rows)):
        tiles = torch.cat([torch.cat([fakes[r:r + 1], train_images[i_fake[r]]]) for r in rows])
        panels.append(titled(grid(tiles, 1 + SHOW_NEIGHBOURS), f"{title}: sample | 3 nearest training images ({space})"))
    return side_by_side(*panels)


def _histogram(distances):
    fig, axes = pyplot().subplots(1, len(distances), figsize=(4.5 * len(distances), 2.8), dpi=100)
    for ax, (space, (d_fake, d_real)) in zip(np.atleast_1d(axes), distances.items()):
        bins = np.linspace(0, float(max(d_fake.max(), d_real.max())), 40)
        ax.hist(d_real.numpy(), bins, alpha=0.6, density=True, label="held-out real -> train")
        ax.hist(d_fake.numpy(), bins, alpha=0.6, density=True, label="generated -> train")
        ax.set_xlabel(f"distance to the nearest training image ({space})", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return from_matplotlib(fig)
