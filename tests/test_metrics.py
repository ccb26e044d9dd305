"""The metric math against closed forms, direct computations and constructed point sets; the
distributed reduction on a real two-process gloo group."""
import math
import os

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainables.errors import UserError
from trainables.metrics.coverage import COVERAGE_ATTRS, attributes_to_combos, combos_to_frequencies, coverage_kl, coverage_modes
from trainables.metrics.fid import find_inception_weights, resolve_feature_extractor
from trainables.metrics.frechet import FeatureStats, all_reduce_stats, fd_stats_to_metric, frechet_distance
from trainables.metrics.kid import kid_features_to_metric, mmd2_unbiased
from trainables.metrics.precision_recall import pr_features_to_metric
from trainables.metrics.registry import EvalInputs, get_metric, metric_names


def stats_of(x, batch_size=None):
    stats = FeatureStats(x.shape[1])
    for batch in x.split(batch_size or len(x)):
        stats.append(batch)
    return stats


# FD.

def test_fd_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    s1, s2 = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_fd_matches_sqrtm_formula_on_full_covariances():
    # The reference: ||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)), as torch-fidelity computes it.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(32, 32)), rng.normal(size=(32, 32))
    s1, s2 = a @ a.T + 0.1 * np.eye(32), b @ b.T + 0.1 * np.eye(32)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fd_of_a_sample_with_itself_is_zero_and_a_shift_adds_its_square():
    x = torch.randn(500, 24, dtype=torch.float64)
    assert abs(fd_stats_to_metric(stats_of(x), stats_of(x))) < 1e-8
    shifts = [0.5, 1.0, 2.0, 4.0]
    fds = [fd_stats_to_metric(stats_of(x), stats_of(x + s)) for s in shifts]
    # Same covariance, means apart by s in each of 24 dims: FD = 24 s^2 exactly.
    assert fds == pytest.approx([24 * s ** 2 for s in shifts], rel=1e-6)


def test_fd_is_robust_to_singular_covariances():
    # 20 samples in 64 dims: both covariances have rank 19 at most.
    x, y = torch.randn(20, 64), torch.randn(20, 64) + 0.3
    fd = fd_stats_to_metric(stats_of(x), stats_of(y))
    assert math.isfinite(fd) and fd > 0
    assert abs(fd_stats_to_metric(stats_of(x), stats_of(x))) < 1e-6


def test_fd_statistics_do_not_depend_on_the_batch_size():
    x, y = torch.randn(300, 16) * 3 + 1, torch.randn(300, 16)
    one = fd_stats_to_metric(stats_of(x, 1), stats_of(y, 1))
    full = fd_stats_to_metric(stats_of(x), stats_of(y))
    odd = fd_stats_to_metric(stats_of(x, 7), stats_of(y, 13))
    assert one == pytest.approx(full, rel=1e-10) and odd == pytest.approx(full, rel=1e-10)


def test_fd_statistics_survive_a_round_trip_through_a_state_dict():
    stats = stats_of(torch.randn(50, 8))
    again = FeatureStats.from_state_dict(stats.state_dict())
    assert again.n == 50 and torch.equal(again.sum, stats.sum) and torch.equal(again.outer, stats.outer)


def _reduce_worker(rank, world_size, init_file, x, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        share = x[rank::world_size]   # 301 rows: 151 on rank 0, 150 on rank 1
        stats = stats_of(share, 10)
        all_reduce_stats(stats)
        torch.save(stats.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_distributed_reduction_equals_a_single_worker(tmp_path):
    x, y = torch.randn(301, 32) * 2, torch.randn(301, 32) + 0.5
    mp.spawn(_reduce_worker, args=(2, str(tmp_path / "init"), x, str(tmp_path)), nprocs=2)
    single = fd_stats_to_metric(stats_of(x), stats_of(y))
    for rank in range(2):
        reduced = FeatureStats.from_state_dict(torch.load(tmp_path / f"rank{rank}.pt", weights_only=True))
        assert reduced.n == 301
        assert fd_stats_to_metric(reduced, stats_of(y)) == pytest.approx(single, rel=1e-6)


def test_all_reduce_without_a_process_group_changes_nothing():
    stats = stats_of(torch.randn(10, 4))
    before = stats.sum.clone()
    assert all_reduce_stats(stats) is stats and torch.equal(stats.sum, before)


# KID.

def _mmd2_direct(x, y):
    """Unbiased MMD^2, one kernel evaluation at a time."""
    d, m = x.shape[1], len(x)

    def k(a, b):
        return (float(a @ b) / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2
    return xx + yy - 2 * xy


def test_kid_matches_a_direct_computation():
    x, y = torch.randn(25, 8, dtype=torch.float64), torch.randn(25, 8, dtype=torch.float64) + 0.4
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_direct(x, y), rel=1e-10)
    # One subset as large as the sets is a permutation of them: the same value.
    assert kid_features_to_metric(x, y, subset_size=1000, n_subsets=1) == pytest.approx(_mmd2_direct(x, y), rel=1e-10)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    x, x2 = torch.randn(600, 16), torch.randn(600, 16)
    same = kid_features_to_metric(x, x2, subset_size=200, n_subsets=20)
    shifted = kid_features_to_metric(x, x2 + 1.0, subset_size=200, n_subsets=20)
    far = kid_features_to_metric(x, x2 + 2.0, subset_size=200, n_subsets=20)
    assert abs(same) < 0.05 < shifted < far


# Precision and recall.

def _modes(n_modes, per_mode, dim, seed):
    """Unit Gaussians on a line, 20 apart, ``per_mode`` samples each, mode by mode."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.arange(n_modes).float()[:, None] * 20 * torch.ones(1, dim)
    return (centres[:, None, :] + torch.randn(n_modes, per_mode, dim, generator=g)).reshape(-1, dim)


def test_precision_and_recall_of_identical_sets_are_one():
    x = torch.randn(200, 8)
    assert pr_features_to_metric(x, x) == (1.0, 1.0)


def test_precision_and_recall_of_far_apart_sets_are_zero():
    x = torch.randn(200, 8)
    assert pr_features_to_metric(x, x + 100) == (0.0, 0.0)


def test_a_generator_covering_half_the_modes_has_full_precision_and_half_recall():
    real = _modes(10, 100, dim=8, seed=0)
    # The reals of modes 0-4 themselves: every fake is real, every real of those modes is covered.
    assert pr_features_to_metric(real, real[:500]) == (1.0, 0.5)
    # Fresh samples of modes 0-4 (2-d, dense enough for 3-NN balls to tile each mode).
    real, fake = _modes(10, 200, dim=2, seed=0), _modes(10, 200, dim=2, seed=1)[:1000]
    precision, recall = pr_features_to_metric(real, fake)
    assert precision > 0.95
    assert 0.45 < recall <= 0.5


# Attribute coverage.

def _attrs(codes):
    codes = torch.as_tensor(codes)
    return {key: (codes >> bit) & 1 == 1 for bit, key in enumerate(COVERAGE_ATTRS)}


def test_attribute_combinations_round_trip():
    codes = torch.arange(8).repeat(3)
    assert torch.equal(attributes_to_combos(_attrs(codes)), codes)
    # Probabilities are thresholded at 0.5.
    probs = {key: v.float() * 0.8 + 0.1 for key, v in _attrs(codes).items()}
    assert torch.equal(attributes_to_combos(probs), codes)


def test_coverage_of_a_matching_a_collapsed_and_a_mode_dropping_generator():
    real = torch.arange(8).repeat(100)
    cases = {"matching": torch.arange(8).repeat(100), "collapsed": torch.full((800,), 3),
             "drops one": torch.arange(7).repeat(115)}
    kl = {name: coverage_kl(combos_to_frequencies(real), combos_to_frequencies(c)) for name, c in cases.items()}
    modes = {name: coverage_modes(combos_to_frequencies(real, eps=0), combos_to_frequencies(c, eps=0))
             for name, c in cases.items()}
    assert modes == {"matching": 8, "collapsed": 1, "drops one": 7}
    assert kl["matching"] == pytest.approx(0.0, abs=1e-12)
    assert kl["collapsed"] > kl["drops one"] > 0.1
    # A few misclassified samples in another combination do not count as a mode.
    noisy = torch.cat([torch.full((790,), 3), torch.full((10,), 5)])
    assert coverage_modes(combos_to_frequencies(real, eps=0), combos_to_frequencies(noisy, eps=0)) == 1


# The registry.

def test_metrics_are_registered_by_name_and_name_their_evaluator():
    assert {"fd", "kid", "pr", "coverage", "variance", "layout"} <= set(metric_names())
    x, y = torch.randn(300, 16), torch.randn(300, 16) + 1
    labels = _attrs(torch.arange(300) % 8)
    inputs = EvalInputs("faces", stats_of(x), stats_of(y), x, y, labels, labels)
    results = {}
    for name in ("fd", "kid", "pr", "variance", "coverage"):
        results.update(get_metric(name)(inputs))
    assert set(results) == {"fd_faces", "kid_faces", "precision", "recall", "variance_ratio", "coverage_kl",
                            "coverage_modes"}
    assert results["fd_faces"] == pytest.approx(fd_stats_to_metric(stats_of(x), stats_of(y)))


def test_an_unknown_metric_names_the_valid_ones():
    with pytest.raises(UserError, match="metric='fid'.*coverage, fd, kid"):
        get_metric("fid")


# Standard FID: the weights' absence and their use.

def test_missing_inception_weights_give_a_one_line_how_to(tmp_path):
    path, message = find_inception_weights(str(tmp_path / "nope.pth"))
    assert path is None and "\n" not in message
    assert str(tmp_path / "nope.pth") in message and "weights-inception-2015-12-05-6726825d.pth" in message
    with pytest.raises(UserError, match="FID skipped: Inception weights not found"):
        resolve_feature_extractor("inception", "synthetic-faces", str(tmp_path / "nope.pth"))


def test_an_unknown_feature_extractor_names_the_valid_ones():
    with pytest.raises(UserError, match="feature_extractor='vgg'.*auto, domain, inception"):
        resolve_feature_extractor("vgg", "synthetic-faces")


def test_inception_features_come_from_a_local_weights_file(tmp_path, monkeypatch):
    # Stand-in weights (random, the real file's layout), written without any download; the
    # extractor under test then loads them from disk like the real file.
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    monkeypatch.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
    monkeypatch.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
    state = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    monkeypatch.undo()
    weights = tmp_path / "weights.pth"
    torch.save(state, weights)

    extractor, note = resolve_feature_extractor("auto", "synthetic-faces", str(weights), nc=1)
    assert note == "" and extractor.name == "inception" and extractor.dim == 2048
    features = extractor.features(torch.rand(2, 1, 32, 32) * 2 - 1)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
