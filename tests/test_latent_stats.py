"""The latent experiments' statistics on simulated data: with no effect they give false verdicts
at about the nominal rate, with a known effect they find it, and their intervals cover the truth
at about the nominal rate. Simulations are shaped like the experiments' units: arithmetic trials
(9 near-copy outputs, so shares near 0 or 1), turn draws, generators."""
import gc

import numpy as np
import pytest
import torch

from trainables.latent.neighbours import compare, nearest
from trainables.latent.represent import choose_c
from trainables.latent.stats import MIN_UNITS, SHARE, contrasts, mean_ci, over_generators, paired

SIMULATIONS = 400
ALPHA = 0.05
# 400 simulations at a true rate of 0.05: 3 standard errors above it.
FALSE_RATE_MAX = ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / SIMULATIONS)


def _trial_shares(rng, p_trial, trials=20):
    """Per-trial target shares: each trial hits (all 9 outputs alike) with probability p_trial,
    and one output in 9 flips with probability 0.2, as near-copies do."""
    hit = rng.random(trials) < p_trial
    flip = (rng.random(trials) < 0.2) / 9
    return np.where(hit, 1 - flip, flip)


def test_paired_test_false_verdicts_and_power_on_trials():
    rng = np.random.default_rng(0)
    null = [paired(_trial_shares(rng, 0.5), _trial_shares(rng, 0.5), "trials")["p"] < ALPHA for _ in range(SIMULATIONS)]
    assert np.mean(null) <= FALSE_RATE_MAX
    # A known effect: the target in 75 % of trials against 25 %, 20 trials.
    power = [paired(_trial_shares(rng, 0.75), _trial_shares(rng, 0.25), "trials")["p"] < ALPHA
             for _ in range(SIMULATIONS)]
    assert np.mean(power) >= 0.8


def test_holm_keeps_the_family_wise_error_of_the_secondaries():
    rng = np.random.default_rng(1)
    any_false = []
    # statsmodels' multipletests runs gc.collect() on every call, slow with torch's objects
    # alive; frozen objects are not traversed.
    gc.freeze()
    try:
        for _ in range(SIMULATIONS):
            tests = {f"t{i}": paired(rng.normal(size=10), rng.normal(size=10), "draws") for i in range(5)}
            tests = contrasts(tests, "t0")
            assert "p_holm" not in tests["t0"] and tests["t0"]["role"] == "primary"
            any_false.append(min(tests[f"t{i}"]["p_holm"] for i in range(1, 5)) < ALPHA)
    finally:
        gc.unfreeze()
    assert np.mean(any_false) <= FALSE_RATE_MAX


@pytest.mark.parametrize("n", [3, 10])
def test_t_interval_covers_the_mean_at_its_level(n):
    rng = np.random.default_rng(n)
    cover = []
    for _ in range(SIMULATIONS):
        ci = mean_ci(rng.normal(0.3, 1.0, size=n), "draws")["ci"]
        cover.append(ci[0] <= 0.3 <= ci[1])
    assert 0.92 <= np.mean(cover) <= 0.98


def test_over_generators_effect_test_false_verdicts_and_power():
    rng = np.random.default_rng(2)
    null = [over_generators(rng.normal(0, 1, 5))["p_t_test"] < ALPHA for _ in range(SIMULATIONS)]
    assert np.mean(null) <= FALSE_RATE_MAX
    power = [over_generators(rng.normal(2.0, 1, 5))["p_t_test"] < ALPHA for _ in range(SIMULATIONS)]
    assert np.mean(power) >= 0.8


def test_no_interval_from_fewer_than_three_units_and_none_of_zero_width():
    assert MIN_UNITS == 3
    two = mean_ci([0.2, 0.4], "generators")
    assert two["ci"] is None and "fewer than 3 generators" in two["interval"]
    assert paired([1, 0], [0, 0], "trials")["p"] is None
    # All trials at 0: the exact binomial interval of 20 units at 0, not [0, 0].
    zeros = mean_ci([0.0] * 20, "trials", bounds=SHARE)
    assert zeros["ci"][0] == 0 and 0.1 < zeros["ci"][1] < 0.2 and zeros["interval"].startswith("exact binomial")
    # A bounded mean's t interval stays inside [0, 1].
    near_one = mean_ci([1.0] * 9 + [0.8], "trials", bounds=SHARE)
    assert near_one["ci"][1] == 1.0 and near_one["ci"][0] < 1.0


def test_nearest_search_and_memorisation_numbers_with_and_without_copies():
    gen = torch.Generator().manual_seed(0)
    train = torch.randn(3000, 16, generator=gen)
    heldout = torch.randn(500, 16, generator=gen)
    # Copies of the last training rows (a search of the first rows only would miss them).
    copies = train[-300:] + 0.01 * torch.randn(300, 16, generator=gen)
    d, i = nearest(copies, train, k=1, chunk=128)
    assert torch.equal(i[:, 0], torch.arange(2700, 3000)) and float(d.max()) < 0.1
    d_real = nearest(heldout, train)[0][:, 0]
    memorised = compare(d[:, 0], d_real, seed=0)
    assert memorised["generated_below_heldout_q01"]["ci"][0] > 0.9
    assert memorised["median_ratio"]["ci"][1] < 0.2
    # No memorisation: fresh samples of the held-out distribution.
    fresh = nearest(torch.randn(500, 16, generator=gen), train)[0][:, 0]
    same = compare(fresh, d_real, seed=0)
    lo, hi = same["median_ratio"]["ci"]
    assert lo <= 1.0 <= hi and same["generated_below_heldout_q01"]["ci"][0] < 0.05
    # None below: an exact binomial interval over the generated samples, not the bootstrap's [0, 0].
    far = compare(d_real + 10, d_real, seed=0)["generated_below_heldout_q05"]
    assert far["mean"] == 0 and 0 < far["ci"][1] < 0.01 and far["interval"].startswith("exact binomial")


def test_svm_c_grid_is_extended_until_the_chosen_c_is_interior():
    def peaked(at):
        return lambda c: -abs(np.log10(c) - np.log10(at))
    best, interior, grid = choose_c(peaked(1e-5))
    assert best == pytest.approx(1e-5) and interior and min(grid) == pytest.approx(1e-6)
    best, interior, grid = choose_c(peaked(1e2))
    assert best == pytest.approx(1e2) and interior and max(grid) == pytest.approx(1e3)
    # Beyond the range: the edge of the extended grid, and said so.
    best, interior, grid = choose_c(peaked(1e6))
    assert best == pytest.approx(1e3) and not interior
    # A flat validation curve: the smallest interior C, no extension.
    best, interior, grid = choose_c(lambda c: 0.9)
    assert best == 0.01 and interior and len(grid) == 4
