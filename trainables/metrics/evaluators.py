"""Domain evaluators: for each labelled data set a small network trained once on its ground truth.

An evaluator's penultimate features define the data set's own FD (``fd_faces``,
``fd_bedrooms``, ``fd_mnist``, ...); its predictions feed the label-level metrics (attribute
coverage of faces, window and bed pixel fractions of bedrooms). It is trained on the train split
the first time it is asked for and cached by data set, image size, channels, EVALUATOR_VERSION
and seed; :func:`held_out_scores` measures it on the test split.
"""
import contextlib
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn import functional as F

from trainables.atomic import save_atomic
from trainables.data import DataRequest, build_dataset, get_entry
from trainables.data.render import images_to_pixels
from trainables.data.synthetic_faces import HAIR_COLORS, SKIN_TONES
from trainables.errors import UserError
from trainables.metrics.cache import cache_path, load_cached
from trainables.metrics.evaluator_nets import HeadNet, SegNet

EVALUATOR_VERSION = 1   # bump when a net, its training or its data change: old cache entries are ignored
BASE_METRICS = ("fd", "kid", "pr", "variance")
_LOAD_BATCH = 500


@dataclass(frozen=True)
class HeadKind:
    """How one label is learnt (``loss``) and reported (``predict``)."""

    loss: object
    predict: object


HEAD_KINDS = {
    "binary": HeadKind(lambda out, y: F.binary_cross_entropy_with_logits(out[:, 0], y.float()),
                       lambda out: torch.sigmoid(out[:, 0])),
    "multilabel": HeadKind(lambda out, y: F.binary_cross_entropy_with_logits(out, y.float()), torch.sigmoid),
    "class": HeadKind(lambda out, y: F.cross_entropy(out, y.long()), lambda out: out.argmax(1)),
    # Smooth L1 with a small beta: an L1 fit (what "mean absolute error" measures) with a smooth minimum.
    "regress": HeadKind(lambda out, y: F.smooth_l1_loss(out.reshape(y.shape), y.float(), beta=0.1),
                        lambda out: out[:, 0] if out.shape[1] == 1 else out),
}


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str                    # names the metrics: fd_<name>
    heads: tuple = ()            # (label key, kind, outputs): a HeadNet ...
    segments: tuple = ()         # ... or mask keys, classes 1.. of a SegNet (0: everything else)
    metrics: tuple = BASE_METRICS
    n_train: int = 12000         # training images (real data sets: a fixed random subset)
    epochs: int = 4
    batch_size: int = 128
    lr: float = 3e-3             # peak of the one-cycle schedule


EVALUATORS = {
    "synthetic-faces": EvaluatorSpec(
        "faces",
        heads=(("long_hair", "binary", 1), ("smiling", "binary", 1), ("glasses", "binary", 1), ("yaw", "regress", 1),
               ("skin_tone", "class", len(SKIN_TONES)), ("hair_color", "class", len(HAIR_COLORS)),
               ("background", "regress", 3)),
        metrics=BASE_METRICS + ("coverage",)),
    "synthetic-bedrooms": EvaluatorSpec(
        "bedrooms", segments=("window_mask", "bed_mask", "picture_mask"),  # the lamp is too small to learn fast
        metrics=BASE_METRICS + ("layout",), n_train=8000, epochs=3, batch_size=64),
    "mnist": EvaluatorSpec("mnist", heads=(("class", "class", 10),)),
    "fashion-mnist": EvaluatorSpec("fashion", heads=(("class", "class", 10),)),
    "cifar10": EvaluatorSpec("cifar10", heads=(("class", "class", 10),)),
    "celeba": EvaluatorSpec("celeba", heads=(("attr", "multilabel", 40),)),
}


class Evaluator:
    """A trained evaluator. Images in: float (N, nc, H, W) in [-1, 1], resized to its size if need be."""

    def __init__(self, spec, dataset, net, image_size, nc, seed, train_seconds):
        self.spec, self.dataset, self.net = spec, dataset, net.eval()
        self.image_size, self.nc, self.train_seconds = image_size, nc, train_seconds
        self.name, self.dim, self.metrics = spec.name, net.feature_dim, spec.metrics
        self.key = f"{spec.name}-v{EVALUATOR_VERSION}-seed{seed}"   # names its reference statistics

    def to(self, device):
        self.net.to(device)
        return self

    def _prepare(self, images):
        x = images.to(next(self.net.parameters()).device, torch.float32)
        assert x.shape[1] == self.nc, f"evaluator {self.name} takes {self.nc} channels, got {x.shape[1]}"
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)
        return x

    @torch.inference_mode()
    def features(self, images):
        """(N, dim) float32 features, on the CPU."""
        return self.net.features(self._prepare(images)).float().cpu()

    @torch.inference_mode()
    def predict(self, images):
        """Per label key: probabilities (binary, multilabel), class indices, values, or bool masks."""
        out = self.net(self._prepare(images))
        if self.spec.segments:
            classes = out.argmax(1).cpu()
            return {key: classes == i for i, key in enumerate(self.spec.segments, 1)}
        return {key: HEAD_KINDS[kind].predict(out[key]).cpu() for key, kind, _ in self.spec.heads}


def _cache_name(dataset, image_size, nc, seed):
    return f"{dataset}-{image_size}px-nc{nc}-v{EVALUATOR_VERSION}-seed{seed}"


def evaluator_cached(dataset, image_size, seed=0, nc=3):
    """Whether ``get_evaluator`` would load this evaluator rather than train it."""
    return dataset in EVALUATORS and os.path.exists(cache_path("evaluators", _cache_name(dataset, image_size, nc, seed)))


def get_evaluator(dataset, image_size, seed=0, nc=3, data_root="./data"):
    """The data set's evaluator, trained now (a few minutes) unless it is cached."""
    spec = evaluator_spec(dataset)
    state = _load_or_build(cache_path("evaluators", _cache_name(dataset, image_size, nc, seed)),
                           lambda: train_evaluator(spec, dataset, image_size, nc, seed, data_root))
    net = _build_net(spec, nc, image_size)
    net.load_state_dict(state["net"])
    return Evaluator(spec, dataset, net, image_size, nc, seed, float(state["train_seconds"]))


def evaluator_spec(dataset):
    entry = get_entry(dataset)   # an unknown data set fails here, listing the known ones
    if dataset not in EVALUATORS:
        why = "has no labels" if not entry.label_keys else "has no registered evaluator"
        raise UserError(f"dataset={dataset!r} {why}, so there is no domain evaluator to measure it with: use "
                        f"feature_extractor=inception with inception_weights=PATH, or one of the data sets "
                        f"{', '.join(sorted(EVALUATORS))}")
    return EVALUATORS[dataset]


def _load_or_build(path, build):
    """The cached state at ``path``; built and cached first if missing. Under torch.distributed
    rank 0 builds it while the others wait, then they load its file."""
    distributed = dist.is_available() and dist.is_initialized()
    if distributed and dist.get_rank() != 0:
        dist.barrier()
    state = load_cached(path)
    if state is None:
        state = build()
        save_atomic(state, path)
    if distributed and dist.get_rank() == 0:
        dist.barrier()
    return state


def _build_net(spec, nc, image_size):
    if spec.segments:
        return SegNet(nc, image_size, len(spec.segments) + 1)
    return HeadNet(nc, image_size, {key: n_out for key, _, n_out in spec.heads})


def real_batches(dataset, image_size, nc, split, n, data_root="./data", batch_size=_LOAD_BATCH, rank=0, world_size=1):
    """Batches ``(images in [-1, 1], labels)`` of a fixed set of ``n`` images of a split, or of
    this rank's share of it (every ``world_size``-th image). Real data sets use a seeded random
    subset, so the set does not depend on the files' order; synthetic ones the first ``n``."""
    request = DataRequest(dataset, image_size=image_size, nc=nc, data_root=data_root, split=split, dataset_size=n)
    data = build_dataset(request)
    n = min(n, len(data))
    order = torch.arange(n) if get_entry(dataset).synthetic else torch.randperm(
        len(data), generator=torch.Generator().manual_seed(0))[:n]
    share = torch.utils.data.Subset(data, order[rank::world_size].tolist())
    return torch.utils.data.DataLoader(share, batch_size=batch_size)


def _load_all(dataset, image_size, nc, split, n, data_root):
    # uint8 keeps the training set small in memory (64x64: 12 KB an image).
    images, labels = [], []
    for x, y in real_batches(dataset, image_size, nc, split, n, data_root):
        images.append(images_to_pixels(x))
        labels.append(y)
    return torch.cat(images), {key: torch.cat([y[key] for y in labels]) for key in labels[0]}


def _targets(spec, labels):
    if spec.segments:
        # The masks are disjoint (each pixel shows one object), so one class map holds them all.
        target = torch.zeros(labels[spec.segments[0]].shape, dtype=torch.long)
        for i, key in enumerate(spec.segments, 1):
            target[labels[key]] = i
        return target
    return {key: labels[key] for key, _, _ in spec.heads}


def _loss(spec, out, target):
    if spec.segments:
        return F.cross_entropy(out, target)
    return sum(HEAD_KINDS[kind].loss(out[key], target[key]) for key, kind, _ in spec.heads)


def train_evaluator(spec, dataset, image_size, nc, seed, data_root="./data"):
    """Train on the train split; return the state to cache: ``net`` weights and ``train_seconds``."""
    start = time.perf_counter()
    images, labels = _load_all(dataset, image_size, nc, "train", spec.n_train, data_root)
    targets = _targets(spec, labels)
    batch_size = min(spec.batch_size, len(images))
    steps_per_epoch = len(images) // batch_size
    with torch.random.fork_rng(devices=[]), _one_thread():
        torch.manual_seed(seed)
        net = _build_net(spec, nc, image_size).train()
        opt = torch.optim.Adam(net.parameters(), lr=spec.lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, spec.lr, total_steps=spec.epochs * steps_per_epoch)
        for _ in range(spec.epochs):
            perm = torch.randperm(len(images))
            for step in range(steps_per_epoch):
                idx = perm[step * batch_size:(step + 1) * batch_size]
                x = images[idx].float().div(127.5).sub(1)
                target = targets[idx] if spec.segments else {key: y[idx] for key, y in targets.items()}
                loss = _loss(spec, net(x), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return {"net": net.state_dict(), "train_seconds": time.perf_counter() - start}


@contextlib.contextmanager
def _one_thread():
    # On a shared machine two intra-op threads stall each other: training these small convs
    # ran up to 8x slower with 2 threads than with 1 while another process was busy, and at
    # best 1.7x faster. One thread bounds the worst case and makes the result machine-independent.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def held_out_scores(evaluator, n=2000, data_root="./data"):
    """Accuracy (binary, class, multilabel), mean absolute error (regress) or IoU (masks) per
    label on ``n`` images of the test split: ``{<key>_accuracy | <key>_mae | <key>_iou: value}``."""
    totals = {}
    for x, y in real_batches(evaluator.dataset, evaluator.image_size, evaluator.nc, "test", n, data_root):
        for score, (num, den) in _batch_scores(evaluator, evaluator.predict(x), y).items():
            old = totals.get(score, (0.0, 0.0))
            totals[score] = (old[0] + num, old[1] + den)
    return {score: num / den for score, (num, den) in totals.items()}


def _batch_scores(evaluator, pred, y):
    """Numerator and denominator of each score on one batch (IoU: intersection and union)."""
    if evaluator.spec.segments:
        return {f"{key}_iou": (float((pred[key] & y[key]).sum()), float((pred[key] | y[key]).sum()))
                for key in evaluator.spec.segments}
    scores = {}
    for key, kind, _ in evaluator.spec.heads:
        if kind == "regress":
            scores[f"{key}_mae"] = (float((pred[key] - y[key]).abs().sum()), y[key].numel())
            continue
        hits = pred[key] == y[key] if kind == "class" else (pred[key] > 0.5) == y[key].bool()
        scores[f"{key}_accuracy"] = (float(hits.sum()), hits.numel())
    return scores
