"""One typed config: the paper's values are the defaults; every value checked against its key.

Every setting has one home here, with its default and a one-line comment. The same names are
used in presets, on the command line, in search spaces, as MLflow params and in table headers.
Presets and ``--set`` overrides are read on the driver (``orchestrator/config.py``); a worker
rebuilds the config from its dict (``config_from_dict``).
"""
import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional, get_args, get_origin

from trainables.errors import bad_value

BN_PLACEMENTS = ("paper", "all", "none", "g_only", "d_only")
IMAGE_SIZES = (32, 64, 128)
DATA_PLACEMENTS = ("auto", "device", "host")
PRECISIONS = ("fp32", "bf16", "fp16")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


def setting(default, help_, **checks):
    """A typed setting: its default, a one-line help and its checks (choices, min, gt, max, lt)."""
    return field(default=default, metadata=dict(help=help_, **checks))


@dataclass
class Config:
    # Data.
    dataset: str = setting("synthetic-faces", "data set name from the registry (dcgan-lab data preview lists them)")
    data_root: str = setting("./data", "where real data sets live on disk")
    download: bool = setting(False, "let torchvision download the data set (needs internet)")
    dataset_size: int = setting(60000, "images in a synthetic data set", min=1)
    data_seed: int = setting(0, "seed of the synthetic data set itself (not of training)", min=0)
    image_size: int = setting(64, "image side in pixels; the layer count follows", choices=IMAGE_SIZES)
    nc: int = setting(3, "image channels", choices=(1, 3))
    data_cache: bool = setting(True, "batches from a uint8 copy of the data set built once per machine; false: decode each")
    data_placement: str = setting("auto", "where the cached data set lives while training: device (moved there once per "
                                          "trial, batches indexed there), host (sliced per step), auto (device on CUDA); "
                                          "with data_cache=false batches always come from the loader",
                                  choices=DATA_PLACEMENTS)
    # Model (paper section 3).
    nz: int = setting(100, "latent dimension", min=1)
    z_dist: str = setting("normal", "latent prior: normal N(0,1) or uniform U(-1,1) (the paper's code)",
                       choices=("normal", "uniform"))
    ngf: int = setting(64, "generator width (channels of its last hidden layer)", min=1)
    ndf: int = setting(64, "discriminator width (channels of its first layer)", min=1)
    bn_placement: str = setting("paper", "where BatchNorm goes", choices=BN_PLACEMENTS)
    g_upsample: str = setting("transposed", "G's upsampling: fractionally-strided convs (paper) or resize + conv",
                           choices=("transposed", "resize_conv"))
    d_downsample: str = setting("strided", "D's downsampling: strided convs (paper) or conv + max-pooling",
                             choices=("strided", "maxpool"))
    d_head: str = setting("conv", "D's output: conv to one logit (paper), global average pooling, or an FC hidden layer",
                       choices=("conv", "gap", "fc"))
    g_activation: str = setting("relu", "G's hidden activation (paper: relu)", choices=("relu", "leaky_relu"))
    d_activation: str = setting("leaky_relu", "D's hidden activation (paper: leaky_relu, slope 0.2)",
                             choices=("leaky_relu", "relu"))
    # Optimisation (paper section 4).
    lr: float = setting(2e-4, "Adam learning rate for both nets", gt=0)
    lr_g: Optional[float] = setting(None, "generator learning rate (null: lr)", gt=0)
    lr_d: Optional[float] = setting(None, "discriminator learning rate (null: lr)", gt=0)
    beta1: float = setting(0.5, "Adam beta1 (momentum); the paper lowered it from 0.9", min=0, lt=1)
    beta2: float = setting(0.999, "Adam beta2", min=0, lt=1)
    batch_size: int = setting(128, "global batch size, split evenly across workers", min=1)
    epochs: int = setting(5, "passes over the data set (0: no limit, use max_steps)", min=0)
    max_steps: int = setting(0, "stop after this many steps (0: no limit, use epochs)", min=0)
    seed: int = setting(0, "training seed: weights, noise and data order", min=0)
    # Logging, samples, checkpoints.
    log_every: int = setting(10, "steps between logged losses", min=1)
    sample_every: int = setting(200, "steps between fixed-noise sample grids", min=1)
    checkpoint_every: int = setting(500, "steps between checkpoints", min=1)
    n_samples: int = setting(64, "images in the fixed-noise grid", min=1)
    # Evaluation (quality every eval_every steps; stability at the end).
    eval_every: int = setting(500, "steps between evaluations (FD, KID, precision/recall); 0: off", min=0)
    eval_n: int = setting(2000, "generated (and real) images per evaluation", min=1)
    feature_extractor: str = setting("auto", "auto: Inception when its weights are present, else the data set's evaluator",
                                  choices=("auto", "domain", "inception"))
    inception_weights: str = setting("", "path to the FID Inception weights (empty: the library's cache)")
    # Distribution (Ray Train).
    num_workers: int = setting(1, "Ray Train workers (DDP ranks)", min=1)
    cpus_per_worker: int = setting(2, "CPUs per worker; torch threads follow it", min=1)
    use_gpu: bool = setting(False, "one GPU per worker, nccl backend")
    max_failures: int = setting(3, "worker failures survived by resuming from the last checkpoint", min=0)
    storage_path: str = setting("./ray_results", "Ray Train storage: a local folder, a shared path or s3://")
    loader_workers: int = setting(0, "DataLoader worker processes per Ray worker", min=0)
    gpus_per_trial: float = setting(1.0, "GPU share of a single-worker sweep trial (0.25: four per GPU)", gt=0, max=1)
    sync_bn: bool = setting(False, "SyncBatchNorm under DDP: BN statistics over the global batch (the paper's one GPU)")
    # Speed on the device (the paper's numerics are the defaults).
    precision: str = setting("fp32", "autocast dtype: fp32 (paper), bf16, or fp16 with a gradient scaler (CUDA only)",
                          choices=PRECISIONS)
    channels_last: bool = setting(False, "NHWC memory layout for the nets and batches")
    cudnn_benchmark: bool = setting(False, "let cuDNN time its conv algorithms and keep the fastest (CUDA only)")
    compile: str = setting("none", "torch.compile G and D: none, default, reduce-overhead (CUDA graphs), max-autotune",
                        choices=COMPILE_MODES)
    # Tracking.
    mlflow_uri: str = setting("", "MLflow tracking URI (empty: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    experiment: str = setting("dcgan-lab", "MLflow experiment name")
    system_metrics: bool = setting(False, "log CPU, memory, disk, network (and GPU through pynvml) as system/* metrics")
    # Tests.
    inject_nan: str = setting("", "fault injection: 'RANK:STEP' makes that rank's losses NaN at that step (empty: off)")

    def to_dict(self):
        return dataclasses.asdict(self)

    @property
    def lr_g_value(self):
        return self.lr if self.lr_g is None else self.lr_g

    @property
    def lr_d_value(self):
        return self.lr if self.lr_d is None else self.lr_d

    @property
    def inject_nan_at(self):
        """``inject_nan`` as (rank, step), or None."""
        return tuple(int(x) for x in self.inject_nan.split(":")) if self.inject_nan else None

    @property
    def bn_batch_size(self):
        """Images each BatchNorm layer normalises per call: a worker's share, or the global batch with sync_bn."""
        return self.batch_size if self.sync_bn or self.num_workers == 1 else self.batch_size // self.num_workers


FIELDS = {f.name: f for f in fields(Config)}


def coerce(key, value):
    """Check one value against the key's type and bounds; return it in the key's type."""
    if key not in FIELDS:
        raise bad_value(key.split("=")[0], value, f"unknown key; known keys: {', '.join(FIELDS)}")
    return coerce_field(FIELDS[key], value, key)


def coerce_field(f, value, key):
    """Check ``value`` against the dataclass field ``f`` (its type, choices and bounds), naming it
    ``key`` in the error; any typed settings declared with ``_opt`` are checked by this."""
    kind, optional = _field_type(f)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("null", "none")):
        if optional:
            return None
        raise bad_value(key, value, f"a {kind.__name__} is required")
    if kind in (int, float) and isinstance(value, str):
        value = _parse_number(kind, value)  # YAML 1.1 reads "1e-3" as a string
    if kind is bool:
        if not isinstance(value, bool):
            raise bad_value(key, value, "true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_value(key, value, "an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad_value(key, value, "a number")
        value = float(value)
        if not math.isfinite(value):
            raise bad_value(key, value, "a finite number")
    elif kind is str:
        if not isinstance(value, str):
            value = str(value)
    _check_bounds(key, value, f.metadata)
    return value


def _parse_number(kind, text):
    try:
        return kind(text)
    except ValueError:
        return text  # left as a string: the type check below names it


def _field_type(f):
    if get_origin(f.type) is not None:  # Optional[X]
        return next(a for a in get_args(f.type) if a is not type(None)), True
    return f.type, False


def _check_bounds(key, value, meta):
    if "choices" in meta and value not in meta["choices"]:
        raise bad_value(key, value, f"one of {', '.join(map(str, meta['choices']))}")
    if "min" in meta and value < meta["min"]:
        raise bad_value(key, value, f">= {meta['min']}")
    if "gt" in meta and value <= meta["gt"]:
        raise bad_value(key, value, f"> {meta['gt']}" + (f" and <= {meta['max']}" if "max" in meta else ""))
    if "max" in meta and value > meta["max"]:
        raise bad_value(key, value, (f"> {meta['gt']} and " if "gt" in meta else "") + f"<= {meta['max']}")
    if "lt" in meta and value >= meta["lt"]:
        raise bad_value(key, value, f"< {meta['lt']}")


def config_from_dict(d):
    """The config from a dict of keys: a preset with its overrides, or a config saved with a run or
    checkpoint. Every value is checked (unknown keys are an error); cross-key rules last."""
    from trainables.data.registry import resolve_data_root

    cfg = Config(**{k: coerce(k, v) for k, v in d.items()})
    # The default data_root stands for where the data set is installed (Debian's Fashion-MNIST).
    cfg = dataclasses.replace(cfg, data_root=resolve_data_root(cfg.dataset, cfg.data_root))
    validate(cfg)
    return cfg


def run_params(cfg):
    """A run's MLflow params: the whole config and what follows from it (the BN batch)."""
    return {**cfg.to_dict(), "bn_batch_size": cfg.bn_batch_size}


def validate(cfg):
    if cfg.batch_size % cfg.num_workers:
        raise bad_value("batch_size", cfg.batch_size,
                        f"a multiple of num_workers={cfg.num_workers} (the global batch is split evenly)")
    if cfg.inject_nan and not re.fullmatch(r"\d+:\d+", cfg.inject_nan):
        raise bad_value("inject_nan", cfg.inject_nan, "RANK:STEP (two integers) or empty")
    if cfg.epochs == 0 and cfg.max_steps == 0:
        raise bad_value("max_steps", 0, "> 0 when epochs=0 (otherwise training never stops)")
    validate_device(cfg)
    from trainables.data import get_entry

    entry = get_entry(cfg.dataset)  # raises with the list of names
    if not entry.synthetic and not cfg.download:
        root = Path(cfg.data_root)
        if not root.is_dir() or not any(root.iterdir()):
            raise bad_value("data_root", cfg.data_root,
                            f"an existing, non-empty folder holding {cfg.dataset} "
                            "(or --set download=true on a machine with internet)")


def validate_device(cfg):
    """Device settings that cannot run as asked are refused here, not in a worker."""
    needs_cuda = {  # key -> (asked for, why it needs CUDA)
        "precision": (cfg.precision == "fp16", "fp16 trains with a gradient scaler on CUDA; use bf16 on CPU"),
        "compile": (cfg.compile == "reduce-overhead", "CUDA graphs need a GPU; compile=default runs on CPU"),
        "sync_bn": (cfg.sync_bn and cfg.num_workers > 1, "SyncBatchNorm runs on CUDA only: DDP refuses it on CPU"),
        "gpus_per_trial": (cfg.gpus_per_trial < 1, "a share of a GPU needs a GPU"),
    }
    for key, (asked, why) in needs_cuda.items():
        if asked and not cfg.use_gpu:
            raise bad_value(key, getattr(cfg, key), f"only with use_gpu=true ({why})")
    if cfg.gpus_per_trial < 1 and cfg.num_workers > 1:
        raise bad_value("gpus_per_trial", cfg.gpus_per_trial,
                        f"1 with num_workers={cfg.num_workers}: a GPU share is for single-worker trials")
