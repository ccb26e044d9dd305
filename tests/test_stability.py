"""Stability metrics on constructed runs: a stable one, an oscillating one, a diverging one and
a collapsed generator. Each history has one value per evaluation (40 evaluations)."""
import math

import pytest
import torch

from trainables.metrics.stability import (COLLAPSED, DIVERGED, FD_VOLATILITY, LOSS_OSCILLATION, SAMPLE_OSCILLATION,
                                          collapsed, diverged, fd_volatility, loss_oscillation, sample_oscillation,
                                          stability_metrics)

T = 40


def _noise(seed, n=T, scale=1.0):
    return (torch.randn(n, generator=torch.Generator().manual_seed(seed)) * scale).tolist()


def stable_run():
    """G converges: samples settle, FD decays to a plateau, losses flat with a little noise."""
    target = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    grids = [target + torch.randn(3, 32, 32) * math.exp(-t / 4) for t in range(T)]
    return dict(
        grids=grids,
        fd=[20 + 200 * math.exp(-t / 6) + e for t, e in zip(range(T), _noise(1, scale=0.2))],
        loss_g=[1.2 + e for e in _noise(2, scale=0.05)],
        loss_d=[1.0 + e for e in _noise(3, scale=0.05)],
        d_fake=[0.35] * T,
        variance_ratio=[0.9] * T,
        coverage_modes=[8] * T,
    )


def oscillating_run():
    """G flips between two drawings of the same z; FD and loss_g swing with it."""
    a, b = torch.full((3, 32, 32), -0.5), torch.full((3, 32, 32), 0.5)
    return dict(
        grids=[a if t % 2 else b for t in range(T)],
        fd=[40 + 30 * (-1) ** t for t in range(T)],
        loss_g=[1.5 + 1.0 * (-1) ** t for t in range(T)],
        loss_d=[1.0 - 0.3 * (-1) ** t for t in range(T)],
        d_fake=[0.3 + 0.2 * (-1) ** t for t in range(T)],
        variance_ratio=[0.8] * T,
        coverage_modes=[8] * T,
    )


def diverging_run():
    """D wins for good halfway: D(G(z)) -> 0, loss_g climbs towards 100, samples frozen noise."""
    grid = torch.rand(3, 32, 32)
    return dict(
        grids=[grid] * T,
        fd=[50 + 10 * max(0, t - 20) for t in range(T)],
        loss_g=[1.5 if t < 20 else 1.5 + 5 * (t - 20) for t in range(T)],
        loss_d=[1.0 if t < 20 else 1e-3 for t in range(T)],
        d_fake=[0.3 if t < 20 else 1e-4 for t in range(T)],
        variance_ratio=[0.5] * T,
        coverage_modes=[8] * T,
    )


def collapsed_run():
    """G draws one face for every z: calm losses and samples, but no spread and one mode."""
    grid = torch.zeros(3, 32, 32)
    return dict(
        grids=[grid] * T,
        fd=[150.0 + e for e in _noise(4, scale=0.5)],
        loss_g=[3.0 + e for e in _noise(5, scale=0.05)],
        loss_d=[0.5 + e for e in _noise(6, scale=0.05)],
        d_fake=[0.1] * T,
        variance_ratio=[0.01] * T,
        coverage_modes=[1] * T,
    )


RUNS = {"stable": stable_run, "oscillating": oscillating_run, "diverging": diverging_run, "collapsed": collapsed_run}


@pytest.fixture(scope="module")
def results():
    return {name: stability_metrics(**make()) for name, make in RUNS.items()}


def test_a_stable_run_is_calm_on_every_count(results):
    stable = results["stable"]
    assert stable[SAMPLE_OSCILLATION] < 1e-2
    assert stable[FD_VOLATILITY] < 0.05
    assert stable[LOSS_OSCILLATION] < 0.1
    assert not stable[DIVERGED] and not stable[COLLAPSED]


def test_an_oscillating_run_oscillates(results):
    osc, stable = results["oscillating"], results["stable"]
    assert osc[SAMPLE_OSCILLATION] == pytest.approx(1.0)     # every pixel jumps by 1 each evaluation
    assert osc[FD_VOLATILITY] > 10 * stable[FD_VOLATILITY]
    assert osc[LOSS_OSCILLATION] == pytest.approx(1.0, rel=0.06)
    assert not osc[DIVERGED] and not osc[COLLAPSED]


def test_a_diverging_run_is_flagged(results):
    assert results["diverging"][DIVERGED]
    assert not results["diverging"][COLLAPSED]


def test_non_finite_losses_mean_divergence():
    run = stable_run()
    assert diverged(run["loss_g"][:-1] + [math.nan], run["loss_d"], run["d_fake"])
    assert diverged(run["loss_g"], run["loss_d"][:-1] + [math.inf], run["d_fake"])


def test_d_winning_then_recovering_is_not_divergence():
    run = diverging_run()
    # D(G(z)) climbs back above the threshold over the last evaluations: G is back in the game.
    d_fake = run["d_fake"][:-3] + [0.05, 0.2, 0.3]
    assert not diverged(run["loss_g"], run["loss_d"], d_fake)
    # D keeps winning but loss_g has stopped rising: not yet "for good" either.
    loss_g = run["loss_g"][:-5] + [run["loss_g"][-5]] * 5
    assert not diverged(loss_g, run["loss_d"], run["d_fake"])


def test_a_collapsed_generator_is_flagged(results):
    col = results["collapsed"]
    assert col[COLLAPSED] and not col[DIVERGED]
    assert col[SAMPLE_OSCILLATION] == 0.0   # collapse is calm: the other metrics do not see it


def test_collapse_is_seen_by_feature_variance_or_by_modes_alone():
    assert collapsed([0.9, 0.05])                                 # no attributes: variance only
    assert collapsed([0.9, 0.9], coverage_modes=[8, 3])           # fewer than half the 8 modes
    assert not collapsed([0.9, 0.9], coverage_modes=[8, 4])
    assert not collapsed([0.05, 0.9])                             # judged at the last evaluation


def test_short_histories_give_nan_not_errors():
    assert math.isnan(sample_oscillation([torch.zeros(3)]))
    assert math.isnan(fd_volatility([10.0]))
    assert math.isnan(loss_oscillation([1.0]))
    assert loss_oscillation([1.0, 3.0]) == pytest.approx(1.0)      # one window shorter than the default
    assert not diverged([1.0], [1.0], [0.0])
