"""Files computed once per machine and reused: the reals' reference embeddings.

They live under ``$DCGAN_LAB_CACHE`` (default ``~/.cache/dcgan-lab``). Writes are atomic
(``trainables.atomic.save_atomic``), so a reader never sees half a file even when several
workers build the same entry at once.
"""
import os

import torch


def cache_dir():
    return os.environ.get("DCGAN_LAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dcgan-lab")


def cache_path(kind, name):
    return os.path.join(cache_dir(), kind, name + ".pt")


def load_cached(path):
    """The cached object, or None when there is none yet."""
    if not os.path.exists(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=True)
