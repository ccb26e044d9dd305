"""``dcgan-lab train`` and ``dcgan-lab sample``: one tracked DCGAN run on Ray Train, and reloading it."""
import os
import sys
from pathlib import Path

from orchestrator.config import preset_names, resolve_config
from trainables import run_inputs
from trainables.config import run_params
from trainables.errors import UserError, first_line
from trainables.trial import build_trainer, fit_and_close


def add_subparser(subparsers):
    p = subparsers.add_parser("train", help="train one DCGAN on Ray Train, tracked in MLflow")
    p.add_argument("--preset", help=f"one of: {', '.join(preset_names())}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and parameter counts, then exit")
    p.set_defaults(func=cmd_train)

    s = subparsers.add_parser("sample", help="reload a tracked generator and write a sample grid")
    s.add_argument("--run", required=True, help="MLflow run id")
    s.add_argument("--n", type=int, default=64, help="number of samples")
    s.add_argument("--seed", type=int, default=0, help="noise seed")
    s.add_argument("--out", required=True, help="output PNG")
    s.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    s.set_defaults(func=cmd_sample)


def cmd_train(args):
    from orchestrator.config import parse_overrides

    cfg = resolve_config(args.preset, parse_overrides(args.overrides))
    if args.dry_run:
        print_dry_run(cfg)
        return 0
    run_id, status = run_training(cfg, run_name=args.preset or "train")
    print(f"run {run_id}: {status}")
    print("last sample grid in the MLflow run's artifacts (images/); open the UI with: dcgan-lab ui")
    return 0 if status == "finished" else 1


def print_dry_run(cfg):
    import yaml

    from trainables.models import build_models, count_params

    netG, netD = build_models(cfg)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip())
    print(f"# parameters: G = {count_params(netG):,}  D = {count_params(netD):,}")


def run_training(cfg, run_name="train", parent_run_id=None, tags=None):
    """Start Ray if needed, create the MLflow run, train, and close the run with its status."""
    from orchestrator import tracking
    from trainables import store
    from trainables.run_eval import prepare_evaluation

    cfg = with_absolute_paths(cfg)
    uri = tracking.tracking_uri(cfg.mlflow_uri)
    tracking.check_reachable(uri)
    check_data(cfg)
    cfg = prepare_evaluation(cfg)  # the feature space, decided once and pinned (a param of the run)
    init_ray()
    check_resources(cfg)
    storage = prepare_storage(cfg.storage_path)

    run_id = store.start_run(uri, cfg.experiment, run_name, run_params(cfg),
                             {**run_tags(), **(tags or {})}, parent_run_id)
    run_inputs.log_dataset(uri, run_id, cfg)
    trainer = build_trainer(cfg, run_id, uri, storage, name=f"train-{run_id}")
    return run_id, fit_and_close(trainer.fit, uri, run_id, cfg)


RAY_INIT_SECONDS = {}   # {"seconds": s} once this process started or joined Ray (the sweep logs it)


def init_ray(dashboard=True):
    """Join ``$RAY_ADDRESS`` if set (``auto``: the cluster started on this machine), else start a
    local Ray of our own. Its dashboard (127.0.0.1) serves the State API that Ray Train's
    controller polls (without it, a warning every second); in-trial sweeps skip it (~1 GB, seconds
    of start-up)."""
    import time

    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if address:
        check_ray_address(address)
    t = time.perf_counter()
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            # "local": always a new Ray of our own; a plain ray.init() would join any cluster that
            # someone started with `ray start` on this machine (RAY_ADDRESS=auto asks for that).
            ray.init(address="local", log_to_driver=True, include_dashboard=dashboard)
    except Exception as err:  # noqa: BLE001 - Ray raises bare Exception when a local node times out
        first = first_line(err)
        if address:
            raise UserError(f"RAY_ADDRESS={address!r} cannot be reached: {first}") from None
        raise UserError(f"a local Ray could not start: {first}") from None
    RAY_INIT_SECONDS["seconds"] = time.perf_counter() - t


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


def cmd_sample(args):
    import torch

    from orchestrator import tracking
    from trainables.loop import to_grid_image
    from trainables.models import sample_z
    from trainables.step import generate

    if args.n < 1:
        raise UserError(f"n={args.n} is not allowed: >= 1")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"out={args.out!r} is not allowed: a .png file")
    uri = tracking.tracking_uri(args.mlflow_uri)
    netG, cfg = tracking.load_generator(uri, args.run)
    z = sample_z(args.n, cfg.nz, cfg.z_dist, generator=torch.Generator().manual_seed(args.seed))
    out.parent.mkdir(parents=True, exist_ok=True)
    to_grid_image(generate(netG, z)).save(out)
    print(f"wrote {out} ({args.n} samples from run {args.run})", file=sys.stderr)
    return 0
