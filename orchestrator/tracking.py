"""MLflow on the driver: which store, whether it can be reached, finding a run, reloading G and D.

Every subcommand picks its store the same way: ``mlflow_uri`` if set, else ``$MLFLOW_TRACKING_URI``,
else a SQLite file ``mlflow.db`` in the working directory with artifacts in ``mlartifacts/`` beside it.
Opening the store, starting and ending runs (``trainables/store.py``) and the run's logger
(``trainables/run_logger.py``) run in Tune trials and workers too, so they live in ``trainables/``.
"""
import os
from pathlib import Path

from trainables.errors import UserError, first_line
from trainables.run_logger import MODEL_DIR
from trainables.store import client, fail_fast

DEFAULT_DB = "mlflow.db"


def tracking_uri(cfg_uri=""):
    uri = cfg_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        uri = "sqlite:///" + str(Path(DEFAULT_DB).absolute())
    return uri


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
    from trainables.models import build_generator

    return _load_net(uri, run_id, "generator", build_generator)


def load_discriminator(uri, run_id):
    """Reload D and its config from a run's artifacts (``weights_only`` loading)."""
    from trainables.models import build_discriminator

    return _load_net(uri, run_id, "discriminator", build_discriminator)


def _load_net(uri, run_id, name, build):
    import yaml
    from mlflow.exceptions import MlflowException

    from trainables.checkpoints import load_safe
    from trainables.config import config_from_dict

    get_run(uri, run_id)
    try:
        local = client(uri).download_artifacts(run_id, MODEL_DIR)
    except (MlflowException, OSError):
        raise UserError(f"run={run_id!r} has no {name}: no {MODEL_DIR}/ artifacts (did it finish?)") from None
    local = Path(local)
    if not (local / f"{name}.pt").is_file():
        raise UserError(f"run={run_id!r} has no {name}: {MODEL_DIR}/{name}.pt is missing")
    cfg = config_from_dict(yaml.safe_load((local / "config.yaml").read_text()))
    net = build(cfg)
    net.load_state_dict(load_safe(local / f"{name}.pt"))
    return net, cfg
