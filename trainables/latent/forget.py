"""Forgetting to draw windows (paper 6.3.1). On generated bedrooms, the evaluator's window
segmentation stands in for the paper's hand-drawn boxes; a logistic regression on one of G's
hidden layers separates positions inside windows from random other positions; every map with a
positive weight is zeroed at every position and z drawn again.

The regression and the map selection use one set of z (the fit set); every outcome is measured
on other z (the held-out set), against two controls of as many maps: random ones, and ones
matched on activation energy. The unit of the held-out numbers is the held-out image.
"""
import math

import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.nn import functional as F

from trainables.errors import UserError
from trainables.latent.figures import grid, mask_overlay, side_by_side, titled
from trainables.latent.generator import hidden_features, render, render_dropped
from trainables.latent.report import Report
from trainables.latent.stats import SHARE, contrasts, mean_ci, paired, value
from trainables.models import sample_z

INSIDE = 0.5           # a feature position is "inside a window" when this much of its pixels are window
CONTROL_DRAWS = 5      # draws of each control, averaged per image
ENERGY_CANDIDATES = 3  # an energy-matched map is one of this many maps closest in energy, at random
HAS_WINDOW = 0.01      # an image "has a window" when more than this share of its pixels are window
FIGURE_N = 24
UNIT = "held-out images"
PRIMARY = "window: dropped vs energy-matched"


def window_cells(window_mask, side):
    """Fraction of window pixels under each of the ``side`` x ``side`` feature positions."""
    return F.adaptive_avg_pool2d(window_mask.float().unsqueeze(1), side).squeeze(1)


def training_positions(cells, generator):
    """Positives: positions inside a window. Negatives: as many random positions with no window
    pixel at all. Both as (sample, y, x) index tensors."""
    pos = (cells >= INSIDE).nonzero()
    free = (cells == 0).nonzero()
    neg = free[torch.randperm(len(free), generator=generator)[:len(pos)]]
    return pos, neg


def position_examples(features, pos, neg):
    """(x, y): the feature vectors at ``pos`` (label 1) and ``neg`` (label 0)."""
    f = features.permute(0, 2, 3, 1)              # (N, h, w, C)
    return torch.cat([f[tuple(pos.T)], f[tuple(neg.T)]]).numpy(), [1] * len(pos) + [0] * len(neg)


def fit_window_classifier(features, pos, neg, seed=0):
    """Logistic regression on standardised features; that rescales each weight by a positive
    factor, so the weights' signs (which pick the maps to drop) are those of a fit on the raw
    features. Returns (weights per map, the fitted model, its training accuracy)."""
    x, y = position_examples(features, pos, neg)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed)).fit(x, y)
    return torch.from_numpy(model[-1].coef_[0]).float(), model, float(model.score(x, y))


def maps_to_drop(coef):
    """The maps the paper drops: every one with a positive weight."""
    return (coef > 0).nonzero().flatten()


def activation_energy(features):
    """Mean squared activation of each map over samples and positions: (C,)."""
    return features.square().mean(dim=(0, 2, 3))


def random_maps(n_maps, k, generator):
    return torch.randperm(n_maps, generator=generator)[:k]


def energy_matched_maps(energy, chosen, generator, candidates=ENERGY_CANDIDATES):
    """As many maps as ``chosen``, with their activation energies: each chosen map (in random
    order) is replaced by one of the ``candidates`` free maps closest to it in log energy, picked
    at random. Maps outside ``chosen`` are used first; chosen maps only once those run out (a
    selection of over half the layer cannot be matched without overlap)."""
    log_e = energy.clamp_min(1e-20).log()
    free = torch.ones(len(energy), dtype=torch.bool)
    outside = torch.ones(len(energy), dtype=torch.bool)
    outside[chosen] = False
    picked = []
    for i in chosen[torch.randperm(len(chosen), generator=generator)]:
        pool = free & outside if (free & outside).any() else free
        gap = torch.where(pool, (log_e - log_e[i]).abs(), torch.tensor(math.inf))
        near = gap.argsort()[:min(candidates, int(pool.sum()))]
        j = near[torch.randint(len(near), (1,), generator=generator)].item()
        free[j] = False
        picked.append(j)
    return torch.tensor(picked, dtype=torch.long)


def per_image_fractions(evaluator, images):
    """Per image: the share of window pixels and of bed pixels, (N,) each."""
    pred = evaluator.predict(images)
    return {"window": pred["window_mask"].float().mean(dim=(1, 2)), "bed": pred["bed_mask"].float().mean(dim=(1, 2))}


def run_forget(netG, evaluator, *, nz, z_dist, n=150, heldout_n=150, layer=1, seed=0):
    # Two random streams: the fit (and so the maps chosen) does not depend on the held-out set.
    gen, gen_test = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1_000_003)
    z_fit = sample_z(n, nz, z_dist, generator=gen)
    z_test = sample_z(heldout_n, nz, z_dist, generator=gen_test)

    # (1) Fit the window classifier and pick the maps, on the fit set only.
    windows_fit = evaluator.predict(render(netG, z_fit))["window_mask"]
    features = hidden_features(netG, z_fit, layer)
    side, n_maps = features.shape[-1], features.shape[1]
    pos, neg = training_positions(window_cells(windows_fit, side), gen)
    if len(pos) == 0:
        raise UserError(f"the evaluator found no window in {n} samples of this generator, so there is nothing "
                        f"to forget (try --n larger or a better-trained generator)")
    coef, model, train_accuracy = fit_window_classifier(features, pos, neg, seed)
    drop = maps_to_drop(coef)
    if len(drop) == 0:
        raise UserError(f"layer={layer}: the window classifier gave no map a positive weight, so there is nothing "
                        f"to drop (try another --layer or a larger --n)")
    energy = activation_energy(features)

    # (2) Measure on the held-out set: the classifier, and each drop against its controls.
    before = render(netG, z_test)
    windows = evaluator.predict(before)["window_mask"]
    test_pos, test_neg = training_positions(window_cells(windows, side), gen_test)
    heldout_accuracy = (float(model.score(*position_examples(hidden_features(netG, z_test, layer), test_pos, test_neg)))
                        if len(test_pos) else None)
    after, zeroed = render_dropped(netG, z_test, drop, layer)
    control_sets = {"random": [random_maps(n_maps, len(drop), gen_test) for _ in range(CONTROL_DRAWS)],
                    "energy_matched": [energy_matched_maps(energy, drop, gen_test) for _ in range(CONTROL_DRAWS)]}
    conditions = {"before": per_image_fractions(evaluator, before), "dropped": per_image_fractions(evaluator, after)}
    first_control = {}
    for name, sets in control_sets.items():
        draws = []
        for maps in sets:
            images = render_dropped(netG, z_test, maps, layer)[0]
            first_control.setdefault(name, images)
            draws.append(per_image_fractions(evaluator, images))
        conditions[name] = {key: torch.stack([d[key] for d in draws]).mean(0) for key in ("window", "bed")}

    numbers = {
        "fit_samples": n, "heldout_samples": heldout_n, "seed": seed, "unit": UNIT,
        "layer": layer, "layer_maps": n_maps, "feature_side": side,
        "positives": len(pos), "negatives": len(neg), "samples_with_positive": int(pos[:, 0].unique().numel()),
        "heldout_positives": len(test_pos), "classifier_train_accuracy": train_accuracy,
        "classifier_heldout_accuracy": heldout_accuracy,
        "maps_dropped": len(drop), "dropped_maps": drop.tolist(), "share_of_layer_dropped": len(drop) / n_maps,
        "share_of_energy_dropped": (energy[drop].sum() / energy.sum()).item(),
        "dropped_max_abs": zeroed.abs().max().item() if zeroed.numel() else 0.0,
        "control_draws": CONTROL_DRAWS,
        "controls": {name: _control_numbers(sets, drop, energy) for name, sets in control_sets.items()},
        "conditions": {name: {"window_pixels": mean_ci(c["window"].tolist(), UNIT, bounds=SHARE),
                              "bed_pixels": mean_ci(c["bed"].tolist(), UNIT, bounds=SHARE),
                              "images_with_window": mean_ci((c["window"] > HAS_WINDOW).float().tolist(), UNIT,
                                                            bounds=SHARE)}
                       for name, c in conditions.items()},
    }
    c = conditions
    numbers["tests"] = contrasts({
        PRIMARY: paired(c["dropped"]["window"], c["energy_matched"]["window"], UNIT, SHARE),
        "window: dropped vs random": paired(c["dropped"]["window"], c["random"]["window"], UNIT, SHARE),
        "window: dropped vs before": paired(c["dropped"]["window"], c["before"]["window"], UNIT, SHARE),
        "bed: dropped vs before": paired(c["dropped"]["bed"], c["before"]["bed"], UNIT, SHARE),
        "bed: dropped vs energy-matched": paired(c["dropped"]["bed"], c["energy_matched"]["bed"], UNIT, SHARE),
    }, PRIMARY)
    k = FIGURE_N
    figure = side_by_side(titled(grid(before[:k], 6), "held-out z"),
                          titled(grid(mask_overlay(before[:k], windows[:k]), 6), "windows (evaluator)"),
                          titled(grid(after[:k], 6), f"{len(drop)} window maps dropped"),
                          titled(grid(first_control["energy_matched"][:k], 6), f"{len(drop)} energy-matched maps"),
                          titled(grid(first_control["random"][:k], 6), f"{len(drop)} random maps"))
    return Report(numbers, {"forget": figure}, {"z_fit": z_fit.numpy(), "z_heldout": z_test.numpy(),
                                                "coef": coef.numpy(), "energy": energy.numpy()})


def _control_numbers(sets, drop, energy):
    """How like the dropped maps each control is: its energy over theirs, its overlap with them."""
    chosen = set(drop.tolist())
    return {"energy_ratio": [(energy[m].sum() / energy[drop].sum()).item() for m in sets],
            "overlap_with_dropped": [len(chosen & set(m.tolist())) / max(len(m), 1) for m in sets]}


def headline(numbers):
    """The per-generator numbers summarised over generators."""
    out = {"share_of_layer_dropped": value(numbers["share_of_layer_dropped"], SHARE),
           "classifier_heldout_accuracy": value(numbers["classifier_heldout_accuracy"], SHARE)}
    for name, cond in numbers["conditions"].items():
        for key in ("window_pixels", "images_with_window", "bed_pixels"):
            out[f"{key}: {name}"] = cond[key]
    for name, test in numbers["tests"].items():
        out[f"effect: {name}"] = test["diff"]
    return out
