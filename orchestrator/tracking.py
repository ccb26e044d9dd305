"""MLflow: which store, runs with their params, a rank-0 logger that survives outages, reloading G.

Every subcommand picks its store the same way: ``mlflow_uri`` if set, else ``$MLFLOW_TRACKING_URI``,
else a SQLite file ``mlflow.db`` in the working directory with artifacts in ``mlartifacts/`` beside it.
"""
import contextlib
import io
import logging
import os
import sys
import threading
import time
import warnings
from pathlib import Path

from trainables.errors import UserError, first_line

DEFAULT_DB = "mlflow.db"
MODEL_DIR = "model"          # artifacts: model/generator.pt, model/discriminator.pt, model/config.yaml
# MLflow's HTTP client retries a dead server for minutes (7 retries, doubling back-off) and
# waits 120 s on a silent one. The reachability probe and the run logger want the failure now:
# the logger buffers and retries on its own, without stalling training.
FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def tracking_uri(cfg_uri=""):
    uri = cfg_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        uri = "sqlite:///" + str(Path(DEFAULT_DB).absolute())
    return uri


def _artifact_root(uri):
    """Artifacts beside a SQLite file; a server decides for itself (None)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").absolute().as_uri()
    return None


def client(uri):
    """An MlflowClient for ``uri``; on a local SQLite store, opened through ``open_store`` and
    retrying "database is locked"."""
    import mlflow
    from mlflow import MlflowClient

    _quiet_mlflow()
    open_store(uri)
    mlflow.set_tracking_uri(uri)
    if _sqlite_file(uri) is None:
        return MlflowClient(uri)
    return _RetryWhenLocked(MlflowClient(uri), uri)


def experiment_id(c, name, uri):
    from mlflow.exceptions import MlflowException

    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return c.create_experiment(name, artifact_location=_artifact_root(uri))
    except MlflowException as err:  # another command created it since the lookup
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return c.get_experiment_by_name(name).experiment_id


@contextlib.contextmanager
def fail_fast():
    """MLflow requests in this block fail at once instead of retrying (MLflow reads these per request)."""
    saved = {k: os.environ.get(k) for k in FAIL_FAST}
    os.environ.update(FAIL_FAST)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_reachable(uri):
    """Fail early, with one line, when the tracking store cannot be reached. A SQLite store that
    does not exist yet is not created here (the first run creates it): only its folder is checked."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.parent.is_dir() or not os.access(db.parent, os.W_OK):
            raise UserError(f"mlflow_uri={uri!r} cannot be used: {db.parent} is not a writable folder")
        if not db.exists():
            return
    try:
        with fail_fast():
            client(uri).search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any failure here means "cannot reach the store"
        raise UserError(f"mlflow_uri={uri!r} cannot be reached: {first_line(err)}") from None


def start_run(uri, experiment, run_name, params, tags, parent_run_id=None):
    """Create a run with the whole resolved config as params; returns its id."""
    from mlflow.entities import Param

    c = client(uri)
    tags = dict(tags)
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    exp = experiment_id(c, experiment, uri)
    mark_model_training(c, exp)
    run = c.create_run(exp, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
    c.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def mark_model_training(c, exp_id):
    """Tag the experiment as model training (MLflow's experiment kind), unless it has a kind.
    MLflow 3.17's UI opens on the ``workflowType`` of the URL or the browser's last choice and
    reads the tag only when that switch is off: ``dcgan-lab ui`` prints URLs that carry it."""
    key, value = EXPERIMENT_KIND
    if key not in c.get_experiment(exp_id).tags:
        c.set_experiment_tag(exp_id, key, value)


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
        from mlflow.entities import Metric

        while not self._halt.is_set():
            for c in self.collectors:
                c.collect_metrics()
            if self._halt.wait(self.interval):
                return
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


def end_run(uri, run_id, status="FINISHED"):
    client(uri).set_terminated(run_id, status)


def get_run(uri, run_id):
    """The run, or a one-line error for an unknown id."""
    from mlflow.exceptions import MlflowException

    if not run_id or "/" in run_id or ".." in run_id:
        raise UserError(f"run={run_id!r} is not a valid MLflow run id")
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise UserError(f"run={run_id!r} was not found: there is no tracking store at {uri}")
    try:
        return client(uri).get_run(run_id)
    except MlflowException:
        raise UserError(f"run={run_id!r} was not found in the tracking store {uri}") from None


def load_generator(uri, run_id):
    """Reload G and its config from a run's artifacts (``weights_only`` loading)."""
    import yaml
    from mlflow.exceptions import MlflowException

    from trainables.checkpoints import load_safe
    from trainables.config import config_from_dict
    from trainables.models import build_generator

    get_run(uri, run_id)
    try:
        local = client(uri).download_artifacts(run_id, MODEL_DIR)
    except (MlflowException, OSError):
        raise UserError(f"run={run_id!r} has no generator: no {MODEL_DIR}/ artifacts (did it finish?)") from None
    local = Path(local)
    if not (local / "generator.pt").is_file():
        raise UserError(f"run={run_id!r} has no generator: {MODEL_DIR}/generator.pt is missing")
    cfg = config_from_dict(yaml.safe_load((local / "config.yaml").read_text()))
    netG = build_generator(cfg)
    netG.load_state_dict(load_safe(local / "generator.pt"))
    return netG, cfg


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
            self._try(lambda: self.client.set_tag(self.run_id, k, str(v)))

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


# ---------------------------------------------------------------------------------------------
# Opening a local SQLite store: several commands at once
# ---------------------------------------------------------------------------------------------
# MLflow creates a SQLite store's tables and runs its schema migrations when a process first
# builds its store object for the URI (SqlAlchemyStore.__init__: "tables missing? migrate"),
# with no lock: two processes doing that at once race ("duplicate column name: step").
STORE_LOCK_TIMEOUT_S = 300   # waiting for another process to finish creating the store
LOCKED_RETRY_S = 120         # "database is locked" is retried with backoff this long, then one line
_OPENED = set()              # store URIs this process has opened (MLflow keeps their store objects)


def _sqlite_file(uri):
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def open_store(uri):
    """Build this process's MLflow store for a local SQLite file under a file lock beside it
    (``<store>.lock``) unless the file already holds MLflow's current schema: then opening it
    migrates nothing, and a read-only look at a store leaves no lock file. MLflow caches the
    store per URI, so every later client in this process reuses it and never migrates again."""
    from filelock import FileLock, Timeout
    from mlflow import MlflowClient

    db = _sqlite_file(uri)
    if db is None or uri in _OPENED:
        return
    # A folder we cannot write holds no store we could create, and no lock file can go there.
    if not _schema_is_current(db) and os.access(db.parent, os.W_OK):
        try:
            with FileLock(f"{db}.lock", timeout=STORE_LOCK_TIMEOUT_S):
                retry_when_locked(uri, lambda: MlflowClient(uri))  # builds the store: tables, migrations
        except Timeout:
            raise UserError(f"mlflow_uri={uri!r} cannot be opened: another process held {db}.lock for "
                            f"{STORE_LOCK_TIMEOUT_S} s while creating the store") from None
    _OPENED.add(uri)


def _schema_is_current(db):
    """The file's alembic revision is MLflow's head: every table and migration is in place (MLflow
    writes the revision after each migration step, so a store being created is not current yet)."""
    import sqlite3

    from mlflow.store.db.utils import _get_latest_schema_revision

    if not db.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=20)) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:  # no alembic table yet, or locked for 20 s: let the locked path decide
        return False
    return row is not None and row[0] == _get_latest_schema_revision()


def _is_locked(err):
    while err is not None:
        if "database is locked" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def retry_when_locked(uri, fn, limit_s=LOCKED_RETRY_S):
    """``fn()``, again after a growing pause (50 ms doubling to 2 s, with jitter) while SQLite
    answers "database is locked": a writer that would deadlock another gets that error at once,
    without SQLite's own busy wait. After ``limit_s`` in all, one line instead of a
    traceback. Running a write again adds nothing twice: what failed was rolled back, and what an
    earlier transaction of the same call committed is matched (MLflow keys a metric by key, step,
    timestamp and value; params and tags by key)."""
    import random

    deadline = time.monotonic() + limit_s
    pause = 0.05
    while True:
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - only "database is locked" is retried
            if not _is_locked(err):
                raise
            if time.monotonic() > deadline:
                raise UserError(f"mlflow_uri={uri!r} stayed locked for {limit_s:g} s: too many writers "
                                f"at once for one SQLite file; serve it with `mlflow server`") from None
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(2 * pause, 2.0)


class _RetryWhenLocked:
    """An MlflowClient whose every call goes through ``retry_when_locked``."""

    def __init__(self, inner, uri):
        self._inner, self._uri = inner, uri

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: retry_when_locked(self._uri, lambda: attr(*args, **kwargs))


class _DropRetriedLocks(logging.Filter):
    """MLflow logs each "database is locked" with a traceback before raising it; we retry those."""

    def filter(self, record):
        return "database is locked" not in record.getMessage()


def torch_bytes(obj):
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _quiet_mlflow():
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # A sweep's server lives only as long as the sweep: links to it would be dead afterwards.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    warnings.filterwarnings("ignore", module="mlflow")
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "Creating initial tables" on stderr
    db_log = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _DropRetriedLocks) for f in db_log.filters):
        db_log.addFilter(_DropRetriedLocks())
