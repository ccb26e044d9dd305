"""Evaluate a generator: embed ``n`` fakes and a cached set of reals, then run the metrics.

Under torch.distributed every worker generates and embeds its share of the fakes (``n //
world_size``, the remainder to the low ranks); FD's statistics are summed across workers and
the features kept for KID and precision / recall are gathered, so every worker returns the
same dict. The reals' embedding is cached per data set, size, channels, evaluator and
``n_real``, and built the same distributed way the first time.
"""
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from trainables.atomic import save_atomic
from trainables.errors import UserError
from trainables.metrics.cache import cache_path, load_cached
from trainables.metrics.evaluators import get_evaluator, real_batches
from trainables.metrics.frechet import FeatureStats, all_reduce_stats
from trainables.metrics.registry import EvalInputs, get_metric
from trainables.models import Generator, sample_z, weights_init
from trainables.step import all_ranks, generate

MAX_KEPT_FEATURES = 10_000   # per side, for KID and precision / recall (their cost grows as n^2)


@dataclass
class Embedding:
    stats: FeatureStats      # of every image
    features: torch.Tensor   # of up to MAX_KEPT_FEATURES images ...
    labels: dict             # ... and their per-image labels or predictions

    def state_dict(self):
        return {"stats": self.stats.state_dict(), "features": self.features, "labels": self.labels}

    @classmethod
    def from_state_dict(cls, state):
        return cls(FeatureStats.from_state_dict(state["stats"]), state["features"], state["labels"])


def evaluate_generator(netG, *, nz, z_dist, dataset, image_size, n, batch_size, evaluator, n_real=None,
                       metrics=None, seed=0, device="cpu", data_root="./data", rank=0, world_size=1):
    """Metrics of ``netG`` against ``n_real`` (default ``n``) reals. Fakes are drawn like the
    logged sample grids (``trainables.step.generate``: batch-statistics BN, running stats untouched).

    ``evaluator``: from get_evaluator or resolve_feature_extractor; ``metrics``: names in the
    metric registry (default: the evaluator's own list); ``rank`` and ``world_size``: this worker
    among the DDP workers that call it together (all of them must). Returns ``{key: value}``.
    """
    n_real = n_real or n
    check_sample_count("n", n, evaluator)
    check_sample_count("n_real", n_real, evaluator)
    metric_fns = [get_metric(name) for name in (metrics or evaluator.metrics)]
    evaluator.to(device)

    # Embed the reals (cached) and this worker's share of the fakes.
    real = reference_embedding(evaluator, dataset, image_size, n_real, batch_size, data_root,
                               rank=rank, world_size=world_size, device=device)
    n_local = n // world_size + (rank < n % world_size)
    z_gen = torch.Generator().manual_seed(seed * 1_000_003 + rank)
    fake = _embed(evaluator, _fake_batches(netG, nz, z_dist, n_local, batch_size, z_gen, device), world_size)

    # Run the metrics.
    inputs = EvalInputs(evaluator.name, real.stats, fake.stats, real.features, fake.features, real.labels,
                        fake.labels)
    results = {}
    for fn in metric_fns:
        results.update(fn(inputs))
    return results


def check_sample_count(key, n, evaluator):
    if n < evaluator.dim + 1:
        raise UserError(f"{key}={n} is too small for fd_{evaluator.name}: the covariance of its {evaluator.dim}-dim "
                        f"features needs at least {evaluator.dim + 1} samples ({key} >= {evaluator.dim + 1})")


def reference_embedding(evaluator, dataset, image_size, n_real, batch_size=500, data_root="./data", *, rank=0,
                        world_size=1, device="cpu"):
    """The embedding of ``n_real`` training images; computed once, then read from the cache (every
    worker must find it there before any reads it, else they build it together)."""
    path = cache_path("reference", f"{dataset}-{image_size}px-nc{evaluator.nc}-{evaluator.key}-n{n_real}")
    state = load_cached(path)
    if all_ranks(state is not None, world_size, device):
        return Embedding.from_state_dict(state)
    batches = ((x, _per_image(y)) for x, y in real_batches(dataset, image_size, evaluator.nc, "train", n_real,
                                                           data_root, batch_size, rank, world_size))
    real = _embed(evaluator, batches, world_size, predict=False)
    if rank == 0:
        save_atomic(real.state_dict(), path)
    return real


def _fake_batches(netG, nz, z_dist, n, batch_size, z_gen, device):
    for start in range(0, n, batch_size):
        # z is drawn on the CPU so that the samples do not depend on the device.
        z = sample_z(min(batch_size, n - start), nz, z_dist, generator=z_gen).to(device)
        yield generate(netG, z), None


def _per_image(values):
    """Scalars and vectors per image as they are; masks as pixel fractions (10,000 masks at
    64x64 would not fit the cache); other maps (window boxes) are dropped."""
    out = {key: v for key, v in values.items() if v.dim() <= 2}
    masks = {key: v for key, v in values.items() if v.dim() > 2 and v.dtype == torch.bool}
    out.update({key: v.flatten(1).float().mean(1) for key, v in masks.items()})
    return out


def _embed(evaluator, batches, world_size, predict=True):
    """Accumulate features of ``(images, labels)`` batches; with ``predict`` the labels are the
    evaluator's predictions. Statistics are reduced and kept features gathered across workers."""
    stats, features, labels = FeatureStats(evaluator.dim), [], []
    keep = MAX_KEPT_FEATURES // world_size + 1
    kept = 0
    for images, y in batches:
        f = evaluator.features(images)
        stats.append(f)
        if kept < keep:
            features.append(f[:keep - kept])
            y = _per_image(evaluator.predict(images)) if predict else y
            labels.append({key: v[:keep - kept].cpu() for key, v in y.items()})
            kept += len(features[-1])
    features = torch.cat(features)
    labels = {key: torch.cat([y[key] for y in labels]) for key in labels[0]}
    if world_size > 1:
        all_reduce_stats(stats)
        gathered = [None] * world_size
        dist.all_gather_object(gathered, (features, labels))
        features = torch.cat([f for f, _ in gathered])
        labels = {key: torch.cat([y[key] for _, y in gathered]) for key in labels}
    return Embedding(stats, features[:MAX_KEPT_FEATURES], {k: v[:MAX_KEPT_FEATURES] for k, v in labels.items()})


def fd_speed(dataset="synthetic-faces", image_size=32, n=10_000, ngf=32, batch_size=500, metrics=("fd",),
             device="cpu", nc=3):
    """Seconds to evaluate a DCGAN G (random weights, ``ngf``) on ``n`` samples once the reference
    statistics are cached; for the benchmark."""
    torch.manual_seed(0)
    netG = Generator(nz=100, ngf=ngf, nc=nc, image_size=image_size).apply(weights_init).eval().to(device)
    evaluator = get_evaluator(dataset, image_size, nc=nc)
    reference_embedding(evaluator, dataset, image_size, n, batch_size)
    start = time.perf_counter()
    results = evaluate_generator(netG, nz=100, z_dist="normal", dataset=dataset, image_size=image_size, n=n,
                                 batch_size=batch_size, evaluator=evaluator, metrics=metrics, device=device)
    return {"seconds": time.perf_counter() - start, "n": n, **results}
