"""The frozen evaluators' files: weights that ship with the project, each under its SHA-256.

A folder of evaluators (the package's ``weights/``, or ``$DCGAN_LAB_EVALUATORS``) holds one
``<dataset>-<size>px-nc<channels>-v<version>.pt`` per trained evaluator and a ``manifest.json``
listing them: file, digest, version, data set, size, channels, training settings, held-out scores,
torch version and date. A file is used only when its digest is the manifest's, so every machine
measures FD with the same weights, as FID does with Inception's. A new evaluator is a new version
beside the old ones (``dcgan-lab evaluator train``); a shipped file is never overwritten.
"""
import hashlib
import io
import json
import os
from pathlib import Path

import torch

from trainables.atomic import write_atomic
from trainables.errors import UserError

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = "manifest.json"
DIR_ENV = "DCGAN_LAB_EVALUATORS"   # another folder of evaluators (tests, a new version being tried)
NOT_INSTALLED = {   # data sets whose files are not on this machine by default: how to get them
    "mnist": "README's Data sets section: --set download=true, or MNIST/raw/ under data_root",
    "fashion-mnist": "apt-get install dataset-fashion-mnist, or --set download=true",
    "cifar10": "README's Data sets section: --set download=true, or cifar-10-batches-py/ under data_root",
    "celeba": "README's Data sets section: celeba/ with its images and list_attr_celeba.txt under data_root",
}


class FrozenEvaluatorError(UserError):
    """A registered evaluator that cannot be loaded frozen (not made, missing, changed): the run stops,
    even under feature_extractor=auto, rather than measure nothing or something else."""


def evaluator_dir():
    """The folder evaluators are loaded from: ``$DCGAN_LAB_EVALUATORS``, else the shipped one."""
    return Path(os.environ.get(DIR_ENV) or WEIGHTS_DIR)


def file_name(dataset, image_size, nc, version):
    return f"{dataset}-{image_size}px-nc{nc}-v{version}.pt"


def read_manifest(folder):
    """The manifest's entries (a list of dicts), [] when the folder has none."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return []
    return json.loads(path.read_text())["evaluators"]


def find_entry(dataset, image_size, nc, folder=None):
    """The newest version of this evaluator in ``folder`` (default: evaluator_dir()), or None."""
    entries = [e for e in read_manifest(folder or evaluator_dir())
               if (e["dataset"], e["image_size"], e["nc"]) == (dataset, image_size, nc)]
    return max(entries, key=lambda e: e["version"], default=None)


def not_shipped(dataset, image_size, nc, folder=None):
    """The one-line error for an evaluator the folder lacks: what there is and how to make it."""
    folder = folder or evaluator_dir()
    have = sorted({f"{e['dataset']}@{e['image_size']}px/nc{e['nc']}" for e in read_manifest(folder)})
    make = f"dcgan-lab evaluator train --dataset {dataset} --size {image_size} --nc {nc}"
    data = f" once its data is installed ({NOT_INSTALLED[dataset]})" if dataset in NOT_INSTALLED else ""
    return FrozenEvaluatorError(f"no frozen evaluator for dataset={dataset!r} at image_size={image_size}, nc={nc} in {folder} "
                     f"(it has: {', '.join(have) or 'none'}); make one with `{make}`{data}")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_verified(entry, folder=None):
    """The state saved in ``entry``'s file, once its SHA-256 is the manifest's; else one line
    naming the file and both digests."""
    path = Path(folder or evaluator_dir()) / entry["file"]
    if not path.exists():
        raise FrozenEvaluatorError(f"evaluator file {path} is missing (manifest sha256 {entry['sha256']}): reinstall the "
                        f"package, or point {DIR_ENV} at a folder that has it")
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != entry["sha256"]:
        raise FrozenEvaluatorError(f"evaluator file {path} has sha256 {found}, the manifest says {entry['sha256']}: refusing "
                        f"a changed evaluator (reinstall the package; retraining is a new version)")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def write_version(folder, record, state):
    """Save ``state`` as the next version of ``record``'s evaluator (dataset, image_size, nc, ...)
    in ``folder`` and add it to the manifest; returns the manifest entry. Never overwrites a file."""
    folder = Path(folder)
    entries = read_manifest(folder)
    key = (record["dataset"], record["image_size"], record["nc"])
    version = 1 + max((e["version"] for e in entries if (e["dataset"], e["image_size"], e["nc"]) == key), default=0)
    name = file_name(*key, version)
    path = folder / name
    if path.exists():
        raise UserError(f"evaluator file {path} exists but is not in {folder / MANIFEST}: move it away "
                        f"(a shipped evaluator is never overwritten)")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())
    entry = {"file": name, "sha256": sha256_of(path), "version": version, **record}
    write_atomic(folder / MANIFEST, json.dumps({"evaluators": entries + [entry]}, indent=1) + "\n")
    return entry
