"""The per-run metrics a report reads and how each is analysed: its scale, how a run without a
value counts, and its name on runs logged before it existed (definitions: docs/metrics.md)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str
    header: str        # its table header
    kind: str          # "log": positive, analysed as log (FD: heteroscedastic, effects multiplicative);
    #                    "linear": analysed as it is; "binary": a 0/1 flag, analysed as a share of runs
    censor: str = ""   # "worst": a diverged run takes the worst value observed (it never flatters its
    #                    setting); "horizon": a run that never got there counts as reaching it at the horizon
    alias: str = ""    # the key it replaced on older runs


# Every one is lower-is-better.
METRICS = {m.key: m for m in (
    Metric("fd_final", "final FD", "log", censor="worst"),
    Metric("fd_best", "best FD", "log", censor="worst"),
    Metric("sample_oscillation", "sample osc.", "linear"),
    Metric("sample_oscillation_global", "global osc.", "linear"),
    Metric("fd_volatility", "FD volatility", "linear"),
    Metric("loss_oscillation", "loss osc.", "linear"),
    Metric("diverged", "diverged", "binary"),
    Metric("mode_collapse", "mode collapse", "binary", alias="collapsed"),
    Metric("attribute_skew", "attr. skew", "binary"),
    Metric("steps_to_fd", "steps to FD≤T", "linear", censor="horizon"),
)}
# Read and written to runs.csv, never analysed: FD is kept only for runs that did not diverge.
EXTRA_KEYS = ("fd_last_before_divergence", "diverged_step")
