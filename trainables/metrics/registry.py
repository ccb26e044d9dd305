"""Metrics registered by name, and the result keys they report.

A metric is ``fn(inputs) -> dict(key=value)``; ``inputs`` is the :class:`EvalInputs` of one
evaluation (see ``evaluate.py``). Keys carry the evaluator's name where the value depends on
the feature space, so tables say ``fd_faces``, never "FID".
"""
from dataclasses import dataclass

import torch

from trainables.errors import UserError

# Result keys. ``{ev}`` is the evaluator's name ("faces", "bedrooms", "mnist", "inception").
FD = "fd_{ev}"
KID = "kid_{ev}"
PRECISION = "precision"
RECALL = "recall"
VARIANCE_RATIO = "variance_ratio"      # trace(cov fake) / trace(cov real) in the evaluator's space
COVERAGE_KL = "coverage_kl"
COVERAGE_MODES = "coverage_modes"
WINDOW_FRACTION = "window_fraction"    # synthetic bedrooms: mean predicted window pixel share
BED_FRACTION = "bed_fraction"

METRICS = {}


@dataclass
class EvalInputs:
    """Everything a metric may read about one evaluation (reals: the cached reference set)."""

    evaluator: str             # the evaluator's name, for the result keys
    real_stats: object         # FeatureStats of all reals / all fakes (FD)
    fake_stats: object
    real_features: torch.Tensor    # (N, d) features of up to MAX_KEPT_FEATURES reals / fakes
    fake_features: torch.Tensor    # (KID, precision / recall)
    real_labels: dict          # per-image ground truth of those reals, masks as pixel fractions
    fake_predictions: dict     # per-image evaluator predictions for those fakes, likewise


def register_metric(name):
    """Decorator: register ``fn(inputs) -> dict`` under ``name``."""

    def wrap(fn):
        METRICS[name] = fn
        return fn

    return wrap


def metric_names():
    _load_builtin()
    return sorted(METRICS)


def get_metric(name):
    _load_builtin()
    if name not in METRICS:
        raise UserError(f"metric={name!r} is unknown: choose one of {', '.join(sorted(METRICS))}")
    return METRICS[name]


def _load_builtin():
    # Importing the modules registers their metrics.
    from trainables.metrics import coverage, frechet, kid, layout, precision_recall  # noqa: F401
