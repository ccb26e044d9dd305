"""MLflow's tracking store as every process opens it: a client that waits out a busy SQLite file,
the experiment, and a run's start and end. The driver, Tune trials and rank 0 all go through here.
"""
import contextlib
import logging
import os
import time
import warnings
from pathlib import Path

from trainables.errors import UserError

# MLflow's HTTP client retries a dead server for minutes (7 retries, doubling back-off) and
# waits 120 s on a silent one. The reachability probe and the run logger want the failure now:
# the logger buffers and retries on its own, without stalling training.
FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def artifact_root(uri):
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
        return c.create_experiment(name, artifact_location=artifact_root(uri))
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


def start_run(uri, experiment, run_name, params, tags, parent_run_id=None):
    """Create a run with the whole resolved config as params, and the versions that shape its numbers
    (``trainables.versions``); returns its id."""
    from mlflow.entities import Param

    from trainables.versions import software_params

    c = client(uri)
    versions, drift = software_params()
    params, tags = {**params, **versions}, {**tags, **drift}
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


def end_run(uri, run_id, status="FINISHED"):
    client(uri).set_terminated(run_id, status)


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
            with FileLock(f"{db}.lock", timeout=STORE_LOCK_TIMEOUT_S), _quiet("mlflow.store.db.utils"):
                retry_when_locked(uri, lambda: MlflowClient(uri))  # builds the store: tables, migrations
        except Timeout:
            raise UserError(f"mlflow_uri={uri!r} cannot be opened: another process held {db}.lock for "
                            f"{STORE_LOCK_TIMEOUT_S} s while creating the store") from None
    _OPENED.add(uri)


@contextlib.contextmanager
def _quiet(logger_name):
    """No INFO lines from ``logger_name`` in this block (MLflow announces each table it creates)."""
    import logging

    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


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
