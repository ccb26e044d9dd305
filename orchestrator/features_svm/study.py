"""The study: label draws, the three methods on each, intervals over draws, and the files written.

Each draw takes ``labels_per_class`` labelled images and ``val_per_class`` validation images per class,
distinct, at random from the training split (seed ``seed + draw``). On each draw: the run's D's
features through the SVM, a randomly initialised D's features (D's architecture, the paper's init,
seed ``seed + draw``) through the same SVM, and the supervised CNN of D's architecture on the same
labels. Test error on the whole test split. The draw is the unit: each method's mean error with a
t interval over draws, and the paired differences (one per draw) with a paired t interval.
"""
import csv
import json
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from orchestrator.features_svm.classifiers import cnn_errors, svm_errors
from orchestrator.features_svm.features import d_features, labelled_split
from trainables.errors import UserError
from trainables.models import build_discriminator, weights_init

METHODS = {   # result key: its row in the table
    "d_svm": "D's features + linear L2-SVM",
    "random_d_svm": "randomly initialised D's features + linear L2-SVM",
    "cnn": "supervised CNN of D's architecture",
}
CONTRASTS = (("d_svm", "cnn"), ("d_svm", "random_d_svm"))
LEVEL = 0.95


@dataclass(frozen=True)
class Design:
    labels_per_class: int = 100   # labelled training images per class in a draw
    val_per_class: int = 100      # validation images per class (C and the CNN's epochs are chosen on them)
    draws: int = 10               # random label draws: the unit of every interval
    cnn_epochs: int = 50          # the supervised CNN's most epochs
    seed: int = 0                 # draw d uses seed + d


def draw_indices(labels, design, draw):
    """``(labelled, validation)`` indices of one draw into the training split, sorted."""
    rng = np.random.default_rng(design.seed + draw)
    labelled, val = [], []
    for c in np.unique(labels):
        pick = rng.choice(np.flatnonzero(labels == c), design.labels_per_class + design.val_per_class, replace=False)
        labelled.append(pick[:design.labels_per_class])
        val.append(pick[design.labels_per_class:])
    return np.sort(np.concatenate(labelled)), np.sort(np.concatenate(val))


def check_design(labels, design):
    smallest = int(np.bincount(labels).min())
    if design.labels_per_class + design.val_per_class > smallest:
        raise UserError(f"labels-per-class={design.labels_per_class} is not allowed: with val-per-class="
                        f"{design.val_per_class} at most {smallest - design.val_per_class} (the smallest class of "
                        f"the training split holds {smallest} images)")


def random_discriminator(cfg, seed):
    torch.manual_seed(seed)
    netD = build_discriminator(cfg)
    netD.apply(weights_init)
    return netD


def run_draws(netD, cfg, design, log=print):
    """One record per draw (``{"draw", "seed", <method>: {"test_error", "val_error", "C" | "epochs"}}``) and
    the sizes: features per image, classes, training and test images."""
    images, labels = labelled_split(cfg, "train")
    test_images, test_labels = labelled_split(cfg, "test")
    check_design(labels, design)
    everything = np.arange(len(test_labels))
    test = (test_images.batch(everything, "cpu"), torch.from_numpy(test_labels))
    test_features = d_features(netD, test_images, everything)
    records = []
    for draw in range(design.draws):
        seed = design.seed + draw
        labelled, val = draw_indices(labels, design, draw)
        record = {"draw": draw, "seed": seed}
        randomD = random_discriminator(cfg, seed)
        for key, net, net_test in (("d_svm", netD, test_features),
                                   ("random_d_svm", randomD, d_features(randomD, test_images, everything))):
            record[key] = svm_errors((d_features(net, images, labelled), labels[labelled]),
                                     (d_features(net, images, val), labels[val]), (net_test, test_labels), seed)
        record["cnn"] = cnn_errors(cfg, _tensors(images, labels, labelled), _tensors(images, labels, val), test,
                                   design.cnn_epochs, seed)
        records.append(record)
        log(f"draw {draw + 1}/{design.draws}: " + ", ".join(f"{k} {record[k]['test_error']:.4f}" for k in METHODS))
    sizes = {"n_features": test_features.shape[1], "n_classes": len(np.unique(labels)), "n_train": len(labels),
             "n_test": len(test_labels)}
    return records, sizes


def _tensors(images, labels, indices):
    return images.batch(indices, "cpu"), torch.from_numpy(labels[indices])


def summarise(records):
    """Each method's mean test error with its t interval over draws, and the paired contrasts."""
    errors = {key: np.array([r[key]["test_error"] for r in records]) for key in METHODS}
    n = len(records)
    methods = {}
    for key, e in errors.items():
        low, high = stats.t.interval(LEVEL, n - 1, loc=e.mean(), scale=stats.sem(e))
        methods[key] = {"mean": e.mean(), "low": low, "high": high, "sd": e.std(ddof=1), "n": n}
    contrasts = {}
    for a, b in CONTRASTS:
        test = stats.ttest_1samp(errors[a] - errors[b], 0.0)
        ci = test.confidence_interval(LEVEL)
        contrasts[f"{a} - {b}"] = {"mean": float((errors[a] - errors[b]).mean()), "low": ci.low, "high": ci.high,
                                   "p": test.pvalue, "n": n}
    return _plain({"methods": methods, "contrasts": contrasts})


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return float(obj) if isinstance(obj, (np.floating, float)) else obj


def markdown(summary, records, about):
    """The table: each method's test error (%) with its interval, then the paired differences."""
    d = about["design"]
    n_labels = d["labels_per_class"] * about["n_classes"]
    lines = [f"# Section 5.2 on {about['dataset']}: D's features with {n_labels:,} labels", "",
             f"D: run `{about['run']}` ({about['dataset']}, {about['image_size']} px, ndf {about['ndf']}, "
             f"bn_placement {about['bn_placement']}, lr {about['lr']:g}, beta1 {about['beta1']}, seed {about['seed']}, "
             f"{about['max_steps']:,} steps, status {about['status']}). Features: every D conv layer max-pooled to "
             f"4x4, concatenated ({about['n_features']:,} an image), standardised on the labelled images.",
             f"{d['draws']} label draws of {d['labels_per_class']} labelled images per class from the "
             f"{about['n_train']:,} training images, and {d['val_per_class']} validation images per class from the "
             f"rest (the SVM's C and the CNN's epochs are chosen on them); test error on the {about['n_test']:,} "
             f"test images. Mean over draws with a {100 * LEVEL:g} % t interval (the draw is the unit, n = {d['draws']}).",
             "", f"| method | test error % | {100 * LEVEL:g} % interval | SD over draws | chosen on validation (median) |",
             "| --- | ---: | ---: | ---: | --- |"]
    for key, label in METHODS.items():
        m = summary["methods"][key]
        lines.append(f"| {label} | {100 * m['mean']:.2f} | {100 * m['low']:.2f} to {100 * m['high']:.2f} | "
                     f"{100 * m['sd']:.2f} | {_chosen(records, key)} |")
    lines += ["", "Paired by draw (the same labels in both):", "",
              f"| difference | points of test error | {100 * LEVEL:g} % interval | p (paired t) |",
              "| --- | ---: | ---: | ---: |"]
    for name, c in summary["contrasts"].items():
        a, b = name.split(" - ")
        lines.append(f"| {METHODS[a]} minus {METHODS[b]} | {100 * c['mean']:+.2f} | "
                     f"{100 * c['low']:+.2f} to {100 * c['high']:+.2f} | {c['p']:.2g} |")
    return "\n".join(lines) + "\n"


def _chosen(records, key):
    if "C" in records[0][key]:
        return f"C = {np.median([r[key]['C'] for r in records]):.1g}"
    return f"{np.median([r[key]['epochs'] for r in records]):g} epochs"


def write(out, records, about):
    """``features_svm.md``, ``features_svm.json`` and ``draws.csv`` (one row per draw and method) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(records)
    md = markdown(summary, records, about)
    (out / "features_svm.md").write_text(md)
    (out / "features_svm.json").write_text(json.dumps({**about, **summary, "draws": records}, indent=1) + "\n")
    with open(out / "draws.csv", "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["draw", "seed", "method", "test_error", "val_error", "C", "epochs"])
        for r in records:
            for key in METHODS:
                m = r[key]
                rows.writerow([r["draw"], r["seed"], key, m["test_error"], m["val_error"], m.get("C", ""),
                               m.get("epochs", "")])
    return md
