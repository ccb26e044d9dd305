"""The data cache: a data set rendered or decoded once per machine into one uint8 array file,
then memory-mapped by every run and trial that trains on it (the page cache holds one copy).

A file is ``$DCGAN_LAB_CACHE/data/<key>.npy`` (default ``~/.cache/dcgan-lab``), an (n, nc, size,
size) uint8 array. The key names the data set, split, size and channels; for a synthetic set its
length and seed, for a real one a fingerprint of the files under data_root (each path, size and
mtime), so that changed files make a new entry; and the cache's VERSION. The first run that needs
an entry builds it under the folder's file lock (the others wait, then read it) into a temporary
file that is renamed into place, so nobody sees half an array. Synthetic sets render in worker processes,
real ones decode through their torchvision loaders the same way.

Batches are bit-identical to the data set's own items: ``scale``, the registry's float conversion
of the same uint8 pixels, runs on the batch on the training device.
"""
import dataclasses
import fcntl
import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from trainables.atomic import TMP_SUFFIX, atomic_file
from trainables.data.registry import build_dataset, get_entry
from trainables.metrics.cache import cache_dir

VERSION = 1          # bump when the file layout or what goes into the pixels changes
BUILD_BATCH = 256    # images per write while building
PARALLEL_FROM = 4096  # smaller sets build faster in-process than worker processes start


def cache_file(request):
    """Where the entry for ``request`` (a DataRequest) lives; real data sets stat data_root."""
    r = request
    if get_entry(r.dataset).synthetic:
        which = f"n{r.dataset_size}-seed{r.data_seed}"
    else:
        which = f"root{_fingerprint(r.data_root)}"
    return Path(cache_dir()) / "data" / f"{r.dataset}-{r.split}-{r.image_size}px-{r.nc}ch-{which}-v{VERSION}.npy"


def _fingerprint(root):
    """A digest of every file under ``root``: its path relative to root, size and mtime."""
    h = hashlib.sha256(os.path.abspath(root).encode())
    hash_tree(h, root)
    return h.hexdigest()[:16]


def hash_tree(h, root):
    """Feed ``h`` every file under ``root`` (relative path, size, mtime), in a stable order."""
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:  # a dangling link: the loader cannot read it either
                continue
            h.update(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())


class CachedImages:
    """A cache entry, memory-mapped: ``batch(indices, device)`` gives the float batch in [-1, 1]."""

    def __init__(self, path, scale):
        self.path, self.scale = Path(path), scale
        self.images = np.load(self.path, mmap_mode="r")

    def __len__(self):
        return len(self.images)

    def batch(self, indices, device):
        pixels = torch.from_numpy(self.images[np.asarray(indices)])   # a copy, in the given order
        return self.scale(pixels.to(device, non_blocking=True))


def open_cache(request, workers=None, progress=False):
    """The entry for ``request``, built first if no run on this machine has built it yet."""
    path = ensure_cache(request, workers, progress)
    return CachedImages(path, get_entry(request.dataset).scale)


def ensure_cache(request, workers=None, progress=False):
    """Build the entry unless it exists; return its path. ``workers``: processes that render or
    decode (None: one per CPU for sets of PARALLEL_FROM images or more, else none)."""
    path = cache_file(request)
    if _complete(path, request):
        return path
    dataset = build_dataset(dataclasses.replace(request, pixels=True))   # checks the request first
    path = cache_file(request)   # a real data set as it is now that it is open (download=true)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One lock for the folder (a file that stays: unlinking a lock file races with its waiters).
    with open(path.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # another process may be building it: wait, then read it
        if not _complete(path, request):
            _write(dataset, path, (request.nc, request.image_size, request.image_size), workers, progress)
    return path


def _complete(path, request):
    """Whether ``path`` holds the entry: renamed into place only once whole, so a header and
    shape check guards against a file someone else put there or a damaged disk."""
    if not path.is_file():
        return False
    try:
        images = np.load(path, mmap_mode="r")
    except (OSError, ValueError):   # not an .npy, or shorter than its header says
        return False
    whole = images.dtype == np.uint8 and images.shape[1:] == (request.nc, request.image_size, request.image_size)
    return whole and (images.shape[0] == request.dataset_size or not get_entry(request.dataset).synthetic)


def _write(dataset, path, shape, workers, progress):
    """Every image of ``dataset`` (pixel mode) into ``path``, through a temporary file renamed
    into place. Plain writes, not a writable memmap: a full disk is an OSError, not a SIGBUS."""
    from torch.utils.data import DataLoader

    n = len(dataset)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if n >= PARALLEL_FROM else 0
    # DataLoader's fork context: workers start in a fraction of a second, where spawn's re-import
    # of torch takes seconds, as long as rendering 20,000 small images.
    loader = DataLoader(dataset, batch_size=BUILD_BATCH, num_workers=workers)
    for stale in path.parent.glob(f".*{TMP_SUFFIX}"):   # left by killed builds: none runs but ours (the lock)
        stale.unlink()
    bar = _progress_bar(n, path.name) if progress else None
    try:
        with atomic_file(path) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (n, *shape)})
            for images, _labels in loader:
                f.write(images.numpy().tobytes())
                if bar is not None:
                    bar.update(len(images))
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(n, name):
    from tqdm import tqdm

    return tqdm(total=n, unit="img", desc=f"caching {name}", dynamic_ncols=True)
