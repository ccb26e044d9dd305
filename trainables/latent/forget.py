"""Forgetting to draw windows (paper 6.3.1). On generated bedrooms, the evaluator's window
segmentation stands in for the paper's hand-drawn boxes; a logistic regression on G's last
hidden layer separates positions inside windows from random other positions; every map with a
positive weight is zeroed at every position and the same z drawn again. A control zeroes as
many maps chosen at random."""
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.nn import functional as F

from orchestrator.errors import UserError
from trainables.latent.figures import grid, mask_overlay, side_by_side, titled
from trainables.latent.generator import hidden_features, render, render_dropped
from trainables.latent.report import Report
from trainables.models import sample_z

INSIDE = 0.5           # a feature position is "inside a window" when this much of its pixels are window
CONTROL_DRAWS = 5      # random-map controls, averaged
FIGURE_N = 24


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


def fit_window_classifier(features, pos, neg, seed=0):
    """Logistic regression on the feature vectors at ``pos`` (label 1) and ``neg`` (label 0).
    Features are standardised first; that rescales each weight by a positive factor, so the
    weights' signs (which pick the maps to drop) are those of a fit on the raw features."""
    f = features.permute(0, 2, 3, 1)              # (N, h, w, C)
    x = torch.cat([f[tuple(pos.T)], f[tuple(neg.T)]]).numpy()
    y = [1] * len(pos) + [0] * len(neg)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed)).fit(x, y)
    return torch.from_numpy(model[-1].coef_[0]).float(), float(model.score(x, y))


def maps_to_drop(coef):
    """The maps the paper drops: every one with a positive weight."""
    return (coef > 0).nonzero().flatten()


def object_fractions(evaluator, images):
    pred = evaluator.predict(images)
    window = pred["window_mask"].float()
    return {"window_pixels": window.mean().item(), "bed_pixels": pred["bed_mask"].float().mean().item(),
            "images_with_window": (window.mean(dim=(1, 2)) > 0.01).float().mean().item()}


def run_forget(netG, evaluator, nz, z_dist, n=150, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = sample_z(n, nz, z_dist, generator=gen)
    before = render(netG, z)
    windows = evaluator.predict(before)["window_mask"]
    features = hidden_features(netG, z)
    pos, neg = training_positions(window_cells(windows, features.shape[-1]), gen)
    if len(pos) == 0:
        raise UserError(f"the evaluator found no window in {n} samples of this generator, so there is nothing "
                        f"to forget (try --n larger or a better-trained generator)")
    coef, accuracy = fit_window_classifier(features, pos, neg, seed)
    drop = maps_to_drop(coef)
    after, zeroed = render_dropped(netG, z, drop)
    controls = []
    for _ in range(CONTROL_DRAWS):
        random_maps = torch.randperm(len(coef), generator=gen)[:len(drop)]
        controls.append(render_dropped(netG, z, random_maps)[0])
    control_scores = [object_fractions(evaluator, c) for c in controls]
    numbers = {
        "samples": n, "seed": seed, "layer_maps": len(coef), "feature_side": features.shape[-1],
        "positives": len(pos), "negatives": len(neg), "samples_with_positive": int(pos[:, 0].unique().numel()),
        "classifier_train_accuracy": accuracy, "maps_dropped": len(drop), "dropped_maps": drop.tolist(),
        "dropped_max_abs": zeroed.abs().max().item() if zeroed.numel() else 0.0,
        "before": object_fractions(evaluator, before), "after": object_fractions(evaluator, after),
        "control": {key: sum(s[key] for s in control_scores) / CONTROL_DRAWS for key in control_scores[0]},
        "control_draws": CONTROL_DRAWS,
    }
    k = FIGURE_N
    figure = side_by_side(titled(grid(before[:k], 6), "before"),
                          titled(grid(mask_overlay(before[:k], windows[:k]), 6), "windows (evaluator)"),
                          titled(grid(after[:k], 6), f"{len(drop)} window maps dropped"),
                          titled(grid(controls[0][:k], 6), f"{len(drop)} random maps dropped"))
    return Report(numbers, {"forget": figure}, {"z": z.numpy(), "coef": coef.numpy()})
