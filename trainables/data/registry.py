"""Data sets registered by name: every loader in the project is looked up here.

A data set yields ``(image, labels)``: ``image`` a float CHW tensor in [-1, 1] of size
``image_size``; ``labels`` a dict of tensors that batches with the default collate
(an empty dict for unlabelled data). Asked for ``pixels``, it yields the uint8 image before its
float conversion instead; the entry's ``scale`` is that conversion, so ``scale(pixels)`` is the
float image bit for bit (what the data cache relies on).
"""
import dataclasses
import os
from dataclasses import dataclass
from typing import Callable, Optional

from trainables.errors import UserError

DEFAULT_DATA_ROOT = "./data"


@dataclass(frozen=True)
class DataRequest:
    """Everything a builder needs to make one data set."""

    dataset: str
    image_size: int = 64
    nc: int = 3                # channels the model wants; loaders convert to it
    data_root: str = DEFAULT_DATA_ROOT  # where real data sets live
    download: bool = False     # let torchvision download (needs internet)
    dataset_size: int = 60000  # synthetic data sets only: number of images
    data_seed: int = 0         # synthetic data sets only: the data set's own seed
    split: str = "train"       # train | test
    pixels: bool = False       # uint8 CHW images, before ``scale`` (the data cache's input)


@dataclass(frozen=True)
class DatasetEntry:
    build: Callable[[DataRequest], object]
    scale: Callable                 # uint8 pixels -> float32 in [-1, 1], the data set's own op sequence
    synthetic: bool                 # rendered by the project: needs no files
    label_keys: tuple = ()          # keys of the labels dict (empty: unlabelled)
    summary: str = ""
    locate: Optional[Callable[[str], str]] = None   # the default data_root -> where the files are (None: there)


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name, *, scale, synthetic=False, label_keys=(), summary="", locate=None):
    """Decorator: register ``build(request) -> Dataset`` under ``name``. ``locate(data_root)``, for a
    data set that a system package installs, says where its files are when data_root is the default."""

    def wrap(build):
        DATASETS[name] = DatasetEntry(build, scale, synthetic, tuple(label_keys), summary, locate)
        return build

    return wrap


def dataset_names():
    _load_builtin()
    return sorted(DATASETS)


def get_entry(name):
    _load_builtin()
    if name not in DATASETS:
        raise UserError(f"dataset={name!r} is unknown: choose one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def is_default_root(data_root):
    return os.path.normpath(data_root) == os.path.normpath(DEFAULT_DATA_ROOT)


def resolve_data_root(dataset, data_root):
    """Where ``dataset``'s files are: ``data_root``, unless it is the default and the data set's
    own ``locate`` finds them elsewhere (Debian installs Fashion-MNIST in /usr/share/datasets)."""
    locate = get_entry(dataset).locate
    return locate(data_root) if locate is not None and is_default_root(data_root) else data_root


def build_dataset(request: DataRequest):
    request = dataclasses.replace(request, data_root=resolve_data_root(request.dataset, request.data_root))
    return get_entry(request.dataset).build(request)


def _load_builtin():
    # Importing the modules registers their data sets.
    from trainables.data import synthetic_bedrooms, synthetic_faces, torchvision_sets  # noqa: F401
