"""Domain evaluators: for each labelled data set a small network trained on its ground truth.

An evaluator's penultimate features define the data set's own FD (``fd_faces``,
``fd_bedrooms``, ``fd_fashion``, ...); its predictions feed the label-level metrics (attribute
coverage of faces, window and bed pixel fractions of bedrooms). Evaluators are frozen: trained
once by ``dcgan-lab evaluator train`` (:func:`make_version`), shipped with the project and loaded
only when their SHA-256 is the manifest's (``frozen.py``); :func:`held_out_scores` measures one
on the test split.
"""
import contextlib
import dataclasses
import datetime
import time
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from trainables.data import DataRequest, build_dataset, get_entry
from trainables.data.registry import resolve_data_root
from trainables.data.render import images_to_pixels
from trainables.data.synthetic_faces import HAIR_COLORS, SKIN_TONES
from trainables.errors import UserError
from trainables.metrics import frozen
from trainables.metrics.evaluator_nets import HeadNet, SegNet

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
    n_held_out: int = 2000       # test images its held-out scores are measured on


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
    "fashion-mnist": EvaluatorSpec("fashion", heads=(("class", "class", 10),), n_train=60000, epochs=10,
                                   n_held_out=10000),   # every training and every test image
    "cifar10": EvaluatorSpec("cifar10", heads=(("class", "class", 10),)),
    "celeba": EvaluatorSpec("celeba", heads=(("attr", "multilabel", 40),)),
}


class Evaluator:
    """A frozen evaluator. Images in: float (N, nc, H, W) in [-1, 1], resized to its size if need be.

    ``entry``: its manifest entry (file, sha256, version, training settings, held-out scores)."""

    def __init__(self, spec, dataset, net, image_size, nc, entry):
        self.spec, self.dataset, self.net, self.entry = spec, dataset, net.eval(), entry
        self.image_size, self.nc = image_size, nc
        self.name, self.dim, self.metrics = spec.name, net.feature_dim, spec.metrics
        self.sha256, self.version = entry["sha256"], entry["version"]
        self.train_seconds = entry["training"]["seconds"]
        self.key = f"{spec.name}-v{self.version}-{self.sha256[:12]}"   # names its reference statistics

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


def evaluator_shipped(dataset, image_size, nc=3):
    """Whether ``get_evaluator`` finds this evaluator's weights (their digest is checked on loading)."""
    return dataset in EVALUATORS and frozen.find_entry(dataset, image_size, nc) is not None


def get_evaluator(dataset, image_size, nc=3, folder=None):
    """The data set's frozen evaluator from ``folder`` (default: frozen.evaluator_dir()), its
    file's digest checked; one line saying how to make it where it is not there."""
    spec = evaluator_spec(dataset)
    folder = folder or frozen.evaluator_dir()
    entry = frozen.find_entry(dataset, image_size, nc, folder)
    if entry is None:
        raise frozen.not_shipped(dataset, image_size, nc, folder)
    return _evaluator_from(spec, dataset, image_size, nc, entry, frozen.load_verified(entry, folder))


def _evaluator_from(spec, dataset, image_size, nc, entry, state):
    net = _build_net(spec, nc, image_size)
    try:
        net.load_state_dict(state["net"])
    except RuntimeError as err:
        raise frozen.FrozenEvaluatorError(
            f"evaluator file {entry['file']} does not fit the {dataset} evaluator's net in this code "
            f"({str(err).splitlines()[0]}): make a new version with `dcgan-lab evaluator train`") from None
    return Evaluator(spec, dataset, net, image_size, nc, entry)


def evaluator_spec(dataset):
    entry = get_entry(dataset)   # an unknown data set fails here, listing the known ones
    if dataset not in EVALUATORS:
        why = "has no labels" if not entry.label_keys else "has no registered evaluator"
        raise UserError(f"dataset={dataset!r} {why}, so there is no domain evaluator to measure it with: use "
                        f"feature_extractor=inception with inception_weights=PATH, or one of the data sets "
                        f"{', '.join(sorted(EVALUATORS))}")
    return EVALUATORS[dataset]


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


def make_version(dataset, image_size, nc=3, *, folder=None, data_root="./data", seed=0, n_train=None, epochs=None,
                 threads=1):
    """Train the data set's evaluator, measure it on its held-out images and save it as a new
    version in ``folder`` (default: frozen.evaluator_dir()); returns its manifest entry.
    ``n_train`` and ``epochs`` override the spec's (a tiny evaluator for a test)."""
    spec = evaluator_spec(dataset)
    spec = dataclasses.replace(spec, n_train=n_train or spec.n_train, epochs=epochs or spec.epochs)
    trained = train_evaluator(spec, dataset, image_size, nc, seed, data_root, threads)
    training = {"n_train": trained["n_train"], "epochs": spec.epochs, "batch_size": spec.batch_size, "lr": spec.lr,
                "schedule": "Adam, one-cycle", "seed": seed, "threads": threads,
                "seconds": round(trained["train_seconds"], 1)}
    unsaved = {"file": None, "sha256": "unsaved", "version": 0, "training": training}
    evaluator = _evaluator_from(spec, dataset, image_size, nc, unsaved, trained)
    scores = held_out_scores(evaluator, spec.n_held_out, data_root)
    n_held_out = len(real_batches(dataset, image_size, nc, "test", spec.n_held_out, data_root).dataset)
    record = {"dataset": dataset, "image_size": image_size, "nc": nc, "name": spec.name,
              "net": type(evaluator.net).__name__, "feature_dim": evaluator.dim, "dtype": "float32",
              "training": training, "held_out": {"n": n_held_out, **{k: round(v, 4) for k, v in scores.items()}},
              "torch_version": torch.__version__, "date": datetime.date.today().isoformat(),
              **({} if get_entry(dataset).synthetic else {"data_root": resolve_data_root(dataset, data_root)})}
    return frozen.write_version(folder or frozen.evaluator_dir(), record, {"net": trained["net"]})


def train_evaluator(spec, dataset, image_size, nc, seed, data_root="./data", threads=1):
    """Train on the train split: ``{"net": weights, "train_seconds", "n_train": images used}``."""
    start = time.perf_counter()
    images, labels = _load_all(dataset, image_size, nc, "train", spec.n_train, data_root)
    targets = _targets(spec, labels)
    batch_size = min(spec.batch_size, len(images))
    steps_per_epoch = len(images) // batch_size
    with torch.random.fork_rng(devices=[]), _threads(threads):
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
    return {"net": net.state_dict(), "train_seconds": time.perf_counter() - start, "n_train": len(images)}


@contextlib.contextmanager
def _threads(n):
    # On a shared machine two intra-op threads stall each other: training these small convs
    # ran up to 8x slower with 2 threads than with 1 while another process was busy, and at
    # best 1.7x faster. One thread (the default) bounds the worst case.
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
