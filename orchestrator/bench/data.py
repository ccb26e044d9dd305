"""The ``data`` part of ``dcgan-lab bench``: what a training step waits for its batch, from the
data cache and from the loaders (rendering a synthetic set, decoding image files), and what the
cache costs to build once.

Everything runs on one thread, as a 1-CPU trial does, in a scratch cache folder, so the build
is a first build.
"""
import dataclasses
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def _scratch_cache():
    old = os.environ.get("DCGAN_LAB_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DCGAN_LAB_CACHE"] = tmp
        try:
            yield Path(tmp)
        finally:
            if old is None:
                del os.environ["DCGAN_LAB_CACHE"]
            else:
                os.environ["DCGAN_LAB_CACHE"] = old


def data_throughput(size=32, length=20000, batch_size=64, batches=50, files=1000):
    """Images/s into a batch at the quick size: the cache against rendering synthetic-faces and
    against decoding a folder of ``files`` 128x128 JPEGs; the cache's build time on every core."""
    import torch

    from orchestrator.config import resolve_config
    from trainables.loop import real_batches

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = resolve_config("smoke", {"image_size": size, "dataset_size": length, "batch_size": batch_size,
                                   "data_seed": 0})
    out = {"size": size, "length": length, "batch_size": batch_size, "cpus": len(os.sched_getaffinity(0))}
    with _scratch_cache() as tmp:
        t = time.perf_counter()
        real_batches(cfg, 0, 1, 0, torch.device("cpu"))   # builds the entry: every core renders
        out["cache_build_s"] = time.perf_counter() - t
        out["cache_images_per_s"] = _rate(cfg, batches * 10)
        out["render_images_per_s"] = _rate(dataclasses.replace(cfg, data_cache=False), batches)
        folder = _write_jpegs(tmp / "images", files)
        real = dataclasses.replace(cfg, dataset="folder", data_root=str(folder))
        real_batches(real, 0, 1, 0, torch.device("cpu"))   # decodes every file into the cache
        out["folder_cache_images_per_s"] = _rate(real, batches * 10)
        out["folder_decode_images_per_s"] = _rate(dataclasses.replace(real, data_cache=False),
                                                  max(1, min(batches, files // batch_size - 1)))
    torch.set_num_threads(prev)
    return out


def _rate(cfg, n_batches):
    """Images/s of ``real_batches`` (set-up excluded), as the loop draws them."""
    import torch

    from trainables.loop import real_batches

    _, batches = real_batches(cfg, 0, 1, 0, torch.device("cpu"))
    next(batches)
    t = time.perf_counter()
    for _ in range(n_batches):
        next(batches)
    return n_batches * cfg.batch_size / (time.perf_counter() - t)


def _write_jpegs(folder, n):
    """``n`` synthetic faces at 128x128 as JPEG files: a real-format folder to decode."""
    from PIL import Image

    from trainables.data import DataRequest, build_dataset

    folder.mkdir(parents=True)
    faces = build_dataset(DataRequest("synthetic-faces", image_size=128, dataset_size=n, pixels=True))
    for i in range(n):
        pixels, _ = faces[i]
        Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.jpg", quality=90)
    return folder


def print_data(d):
    print(f"data at {d['size']}x{d['size']}, batch {d['batch_size']}, 1 thread: cache {d['cache_images_per_s']:,.0f} "
          f"img/s against rendering {d['render_images_per_s']:,.0f} img/s "
          f"({d['cache_images_per_s'] / d['render_images_per_s']:.0f}x); a folder of JPEGs: cache "
          f"{d['folder_cache_images_per_s']:,.0f} against decoding {d['folder_decode_images_per_s']:,.0f} img/s")
    print(f"  cache build, {d['length']:,} synthetic images on {d['cpus']} CPUs: {d['cache_build_s']:.1f} s")
