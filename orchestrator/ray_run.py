"""The driver's preamble to a Ray run, for ``train`` and ``sweep`` alike: every check of the
user's input, in one order, so that a bad value fails with one line before Ray starts and before
anything is written; then the work done once for all workers; then Ray itself."""
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator import tracking
from trainables.config import Config
from trainables.errors import UserError, first_line
from trainables.ray_fixes import SETUP_HOOK

# The preamble's phases, in order (the sweep logs each one's seconds as perf_driver_<phase>_s).
PREAMBLE_PHASES = ("checks", "data_cache", "evaluation", "ray_init")
# A sweep's driver, before Tune starts (the sweep runs it, the bench reads its tags): the preamble,
# then the wait for the MLflow server (started after the checks, while the rest is prepared) and
# the parent run.
DRIVER_PHASES = (*PREAMBLE_PHASES, "mlflow_server", "parent_run")


@dataclass(frozen=True)
class RayRun:
    cfg: Config         # local paths absolute, feature_extractor pinned
    uri: str            # the tracking store, reachable
    storage: str        # storage_path, writable (absolute when local)
    ray_init_s: float   # seconds Ray took to start or join (0 when this process had joined already)


def prepare_ray_run(cfg, dashboard=True, check_cluster=None, clock=None, after_checks=None):
    """Check ``cfg`` against the stores, the data and the cluster, and start Ray. ``check_cluster(cfg)``
    is the caller's own test of the running cluster (the sweep's trial plan), made before
    storage_path is written; ``after_checks(uri)`` runs once the input checks have passed (the
    sweep starts its MLflow server there, to import while the rest is prepared); ``clock`` (a
    PhaseClock over PREAMBLE_PHASES) times each phase."""
    from trainables.run_eval import prepare_evaluation

    lap = clock.lap if clock is not None else lambda phase: None
    # Inputs: no Ray, nothing written.
    cfg = with_absolute_paths(cfg)
    uri = tracking.tracking_uri(cfg.mlflow_uri)
    tracking.check_reachable(uri)
    check_data(cfg)
    check_storage(cfg.storage_path)
    if os.environ.get("RAY_ADDRESS"):
        check_ray_address(os.environ["RAY_ADDRESS"])  # seconds, before the evaluator is prepared
    lap("checks")
    if after_checks is not None:
        after_checks(uri)
    # Done once here, for every worker.
    prepare_data_cache(cfg)
    lap("data_cache")
    cfg = prepare_evaluation(cfg)  # the feature space, decided once and pinned (a param of the run)
    lap("evaluation")
    # The cluster, then the first write to storage_path.
    ray_init_s = init_ray(dashboard)
    check_resources(cfg)
    if check_cluster is not None:
        check_cluster(cfg)
    storage = prepare_storage(cfg.storage_path)
    lap("ray_init")
    return RayRun(cfg, uri, storage, ray_init_s)


def init_ray(dashboard=True):
    """Join ``$RAY_ADDRESS`` if set (``auto``: the cluster started on this machine), else start a
    local Ray of our own. Its dashboard (127.0.0.1) serves the State API that Ray Train's
    controller polls (without it, a warning every second); in-trial sweeps skip it (~1 GB, seconds
    of start-up). Returns the seconds ``ray.init`` took (0 when this process had joined Ray already)."""
    import time

    import ray

    if ray.is_initialized():
        return 0.0
    address = os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if address:
        check_ray_address(address)
    t = time.perf_counter()
    try:
        if address:
            ray.init(address=address, log_to_driver=True, runtime_env=RUNTIME_ENV)
        else:
            start_local_ray(log_to_driver=True, include_dashboard=dashboard)
    except Exception as err:  # noqa: BLE001 - Ray raises bare Exception when a local node times out
        first = first_line(err)
        if address:
            raise UserError(f"RAY_ADDRESS={address!r} cannot be reached: {first}") from None
        raise UserError(f"a local Ray could not start: {first}") from None
    return time.perf_counter() - t


# Every worker process of our jobs runs this first (trainables/ray_fixes.py: Train runs end when
# their last step does, not 12 s later).
RUNTIME_ENV = {"worker_process_setup_hook": SETUP_HOOK}
# A local Ray is this one machine: none of its nodes is ever drained for preemption, so Ray Train's
# preemption watcher (a logging-only actor, one more process per Train run: 1.1 s of CPU to start
# on this machine) has nothing to watch. A cluster keeps it.
LOCAL_RUNTIME_ENV = {**RUNTIME_ENV, "env_vars": {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}}

# Ray gives a new node 30 s (a constant in ray/_private/node.py) to register with its GCS; on a
# machine loaded to its cores that can pass, and the error names this phrase.
NODE_TIMEOUT = "timed out during startup"


def start_local_ray(attempts=3, **init_kwargs):
    """A local Ray of our own ("local": a plain ray.init() would join any cluster that someone
    started with `ray start` on this machine; RAY_ADDRESS=auto asks for that). A start that times
    out is tried again, up to ``attempts`` in all, after the processes it left are stopped (Ray
    does not stop them: the node's constructor raised before ray.init could own them)."""
    import sys

    import psutil
    import ray

    init_kwargs.setdefault("runtime_env", LOCAL_RUNTIME_ENV)
    for attempt in range(1, attempts + 1):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            ray.init(address="local", **init_kwargs)
            return
        except Exception as err:  # noqa: BLE001 - Ray raises bare Exception when a local node times out
            if NODE_TIMEOUT not in str(err) or attempt == attempts:
                raise
            stop_new_processes(before)
            ray.shutdown()
            print(f"[dcgan-lab] a local Ray start timed out (Ray allows its node 30 s): trying again, "
                  f"{attempt + 1} of {attempts}", file=sys.stderr, flush=True)


def stop_new_processes(before, timeout_s=10):
    """SIGKILL this process's descendants that are not in ``before`` (pids), and wait for them."""
    import psutil

    new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    for p in new:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(new, timeout=timeout_s)


def check_ray_address(address, timeout_s=5):
    """``ray.init`` retries an unreachable GCS for minutes; a TCP probe answers in seconds."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if address == "auto" or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise UserError(f"RAY_ADDRESS={address!r} cannot be reached: {err.strerror or err}") from None


def check_resources(cfg):
    """A run that can never fit is an error now, not an endless wait."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    need = "GPU" if cfg.use_gpu else "CPU"
    per_worker = 1 if cfg.use_gpu else cfg.cpus_per_worker
    fits = sum(int(n.get(need, 0) // per_worker) for n in nodes)
    if cfg.use_gpu and not any(n.get("CPU", 0) >= cfg.cpus_per_worker for n in nodes):
        fits = 0
    if fits < cfg.num_workers:
        total = sum(n.get(need, 0) for n in nodes)
        key = "use_gpu" if cfg.use_gpu else "cpus_per_worker"
        raise UserError(f"num_workers={cfg.num_workers} x {key}={per_worker if not cfg.use_gpu else True} "
                        f"cannot fit: the Ray cluster has {total:g} {need}(s) in all, room for {fits} worker(s)")


def check_data(cfg):
    """Open a real data set once here, so a missing or unreadable one fails before Ray starts
    (the workers open it again; synthetic sets cannot fail)."""
    from trainables.data import build_dataset, get_entry
    from trainables.loop import data_request

    if not get_entry(cfg.dataset).synthetic:
        build_dataset(data_request(cfg))


def with_absolute_paths(cfg):
    """Local paths made absolute in the driver: Tune runs each trial in its own working directory."""
    import dataclasses

    storage = cfg.storage_path if "://" in cfg.storage_path else str(Path(cfg.storage_path).absolute())
    return dataclasses.replace(cfg, storage_path=storage,
                               data_root=str(Path(cfg.data_root).expanduser().absolute()))


def check_storage(path):
    """Before Ray starts, writing nothing: the nearest existing folder of a local storage_path must
    be a folder this process may write in (``prepare_storage`` then makes and probes it)."""
    if "://" in path:
        return
    p = Path(path).absolute()
    existing = next(a for a in (p, *p.parents) if a.exists())
    if not existing.is_dir():
        raise UserError(f"storage_path={path!r} is not writable: {os.strerror(errno.ENOTDIR)} ({existing})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"storage_path={path!r} is not writable: {os.strerror(errno.EACCES)} ({existing})")


def prepare_storage(path):
    """Local storage must be writable now, not at the first checkpoint."""
    if "://" in path:
        return path
    p = Path(path).absolute()
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".write-probe"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as err:
        raise UserError(f"storage_path={path!r} is not writable: {err.strerror}") from None
    return str(p)


def run_tags():
    import platform
    import subprocess

    import ray
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"git_commit": commit or "unknown", "ray_version": ray.__version__,
            "torch_version": torch.__version__, "python_version": platform.python_version()}


def prepare_data_cache(base):
    """Render or decode the base config's data set into the data cache now, on every core, before
    Ray starts: its trials then only map the file (one that searches data keys builds its own)."""
    if not base.data_cache:
        return
    import time

    from trainables.data.cache import ensure_cache
    from trainables.loop import data_request

    t = time.perf_counter()
    path = ensure_cache(data_request(base))
    print(f"[dcgan-lab] data cache: {path} ({time.perf_counter() - t:.1f} s)", flush=True)
