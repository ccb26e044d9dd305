"""Rank 0's MLflow logger: metrics, sample grids, the final models, tags; it survives store outages."""
import io
import sys
import time
from pathlib import Path

from trainables.store import client, fail_fast

MODEL_DIR = "model"          # artifacts: model/generator.pt, model/discriminator.pt, model/config.yaml


class RunLogger:
    """Rank 0's logger. Buffers what the store refuses (outage) and retries; never raises mid-run.

    After a resume, steps at or below the last one already in the store are skipped, so the
    metric history never holds a step twice.
    """

    def __init__(self, uri, run_id, skip_through=-1):
        self.uri, self.run_id = uri, run_id
        self.client = client(uri)
        self.skip_through = skip_through
        self.pending = []        # Metric objects the store has not accepted yet
        self.warned = False

    @classmethod
    def resuming(cls, uri, run_id, keys=("loss_d",)):
        """A logger that skips the steps an interrupted attempt already logged."""
        c = client(uri)
        last = -1
        for key in keys:
            history = c.get_metric_history(run_id, key)
            last = max([last] + [m.step for m in history])
        return cls(uri, run_id, skip_through=last)

    def metrics(self, step, values):
        from mlflow.entities import Metric

        if step <= self.skip_through:
            return
        ts = int(time.time() * 1000)
        self.pending += [Metric(k, float(v), ts, step) for k, v in values.items()]
        self.flush()

    def flush(self, retries=0, wait_s=2.0):
        for attempt in range(retries + 1):
            if not self.pending:
                return True
            try:
                while self.pending:   # in the store's batch limit; what was written is not sent again
                    with fail_fast():
                        self.client.log_batch(self.run_id, metrics=self.pending[:1000])
                    self.pending = self.pending[1000:]
                if self.warned:
                    print("[dcgan-lab] tracking store is back; buffered metrics were written", file=sys.stderr)
                    self.warned = False
                return True
            except Exception as err:  # noqa: BLE001 - any store failure: keep the metrics, go on
                if not self.warned:
                    print(f"[dcgan-lab] warning: tracking store unavailable ({type(err).__name__}); "
                          f"buffering {len(self.pending)} metrics and retrying", file=sys.stderr)
                    self.warned = True
                if attempt < retries:
                    time.sleep(wait_s)
        return False

    def image(self, step, pil_image, key="samples"):
        if step <= self.skip_through:
            return
        self._try(lambda: self.client.log_image(self.run_id, pil_image, key=key, step=step))

    def artifact_bytes(self, data, artifact_path, filename):
        """Upload bytes as an artifact file (through a temp dir: MLflow uploads files)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / filename
            p.write_bytes(data)
            self._try(lambda: self.client.log_artifact(self.run_id, str(p), artifact_path), retries=5)

    def tags(self, tags):
        for k, v in tags.items():
            self._try(lambda k=k, v=v: self.client.set_tag(self.run_id, k, str(v)))

    def params(self, params):
        """Params known only inside the run (a resumed run logs the same values again)."""
        for k, v in params.items():
            self._try(lambda k=k, v=v: self.client.log_param(self.run_id, k, str(v)))

    def _try(self, fn, retries=1):
        for attempt in range(retries + 1):
            try:
                with fail_fast():
                    return fn()
            except Exception as err:  # noqa: BLE001
                if attempt == retries:
                    print(f"[dcgan-lab] warning: could not log to the tracking store: {err}", file=sys.stderr)
                else:
                    time.sleep(2.0)


def torch_bytes(obj):
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()
