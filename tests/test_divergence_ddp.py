"""Divergence under DDP, on a real local Ray with two gloo workers: only rank 1's losses turn
non-finite (the ``inject_nan`` hook), yet both ranks stop at that step, because the finite flag
is all-reduced before either branches on it. A rank that went on would wait for ever in its
next collective, so the run ending at all, within the timeout, is part of the proof."""
import math
import threading

import pytest
from mlflow import MlflowClient

from orchestrator.config import resolve_config
from orchestrator.train import run_training

pytestmark = pytest.mark.slow   # starts Ray, trains, serves MLflow or drives a browser

TIMEOUT_S = 240


def test_one_rank_non_finite_stops_both_ranks_at_the_same_step(ray_local, mlflow_uri, tmp_path):
    cfg = resolve_config("smoke", {"mlflow_uri": mlflow_uri, "storage_path": str(tmp_path / "ray"),
                                   "num_workers": 2, "cpus_per_worker": 1, "inject_nan": "1:4"})
    result = {}
    thread = threading.Thread(target=lambda: result.update(zip(("run", "status"), run_training(cfg))), daemon=True)
    thread.start()
    thread.join(timeout=TIMEOUT_S)
    assert not thread.is_alive(), f"the 2-worker run did not end within {TIMEOUT_S} s: a rank is waiting on the other"

    assert result["status"] == "diverged"
    c = MlflowClient(mlflow_uri)
    run = c.get_run(result["run"])
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "diverged"
    assert run.data.tags["final_step"] == "4"
    assert run.data.metrics["diverged"] == 1.0 and run.data.metrics["diverged_step"] == 4.0
    assert "fd_final" not in run.data.metrics
    loss_g = sorted(c.get_metric_history(result["run"], "loss_g"), key=lambda m: m.step)
    assert [m.step for m in loss_g] == [2, 4]
    assert math.isfinite(loss_g[0].value) and math.isnan(loss_g[1].value)   # rank 1's NaN is in the mean over ranks
    # Stopped before any evaluation: too short for the history metrics, and each says so.
    notes = run.data.tags["metric_notes"]
    for key in ("sample_oscillation", "fd_volatility", "loss_oscillation", "fd_last_before_divergence"):
        assert math.isnan(run.data.metrics[key]) and f"{key}: " in notes, key


def test_a_malformed_injection_hook_is_refused_before_anything_runs():
    import pytest

    from trainables.errors import UserError

    with pytest.raises(UserError, match=r"inject_nan='1@4' is not allowed: RANK:STEP \(two integers\) or empty"):
        resolve_config("smoke", {"inject_nan": "1@4"})
    assert resolve_config("smoke", {"inject_nan": "1:4"}).inject_nan_at == (1, 4)
    assert resolve_config("smoke").inject_nan_at is None
