"""D as a feature extractor (paper 5.1): every hidden layer's maps max-pooled to a 4x4 grid,
flattened and concatenated; a linear L2-SVM on top, C chosen on a validation split, test
accuracy over several random draws of the labelled examples. Baselines on the same images: the
same D with random weights, and raw pixels. The unit of every interval and paired test is the
label draw: it is the spread of one D over which examples were labelled, not over training runs
(several generators give that). D may be probed on its own data set (in-domain) or on another
one of the same image size (transfer)."""
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch.nn import functional as F

from trainables.errors import UserError
from trainables.latent.figures import from_matplotlib, pyplot
from trainables.latent.generator import calibrate_bn
from trainables.latent.report import Report
from trainables.latent.stats import SHARE, contrasts, mean_ci, paired

GRID = 4                                   # each layer max-pooled to GRID x GRID
CS = (0.001, 0.01, 0.1, 1.0)               # the SVM's C: the starting grid, chosen on the validation split ...
C_RANGE = (1e-7, 1e3)                      # ... extended 10x at an edge while the edge is best, within this range
FEATURES = ("D", "D_random", "pixels")
UNIT = "label draws"
VAL_FRACTION = 0.2
BATCH = 500


@torch.no_grad()
def d_features(netD, images, batch_size=BATCH):
    """(N, 16 * sum of hidden channels): each hidden layer max-pooled to 4x4, flattened, concatenated."""
    taps, grabbed = netD.hidden_layers(), []
    hooks = [t.register_forward_hook(lambda _m, _i, out: grabbed.append(F.adaptive_max_pool2d(out, GRID).flatten(1)))
             for t in taps]
    try:
        out = []
        for i in range(0, len(images), batch_size):
            grabbed.clear()
            netD(images[i:i + batch_size])
            out.append(torch.cat(grabbed, 1))
        return torch.cat(out)
    finally:
        for h in hooks:
            h.remove()


def discrete_labels(labels):
    """The label keys usable as classes: one bool or integer value per image."""
    return [key for key, y in labels.items() if y.dim() == 1 and (y.dtype == torch.bool or not y.is_floating_point())]


def draw_per_class(y, per_class, rng):
    """Indices of up to ``per_class`` random examples of each class."""
    idx = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.concatenate(idx)


def choose_c(validation_accuracy, cs=CS):
    """The C with the best validation accuracy, the grid extended by factors of 10 while the best
    sits at its edge. Ties go to the smallest interior C. Returns (C, interior, grid tried)."""
    val = {c: validation_accuracy(c) for c in cs}
    while True:
        grid, best = sorted(val), _best(val)
        if best == grid[0] and grid[0] / 10 >= C_RANGE[0] * (1 - 1e-9):
            val[grid[0] / 10] = validation_accuracy(grid[0] / 10)
        elif best == grid[-1] and grid[-1] * 10 <= C_RANGE[1] * (1 + 1e-9):
            val[grid[-1] * 10] = validation_accuracy(grid[-1] * 10)
        else:
            return best, best not in (grid[0], grid[-1]), grid


def _best(val):
    grid = sorted(val)
    top = max(val.values())
    tied = [c for c in grid if val[c] == top]
    return ([c for c in tied if c not in (grid[0], grid[-1])] or tied)[0]


def svm_accuracy(x_train, y_train, x_test, y_test, seed=0, cs=CS):
    """C chosen on a stratified validation split of the training examples (:func:`choose_c`),
    refit on all of them. Returns (test accuracy, C, C interior to its grid, fits that stopped at
    max_iter before converging)."""
    fit_x, val_x, fit_y, val_y = train_test_split(x_train, y_train, test_size=VAL_FRACTION, random_state=seed,
                                                  stratify=y_train)

    def model(c):
        return make_pipeline(StandardScaler(), LinearSVC(C=c, dual="auto", max_iter=5000, random_state=seed))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        best, interior, _ = choose_c(lambda c: model(c).fit(fit_x, fit_y).score(val_x, val_y), cs)
        accuracy = float(model(best).fit(x_train, y_train).score(x_test, y_test))
    return accuracy, best, interior, sum(issubclass(w.category, ConvergenceWarning) for w in caught)


def run_represent(netD, random_D, data, label_keys, *, per_class=100, draws=10, seed=0):
    """``data``: {"train": (images, labels), "test": (images, labels)}; the training images
    also calibrate both D's BatchNorm statistics (no labels involved)."""
    x_train, labels_train = data["train"]
    x_test, labels_test = data["test"]
    usable = discrete_labels(labels_train)
    for key in label_keys:
        if key not in usable:
            raise UserError(f"labels={key!r} is not a class label of this data set; allowed: {', '.join(usable) or 'none'}")
    calib = x_train[:1024]
    features = {}
    for name, net in (("D", netD), ("D_random", random_D)):
        net = calibrate_bn(net, calib)
        features[name] = (d_features(net, x_train).numpy(), d_features(net, x_test).numpy())
    features["pixels"] = (x_train.flatten(1).numpy(), x_test.flatten(1).numpy())
    numbers = {"per_class": per_class, "draws": draws, "seed": seed, "unit": UNIT, "cs_start": list(CS),
               "c_range": list(C_RANGE),
               "train_pool": len(x_train), "test": len(x_test),
               "feature_size": {name: f[0].shape[1] for name, f in features.items()}, "tasks": {}}
    tests = {}
    for key in label_keys:
        y_train, y_test = labels_train[key].long().numpy(), labels_test[key].long().numpy()
        task = {"classes": int(len(np.unique(y_train))),
                "majority_rate": float(np.bincount(y_test).max() / len(y_test))}
        for name, (f_train, f_test) in features.items():
            accs, chosen, interior, unconverged = [], [], 0, 0
            for d in range(draws):
                idx = draw_per_class(y_train, per_class, np.random.default_rng(seed + d))
                acc, c, inside, n_bad = svm_accuracy(f_train[idx], y_train[idx], f_test, y_test, seed=seed + d)
                accs.append(acc)
                chosen.append(c)
                interior += inside
                unconverged += n_bad
            task[name] = {**mean_ci(accs, UNIT, bounds=SHARE), "accuracies": accs, "C": chosen,
                          "C_interior": interior, "unconverged_fits": unconverged}
        numbers["tasks"][key] = task
        for other in FEATURES[1:]:
            tests[f"{key}: D vs {other}"] = paired(task["D"]["accuracies"], task[other]["accuracies"], UNIT, SHARE)
    numbers["tests"] = contrasts(tests, None)
    return Report(numbers, {"represent": _chart(numbers)})


def headline(numbers):
    """The per-generator numbers summarised over generators."""
    out = {f"{key}: {name}": task[name] for key, task in numbers["tasks"].items() for name in FEATURES}
    out.update({f"effect: {name}": t["diff"] for name, t in numbers["tests"].items()})
    return out


def _chart(numbers):
    tasks = list(numbers["tasks"])
    names = FEATURES
    fig, ax = pyplot().subplots(figsize=(1.2 + 1.3 * len(tasks), 3), dpi=100)
    for j, name in enumerate(names):
        means = [numbers["tasks"][t][name]["mean"] for t in tasks]
        cis = [numbers["tasks"][t][name]["ci"] or [m, m] for t, m in zip(tasks, means)]
        err = np.array([[m - lo for m, (lo, _) in zip(means, cis)], [hi - m for m, (_, hi) in zip(means, cis)]])
        ax.bar(np.arange(len(tasks)) + (j - 1) * 0.27, means, 0.27, yerr=err, label=name, capsize=2)
    ax.scatter(np.arange(len(tasks)), [numbers["tasks"][t]["majority_rate"] for t in tasks], marker="_", s=300,
               color="black", label="majority class", zorder=3)
    ax.set_xticks(np.arange(len(tasks)), tasks, fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"linear SVM, {numbers['per_class']} labels per class; 95 % t interval over "
                 f"{numbers['draws']} label draws", fontsize=9)
    fig.tight_layout()
    return from_matplotlib(fig)
