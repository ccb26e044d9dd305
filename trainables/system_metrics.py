"""The machine's system metrics as ``system/*`` metrics of a run, sampled on our own thread."""
import contextlib
import sys
import threading
import time

from trainables.errors import first_line
from trainables.store import client


@contextlib.contextmanager
def system_metrics(uri, run_id, enabled):
    """While the block runs, this machine's system metrics go to the run (``system/*``: CPU and
    memory use, disk, network, and each GPU's through pynvml when it is installed), every
    ``$MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` s (MLflow's default: 10). MLflow's own
    collectors take the samples; they are logged through ``client()``, which waits out a busy
    SQLite store (MLflow's ``SystemMetricsMonitor`` stops for good at the first "database is
    locked"). A restarted run goes on from its last step."""
    if not enabled:
        yield
        return
    sampler = _SystemSampler(uri, run_id)
    sampler.start()
    try:
        yield
    finally:
        sampler.stop()


class _SystemSampler(threading.Thread):
    """Samples MLflow's system-metric collectors each interval and logs one step per interval."""

    PREFIX = "system/"

    def __init__(self, uri, run_id):
        from mlflow.environment_variables import MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL
        from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
        from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
        from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

        super().__init__(name="dcgan-lab-system-metrics", daemon=True)
        self.uri, self.run_id = uri, run_id
        self.interval = MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL.get() or 10
        self.collectors = [CPUMonitor(), DiskMonitor(), NetworkMonitor(), *_gpu_collectors()]
        self._halt = threading.Event()
        run = client(uri).get_run(run_id)
        steps = [m.step for m in run.data._metric_objs if m.key.startswith(self.PREFIX)]
        self.step = max(steps) + 1 if steps else 0

    def run(self):
        """One sample per interval; the last, shorter interval is logged too when the block ends,
        so a run shorter than one interval still has a sample."""
        for c in self.collectors:   # primes the counters (CPU % is measured since the last reading)
            c.collect_metrics()
            c.clear_metrics()
        while True:
            halted = self._halt.wait(self.interval)
            for c in self.collectors:
                c.collect_metrics()
            self._log_sample()
            if halted:
                return

    def _log_sample(self):
        from mlflow.entities import Metric

        values = {}
        for c in self.collectors:
            values.update(c.aggregate_metrics())
            c.clear_metrics()
        now = int(time.time() * 1000)
        metrics = [Metric(self.PREFIX + k, float(v), now, self.step) for k, v in values.items()]
        try:
            client(self.uri).log_batch(self.run_id, metrics=metrics)
        except Exception as err:  # noqa: BLE001 - a lost sample must not stop training
            print(f"[dcgan-lab] system metrics at step {self.step} not logged: {first_line(err)}", file=sys.stderr)
        self.step += 1

    def stop(self):
        self._halt.set()
        self.join(timeout=60)


def _gpu_collectors():
    """MLflow's GPU collector when pynvml finds a GPU; none otherwise."""
    try:
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        return [GPUMonitor()]
    except Exception:  # noqa: BLE001 - no pynvml, or no GPU: CPU, disk and network only
        return []
