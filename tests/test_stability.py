"""Stability metrics on constructed histories with known answers (the quick preset's schedule, read
from the preset: 1,200 steps, losses every 20, fixed-noise samples every 30, FD every 80), and on
the real faces evaluator's features of rendered faces."""
import math

import pytest
import torch

from orchestrator.config import resolve_config
from trainables.metrics.stability import (
    ATTRIBUTE_SKEW,
    DIVERGE_FD_RATIO,
    DIVERGE_STEPS,
    DIVERGED,
    DIVERGED_STEP,
    FD_LAST_BEFORE_DIVERGENCE,
    FD_VOLATILITY,
    LOSS_OSCILLATION,
    MODE_COLLAPSE,
    SAMPLE_OSCILLATION,
    SAMPLE_OSCILLATION_GLOBAL,
    SAMPLE_OSCILLATION_PIXELS,
    fd_divergence,
    oscillation_components,
    stability_metrics,
)

QUICK = resolve_config("quick", {})
END, LOG, SAMPLE, EVAL = QUICK.max_steps, QUICK.log_every, QUICK.sample_every, QUICK.eval_every
N, D = 16, 32          # samples in the fixed-noise grid, feature dimension


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _steps(every):
    return list(range(every, END + 1, every))


def run(features=None, pixels=None, fd=None, loss_g=None, variance_ratio=0.9, coverage_modes=8):
    """Histories of a calm run at the quick schedule; each argument replaces one part: a function
    of the step (fd, loss_g) or of the sample index k (features, pixels)."""
    base = _randn(N, D, seed=0)
    features = features or (lambda k: base)
    pixels = pixels or (lambda k: features(k).reshape(N, 2, 4, 4))
    fd = fd or (lambda t: 20 + 200 * math.exp(-t / 300))
    loss_g = loss_g or (lambda t: 1.2)
    ls, ss, es = _steps(LOG), _steps(SAMPLE), _steps(EVAL)
    losses = {"step": ls, "loss_g": [loss_g(t) for t in ls], "loss_d": [1.0] * len(ls)}
    samples = {"step": ss, "features": [features(k) for k in range(len(ss))],
               "pixels": [pixels(k) for k in range(len(ss))]}
    evals = {"step": es, "fd": [fd(t) for t in es], "variance_ratio": [variance_ratio] * len(es),
             "coverage_modes": [coverage_modes] * len(es)}
    return losses, samples, evals


def metrics(**parts):
    values, notes = stability_metrics(*run(**parts), end=END)
    return values, notes


def test_a_steadily_improving_run_is_calm():
    """Samples glide from noise to their targets (on curved paths), FD decays, losses sit still."""
    start, target = _randn(N, D, seed=1), _randn(N, D, seed=2)
    arc = _randn(N, D, seed=3)
    gliding = lambda k: target + (start - target) * math.exp(-k / 8) + arc * math.sin(math.pi * k / 80)  # noqa: E731
    noise = _randn(len(_steps(EVAL)), seed=4) * 0.3
    values, notes = metrics(features=gliding, fd=lambda t: 20 + 200 * math.exp(-t / 300) + float(noise[t // EVAL - 1]))
    assert notes == []
    assert values[SAMPLE_OSCILLATION] < 0.01 and values[SAMPLE_OSCILLATION_GLOBAL] < 0.01
    assert values[SAMPLE_OSCILLATION_PIXELS] < 0.01
    assert values[FD_VOLATILITY] < 0.02        # the decay itself is trend, not volatility
    assert values[LOSS_OSCILLATION] == pytest.approx(0.0)
    assert values[DIVERGED] == 0.0 and DIVERGED_STEP not in values and FD_LAST_BEFORE_DIVERGENCE not in values
    assert values[MODE_COLLAPSE] == 0.0 and values[ATTRIBUTE_SKEW] == 0.0


def test_samples_that_swing_back_and_forth_oscillate():
    """Each sample flips between two drawings, a distance 2 apart, spread 1: about 2 per interval."""
    half = _randn(N // 2, D, seed=5)
    half = half / half.norm(dim=1, keepdim=True)
    swing = torch.cat([half, -half])                        # no common part: per-sample only
    values, _ = metrics(features=lambda k: swing * (-1) ** k, fd=lambda t: 40 + 30 * (-1) ** (t // EVAL),
                        loss_g=lambda t: 1.5 + (-1) ** (t // LOG))
    k = len(range(END // 2, END + 1, SAMPLE))                # grids in the second half
    net = 0 if (k - 1) % 2 == 0 else 2                        # first and last grid: same or other drawing
    assert values[SAMPLE_OSCILLATION] == pytest.approx((2 * (k - 1) - net) / (k - 1), rel=1e-6)
    assert values[SAMPLE_OSCILLATION_GLOBAL] < 1e-6
    assert values[SAMPLE_OSCILLATION_PIXELS] == pytest.approx(values[SAMPLE_OSCILLATION], rel=1e-6)
    assert values[FD_VOLATILITY] > 0.5
    assert values[LOSS_OSCILLATION] == pytest.approx(1.0)
    assert values[DIVERGED] == 0.0


def test_a_whole_grid_colour_shift_is_global_not_per_sample():
    base, shift = _randn(N, D, seed=6), _randn(D, seed=7)
    values, _ = metrics(features=lambda k: base + shift * (-1) ** k)
    assert values[SAMPLE_OSCILLATION_GLOBAL] > 1.0
    assert values[SAMPLE_OSCILLATION] < 1e-6 and values[SAMPLE_OSCILLATION_PIXELS] < 1e-6


def test_moving_once_is_not_oscillating():
    """A fixed z redrawn once in the second half (the old metric's single displacement): 0."""
    a, b = _randn(N, D, seed=8), _randn(N, D, seed=9)
    values, _ = metrics(features=lambda k: a if k < 30 else b)
    assert values[SAMPLE_OSCILLATION] == pytest.approx(0.0, abs=1e-6)


def _late_divergence(t):
    """FD falls to 50 by step 600, then from step 780 sits above twice that best for good."""
    return 250 - 200 * min(t, 600) / 600 if t < 780 else 160 + (t - 780) / 10


# The first evaluation with FD up for good, and the first one DIVERGE_STEPS or more after it.
UP = next(t for t in _steps(EVAL) if t >= 780)
DECIDED = next(t for t in _steps(EVAL) if t >= UP + DIVERGE_STEPS)


def test_a_run_that_diverges_late_is_flagged_at_the_right_step():
    values, _ = metrics(fd=_late_divergence)
    assert values[DIVERGED] == 1.0
    assert values[DIVERGED_STEP] == DECIDED     # decided once FD has stayed up for DIVERGE_STEPS
    assert values[FD_LAST_BEFORE_DIVERGENCE] == pytest.approx(50.0)   # the evaluation before UP


def test_the_loop_decides_divergence_on_a_prefix_as_on_the_whole_history():
    _, _, evals = run(fd=_late_divergence)
    steps, fd = evals["step"], evals["fd"]
    decided = [fd_divergence(steps[:i], fd[:i]) for i in range(1, len(steps) + 1)]
    first = next(i for i, d in enumerate(decided) if d is not None)
    assert steps[first] == DECIDED and decided[-1] == decided[first]


def test_a_spike_or_a_slow_rise_is_not_divergence():
    spike = lambda t: 200 if 600 <= t < 600 + DIVERGE_STEPS else 80  # noqa: E731  (up for < DIVERGE_STEPS)
    rise = lambda t: 80 * min(DIVERGE_FD_RATIO, 1 + t / END)          # noqa: E731  (never above ratio x best)
    for fd in (spike, rise):
        assert metrics(fd=fd)[0][DIVERGED] == 0.0


def test_a_non_finite_loss_is_divergence_at_its_step():
    upto = lambda h, last: {k: [v for s, v in zip(h["step"], vs) if s <= last] for k, vs in h.items()}  # noqa: E731
    losses, samples, evals = run()
    losses, samples, evals = upto(losses, 500), upto(samples, 500), upto(evals, 500)  # the loop stops there
    losses["loss_d"][-1] = math.inf
    values, _ = stability_metrics(losses, samples, evals, end=500)
    assert values[DIVERGED] == 1.0 and values[DIVERGED_STEP] == 500
    assert values[FD_LAST_BEFORE_DIVERGENCE] == evals["fd"][-1]   # the evaluation at step 480


def test_mode_collapse_and_attribute_skew_are_told_apart():
    collapsed, _ = metrics(variance_ratio=0.02, coverage_modes=1)
    skewed, _ = metrics(variance_ratio=0.8, coverage_modes=3)
    assert collapsed[MODE_COLLAPSE] == 1.0 and collapsed[ATTRIBUTE_SKEW] == 1.0  # one face: one combination too
    assert skewed[MODE_COLLAPSE] == 0.0 and skewed[ATTRIBUTE_SKEW] == 1.0      # spread, but mostly short hair
    assert metrics(coverage_modes=4)[0][ATTRIBUTE_SKEW] == 0.0


def test_short_histories_give_nan_and_a_note():
    losses, samples, evals = run()
    cut = lambda h, n: {k: v[:n] for k, v in h.items()}  # noqa: E731
    values, notes = stability_metrics(cut(losses, 3), cut(samples, 3), {**cut(evals, 0), "coverage_modes": None},
                                      end=90)
    for key in (SAMPLE_OSCILLATION, SAMPLE_OSCILLATION_GLOBAL, SAMPLE_OSCILLATION_PIXELS, FD_VOLATILITY,
                LOSS_OSCILLATION, MODE_COLLAPSE, ATTRIBUTE_SKEW):
        assert math.isnan(values[key]), key
        assert sum(n.startswith(f"{key}: ") for n in notes) == 1, (key, notes)
    assert values[DIVERGED] == 0.0
    assert "fd_volatility: 0 FD evaluations in the last third of the run (needs 5)" in notes


def test_real_faces_in_the_evaluator_space_and_in_pixels():
    """Rendered faces through the trained faces evaluator. Faces swapping with other faces are
    per-sample in both views. A colour cast over the whole grid that comes and goes is global in
    pixels; the evaluator, which reads skin tone and hair colour, answers it partly per face."""
    from trainables.data import DataRequest, build_dataset
    from trainables.metrics.evaluators import get_evaluator

    data = build_dataset(DataRequest(dataset="synthetic-faces", image_size=32, nc=3, dataset_size=64, data_seed=0))
    faces = torch.stack([data[i][0] for i in range(64)])
    a, b = faces[:32], faces[32:]
    evaluator = get_evaluator("synthetic-faces", 32)
    cast = torch.tensor([0.2, -0.1, -0.2]).view(1, 3, 1, 1)
    tinted = torch.stack([(a + cast * (k % 2)).clamp(-1, 1) for k in range(10)])
    swapped = torch.stack([a if k % 2 else b for k in range(10)])
    embed = lambda grids: torch.stack([evaluator.features(g) for g in grids])  # noqa: E731

    for view in (swapped, embed(swapped)):
        per_sample, global_ = oscillation_components(view)
        assert per_sample > 4 * global_
    per_sample, global_ = oscillation_components(tinted)
    assert global_ > 5 * per_sample
    assert oscillation_components(embed(tinted))[1] > 1.5 * oscillation_components(embed(swapped))[1]


@pytest.mark.slow
def test_a_real_smoke_run_logs_every_metric_with_enough_points(ray_local, mlflow_uri, tmp_path):
    """40 smoke steps with every history dense enough: every metric is a number, no notes, and
    the run's feature space is the param the driver pinned."""
    from mlflow import MlflowClient

    from orchestrator.config import resolve_config
    from orchestrator.train import run_training

    cfg = resolve_config("smoke", {"mlflow_uri": mlflow_uri, "storage_path": str(tmp_path / "ray"), "max_steps": 40,
                                   "log_every": 2, "sample_every": 2, "eval_every": 3, "checkpoint_every": 40})
    run_id, status = run_training(cfg)
    assert status == "finished"
    run = MlflowClient(mlflow_uri).get_run(run_id)
    m = run.data.metrics
    for key in (SAMPLE_OSCILLATION, SAMPLE_OSCILLATION_GLOBAL, SAMPLE_OSCILLATION_PIXELS, FD_VOLATILITY,
                LOSS_OSCILLATION, DIVERGED, MODE_COLLAPSE, ATTRIBUTE_SKEW, "fd_final", "fd_best"):
        assert math.isfinite(m[key]), key
    assert "metric_notes" not in run.data.tags and "collapsed" not in m and DIVERGED_STEP not in m
    assert run.data.params["feature_extractor"] == "domain"
    from trainables.metrics.frozen import find_entry
    assert run.data.params["evaluator_sha"] == find_entry("synthetic-faces", 32, 3)["sha256"]   # the shipped file
    assert len(MlflowClient(mlflow_uri).get_metric_history(run_id, "fd_faces")) == 14   # 3, 6, ..., 39, 40
