"""Stability of one training run: pure functions of its histories (definitions and reasons in
docs/metrics.md).

A run keeps three histories, each in step order:
- ``losses``: every ``log_every`` steps, ``step`` and the losses and D outputs (means over ranks);
- ``samples``: every ``sample_every`` steps, ``step`` and the fixed-noise grid as ``features``
  (K, n, d) in the run's feature space and ``pixels`` (K, n, ...);
- ``evals``: every ``eval_every`` steps, ``step``, ``fd``, ``variance_ratio`` and
  ``coverage_modes`` (None where the data set has no attributes).

``end`` is the run's last step: "the second half" is ``step >= end / 2``, "the last third"
``step >= 2 end / 3``. A metric whose window holds too few points is NaN, and says why in
``notes`` (one line each); it never falls back to a different quantity.
"""
import math

import numpy as np
import torch

from trainables.metrics.coverage import N_COMBOS

SAMPLE_OSCILLATION = "sample_oscillation"                 # per-sample component, evaluator features
SAMPLE_OSCILLATION_GLOBAL = "sample_oscillation_global"   # grid-mean component, evaluator features
SAMPLE_OSCILLATION_PIXELS = "sample_oscillation_pixels"   # per-sample component, pixels
FD_VOLATILITY = "fd_volatility"
LOSS_OSCILLATION = "loss_oscillation"
DIVERGED = "diverged"
DIVERGED_STEP = "diverged_step"
FD_LAST_BEFORE_DIVERGENCE = "fd_last_before_divergence"
MODE_COLLAPSE = "mode_collapse"
ATTRIBUTE_SKEW = "attribute_skew"

MIN_SAMPLES = 5              # fixed-noise grids in the second half behind sample_oscillation
MIN_FD_POINTS = 5            # evaluations in the last third behind fd_volatility
LOSS_WINDOW = 10             # log points per loss_oscillation window (second half)
DIVERGE_FD_RATIO = 2.0       # FD above this x its best so far ...
DIVERGE_STEPS = 300          # ... at every evaluation for this many steps: diverged (calibration: docs/metrics.md)
MIN_VARIANCE_RATIO = 0.1     # fakes spread less than 10 % of the reals: mode collapse
MIN_MODE_SHARE = 0.5         # fewer than half the attribute combinations covered: attribute skew


def _short(notes, key, why):
    if notes is not None:
        notes.append(f"{key}: {why}")
    return math.nan


def _from(steps, end, num, den):
    """Indices of the steps at or after ``num / den`` of the run (in integers: 800 is in the last
    third of 1,200)."""
    return [i for i, s in enumerate(steps) if den * s >= num * end]


def wasted_path(trajectory):
    """Path length minus net displacement of each of n trajectories, (K, n, d) -> (n,): 0 for
    motion in a straight line at any speed, about (K - 1) x the swing for back and forth."""
    path = (trajectory[1:] - trajectory[:-1]).norm(dim=-1).sum(0)
    return path - (trajectory[-1] - trajectory[0]).norm(dim=-1)


def oscillation_components(grids):
    """(per-sample, global) oscillation of a (K, n, ...) sequence of n samples: the wasted path
    per interval of the samples around their grid's mean, and of the grid's mean, both in units
    of the spread between different samples (RMS distance of a sample from its grid's mean)."""
    x = torch.as_tensor(grids).to(torch.float64).flatten(2)
    mean = x.mean(dim=1, keepdim=True)
    around = x - mean
    spread = around.pow(2).sum(-1).mean().sqrt()
    scale = max(float((len(x) - 1) * spread), 1e-12)  # identical, frozen samples: 0, not 0/0
    return float(wasted_path(around).mean()) / scale, float(wasted_path(mean).mean()) / scale


def sample_oscillation(steps, features, pixels, end, notes=None):
    """{per-sample, global, pixels} oscillation of the fixed-noise samples over the second half.
    ``features`` is empty when the run has no feature space (evaluation off)."""
    late = _from(steps, end, 1, 2)
    if len(late) < MIN_SAMPLES:
        why = f"{len(late)} fixed-noise grids in the second half of the run (needs {MIN_SAMPLES})"
        keys = (SAMPLE_OSCILLATION, SAMPLE_OSCILLATION_GLOBAL, SAMPLE_OSCILLATION_PIXELS)
        return {key: _short(notes, key, why) for key in keys}
    out = {SAMPLE_OSCILLATION_PIXELS: oscillation_components(torch.stack([pixels[i] for i in late]))[0]}
    if not len(features):
        why = "no feature space (evaluation off)"
        return {**out, **{key: _short(notes, key, why) for key in (SAMPLE_OSCILLATION, SAMPLE_OSCILLATION_GLOBAL)}}
    out[SAMPLE_OSCILLATION], out[SAMPLE_OSCILLATION_GLOBAL] = \
        oscillation_components(torch.stack([features[i] for i in late]))
    return out


def fd_volatility(steps, fd, end, notes=None):
    """RMS residual of FD around its monotone trend over the last third (the isotonic fit, falling
    or rising, whichever fits better), over the mean FD there."""
    from scipy.optimize import isotonic_regression

    idx = _from(steps, end, 2, 3)
    if len(idx) < MIN_FD_POINTS:
        return _short(notes, FD_VOLATILITY,
                      f"{len(idx)} FD evaluations in the last third of the run (needs {MIN_FD_POINTS})")
    y = np.array([fd[i] for i in idx], dtype=np.float64)
    rms = min(np.sqrt(np.mean((y - isotonic_regression(y, increasing=up).x) ** 2)) for up in (False, True))
    return float(rms / y.mean())


def loss_oscillation(steps, loss_g, end, window=LOSS_WINDOW, notes=None):
    """Mean std of the finite ``loss_g`` values inside each window of ``window`` consecutive log
    points (stride 1) over the second half: slow trends contribute little, swings their size."""
    late = [float(loss_g[i]) for i in _from(steps, end, 1, 2) if math.isfinite(loss_g[i])]
    if len(late) < window:
        return _short(notes, LOSS_OSCILLATION,
                      f"{len(late)} finite loss_g values in the second half of the run (needs {window})")
    windows = torch.tensor(late, dtype=torch.float64).unfold(0, window, 1)
    return float(windows.std(dim=1, unbiased=False).mean())


def first_non_finite(losses):
    """The first logged step at which any loss or D output is NaN or infinite, else None."""
    keys = [k for k in losses if k != "step"]
    for i, step in enumerate(losses["step"]):
        if not all(math.isfinite(losses[k][i]) for k in keys):
            return step
    return None


def fd_divergence(steps, fd, ratio=DIVERGE_FD_RATIO, patience=DIVERGE_STEPS):
    """(decided, onset): the first evaluation step at which FD has been above ``ratio`` x its best
    so far at every evaluation since ``onset``, ``patience`` or more steps earlier; None if never.
    Run on a prefix of the history it decides the same, so the loop can stop there."""
    best, onset = math.inf, None
    for step, value in zip(steps, fd):
        if value > ratio * best:
            onset = step if onset is None else onset
            if step - onset >= patience:
                return step, onset
        else:
            onset = None
        best = min(best, value)
    return None


def divergence(losses, evals, notes=None):
    """{diverged, diverged_step, fd_last_before_divergence}; the last two for diverged runs only."""
    nan_step = first_non_finite(losses)
    found = [d for d in ((nan_step, nan_step) if nan_step is not None else None,
                         fd_divergence(evals["step"], evals["fd"])) if d is not None]
    if not found:
        return {DIVERGED: 0.0}
    decided, onset = min(found)   # (decision step, where the divergence began): the earlier decision
    before = [v for s, v in zip(evals["step"], evals["fd"]) if s < onset]
    last = before[-1] if before else _short(notes, FD_LAST_BEFORE_DIVERGENCE, f"no FD evaluated before step {onset}")
    return {DIVERGED: 1.0, DIVERGED_STEP: float(decided), FD_LAST_BEFORE_DIVERGENCE: last}


def mode_collapse(variance_ratio, notes=None):
    """1 when the fakes' feature variance at the last evaluation is below MIN_VARIANCE_RATIO of the reals'."""
    if not variance_ratio:
        return _short(notes, MODE_COLLAPSE, "no evaluation")
    return float(variance_ratio[-1] < MIN_VARIANCE_RATIO)


def attribute_skew(coverage_modes, n_modes=N_COMBOS, notes=None):
    """1 when fewer than MIN_MODE_SHARE of the attribute combinations are covered at the last evaluation."""
    if not coverage_modes:
        return _short(notes, ATTRIBUTE_SKEW, "no attribute coverage measured (no evaluation, or no attributes)")
    return float(coverage_modes[-1] < MIN_MODE_SHARE * n_modes)


def stability_metrics(losses, samples, evals, end, n_modes=N_COMBOS):
    """(metrics keyed by the constants above, notes): every stability metric of a run."""
    notes = []
    metrics = {
        **sample_oscillation(samples["step"], samples["features"], samples["pixels"], end, notes),
        FD_VOLATILITY: fd_volatility(evals["step"], evals["fd"], end, notes),
        LOSS_OSCILLATION: loss_oscillation(losses["step"], losses["loss_g"], end, notes=notes),
        **divergence(losses, evals, notes),
        MODE_COLLAPSE: mode_collapse(evals["variance_ratio"], notes),
        ATTRIBUTE_SKEW: attribute_skew(evals.get("coverage_modes"), n_modes, notes),
    }
    return metrics, notes
