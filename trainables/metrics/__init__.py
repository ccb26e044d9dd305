"""Metrics: FD, KID, precision / recall and attribute coverage in a feature space (a domain
evaluator's or Inception's), and the stability of a run. Definitions: docs/metrics.md."""
from trainables.metrics.evaluate import evaluate_generator, fd_speed, reference_embedding
from trainables.metrics.evaluators import get_evaluator, held_out_scores
from trainables.metrics.fid import resolve_feature_extractor
from trainables.metrics.frechet import FeatureStats, all_reduce_stats, fd_stats_to_metric, frechet_distance
from trainables.metrics.registry import METRICS, get_metric, metric_names, register_metric
from trainables.metrics.stability import stability_metrics

__all__ = [
    "METRICS", "FeatureStats", "all_reduce_stats", "evaluate_generator", "fd_speed", "fd_stats_to_metric",
    "frechet_distance", "get_evaluator", "get_metric", "held_out_scores", "metric_names", "reference_embedding",
    "register_metric", "resolve_feature_extractor", "stability_metrics",
]
