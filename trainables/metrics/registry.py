"""Metrics registered by name, and the result keys they report.

A metric is ``fn(inputs) -> dict(key=value)``; ``inputs`` is the :class:`EvalInputs` of one
evaluation (see ``evaluate.py``). Keys carry the evaluator's name where the value depends on
the feature space, so tables say ``fd_faces``, never "FID".
"""
from orchestrator.errors import UserError

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
    from trainables.metrics import coverage, frechet, kid, precision_recall  # noqa: F401
