"""Stability of one training run: pure functions of its metric histories.

A history holds one value per evaluation, in order. The definitions (also in docs/metrics.md):

- ``sample_oscillation``: over the second half of the evaluations (t >= T // 2), the mean
  per-pixel absolute change of the fixed-noise sample grid between consecutive evaluations,
  in the images' [-1, 1] units. Near 0 once G settles; large when the same z keeps being drawn
  differently (the paper's "sample oscillation").
- ``fd_volatility``: std / mean (population std) of FD over the last ``last_k`` evaluations.
  Scale-free, so it compares across evaluators and data sets.
- ``loss_oscillation``: the std of ``loss_g`` inside every window of ``window`` consecutive
  evaluations (stride 1), averaged over the windows. A smooth trend contributes little; a
  loss that swings from one evaluation to the next contributes its swing.
- ``diverged``: any non-finite ``loss_g`` or ``loss_d``; or D wins for good: over the last
  ``patience`` evaluations D(G(z)) (``d_fake``, before D's step) stays below ``d_fake_max`` and
  ``loss_g`` ends higher than where the window starts.
- ``collapsed``: at the last evaluation the fakes' feature variance is below
  ``min_variance_ratio`` of the reals' (trace of the covariances in the evaluator's space), or,
  where attribute modes are counted, fewer than ``min_mode_share`` of them are covered.
"""
import math

import torch

from trainables.metrics.coverage import N_COMBOS

SAMPLE_OSCILLATION = "sample_oscillation"
FD_VOLATILITY = "fd_volatility"
LOSS_OSCILLATION = "loss_oscillation"
DIVERGED = "diverged"
COLLAPSED = "collapsed"

FD_LAST_K = 5                # evaluations behind fd_volatility
LOSS_WINDOW = 10             # evaluations per loss_oscillation window
D_FAKE_MAX = 0.01            # D(G(z)) below this: D rejects every fake with certainty
DIVERGE_PATIENCE = 5         # ... for this many evaluations in a row, at the end of the run
MIN_VARIANCE_RATIO = 0.1     # fakes spread less than 10 % of the reals: collapsed
MIN_MODE_SHARE = 0.5         # fewer than half the attribute combinations covered: collapsed


def sample_oscillation(grids):
    late = [torch.as_tensor(g, dtype=torch.float32) for g in grids[len(grids) // 2:]]
    if len(late) < 2:
        return math.nan
    return float(torch.stack([(b - a).abs().mean() for a, b in zip(late, late[1:])]).mean())


def fd_volatility(fd, last_k=FD_LAST_K):
    tail = torch.tensor(list(fd)[-last_k:], dtype=torch.float64)
    if len(tail) < 2:
        return math.nan
    return float(tail.std(unbiased=False) / tail.mean())


def loss_oscillation(loss_g, window=LOSS_WINDOW):
    loss = torch.tensor(list(loss_g), dtype=torch.float64)
    if len(loss) < 2:
        return math.nan
    windows = loss.unfold(0, min(window, len(loss)), 1)
    return float(windows.std(dim=1, unbiased=False).mean())


def diverged(loss_g, loss_d, d_fake, d_fake_max=D_FAKE_MAX, patience=DIVERGE_PATIENCE):
    loss_g, loss_d = list(loss_g), list(loss_d)
    if not all(math.isfinite(v) for v in loss_g + loss_d):
        return True
    tail_d, tail_g = list(d_fake)[-patience:], loss_g[-patience:]
    if len(tail_d) < patience or len(tail_g) < patience:
        return False
    return all(v < d_fake_max for v in tail_d) and tail_g[-1] > tail_g[0]


def collapsed(variance_ratio, coverage_modes=None, n_modes=N_COMBOS,
              min_variance_ratio=MIN_VARIANCE_RATIO, min_mode_share=MIN_MODE_SHARE):
    if list(variance_ratio)[-1] < min_variance_ratio:
        return True
    if coverage_modes is None:
        return False
    return list(coverage_modes)[-1] < min_mode_share * n_modes


def stability_metrics(*, grids, fd, loss_g, loss_d, d_fake, variance_ratio, coverage_modes=None, n_modes=N_COMBOS):
    """All stability metrics of a run, keyed by the constants above."""
    return {
        SAMPLE_OSCILLATION: sample_oscillation(grids),
        FD_VOLATILITY: fd_volatility(fd),
        LOSS_OSCILLATION: loss_oscillation(loss_g),
        DIVERGED: diverged(loss_g, loss_d, d_fake),
        COLLAPSED: collapsed(variance_ratio, coverage_modes, n_modes),
    }
