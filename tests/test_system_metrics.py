"""System metrics on a real SQLite MLflow store, sampled on the sampler's own thread."""
import time

from trainables import store
from trainables.system_metrics import system_metrics


def _run(tmp_path):
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    run_id = store.start_run(uri, "dcgan-lab", "t", {}, {})
    return uri, run_id


def _steps(uri, run_id, key="system/cpu_utilization_percentage"):
    return [m.step for m in store.client(uri).get_metric_history(run_id, key)]


def test_a_block_shorter_than_one_interval_still_gets_a_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "30")
    uri, run_id = _run(tmp_path)
    with system_metrics(uri, run_id, enabled=True):
        time.sleep(0.2)
    assert _steps(uri, run_id) == [0]
    (cpu,) = store.client(uri).get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert 0 <= cpu.value <= 100
    assert _steps(uri, run_id, "system/system_memory_usage_megabytes") == [0]


def test_one_sample_per_interval_and_a_restart_goes_on_from_the_last_step(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    uri, run_id = _run(tmp_path)
    with system_metrics(uri, run_id, enabled=True):
        time.sleep(2.5)
    first = _steps(uri, run_id)
    assert first == list(range(len(first))) and 3 <= len(first) <= 4
    with system_metrics(uri, run_id, enabled=True):
        time.sleep(0.1)
    assert _steps(uri, run_id) == list(range(len(first) + 1))


def test_disabled_logs_nothing(tmp_path):
    uri, run_id = _run(tmp_path)
    with system_metrics(uri, run_id, enabled=False):
        pass
    assert not [k for k in store.client(uri).get_run(run_id).data.metrics if k.startswith("system/")]
