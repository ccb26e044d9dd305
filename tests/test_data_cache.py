"""The data cache: batches bit-identical to the loaders', one atomic file per key shared by
concurrent builders, the sampler's resume and sharding kept. (A training run's losses with and without
the cache: tests/test_training.py::test_same_seed_same_curve_through_ray.)"""
import dataclasses
import os
import signal
import subprocess
import sys
import time

import fake_datasets
import numpy as np
import pytest
import torch
from conftest import ROOT, run_cli
from torchvision import transforms

from orchestrator.config import resolve_config
from trainables.data import DataRequest, build_dataset, render, torchvision_sets
from trainables.data.cache import cache_file, ensure_cache, open_cache
from trainables.loop import on_device, real_batches

REAL = {"mnist": fake_datasets.write_mnist, "cifar10": fake_datasets.write_cifar10,
        "celeba": fake_datasets.write_celeba, "lsun": fake_datasets.write_lsun,
        "folder": fake_datasets.write_folder}


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)   # torchvision's LSUN writes its key list into the working directory
    return tmp_path / "cache" / "data"


def bits(x):
    """The exact bits of a float32 tensor (torch.equal would call -0.0 and 0.0 the same)."""
    return x.contiguous().view(torch.int32)


def loader_images(request, indices):
    dataset = build_dataset(request)
    return torch.stack([dataset[i][0] for i in indices])


# --- The float conversion: the loaders' own op sequence, for every byte value --------------------

def test_scale_matches_the_former_conversions_for_every_byte():
    """Every float a cached batch can hold, against the conversions the loaders used before the
    cache: the renderers' numpy x * (1 / 127.5) - 1, torchvision's ToTensor + Normalize(0.5, 0.5)."""
    from PIL import Image

    values = np.arange(256, dtype=np.uint8)
    former = values.astype(np.float32)
    former *= 1 / 127.5
    former -= 1.0
    assert torch.equal(bits(render.scale_pixels(torch.from_numpy(values))), bits(torch.from_numpy(former)))
    grey = Image.fromarray(np.tile(values, (4, 1)))
    reference = transforms.Normalize([0.5], [0.5])(transforms.ToTensor()(grey))
    ours = torchvision_sets.scale_pixels(torch.from_numpy(np.tile(values, (1, 4, 1))))
    assert torch.equal(bits(ours), bits(reference))
    assert not torch.equal(bits(render.scale_pixels(torch.from_numpy(values))),
                           bits(torchvision_sets.scale_pixels(torch.from_numpy(values))))  # two sequences, both needed


# --- Same images, same order, same floats --------------------------------------------------------

@pytest.mark.parametrize("name,nc", [("synthetic-faces", 3), ("synthetic-bedrooms", 1)])
def test_synthetic_batches_equal_the_loader_under_ddp_and_resume(name, nc):
    """real_batches with the cache (sliced on the host, or held on the device) and without, rank by
    rank of two, resumed at step 7: the same bits batch by batch, across an epoch boundary."""
    cfg = resolve_config("smoke", {"dataset": name, "nc": nc, "dataset_size": 160, "data_seed": 3})
    assert cfg.data_placement == "auto" and not on_device(cfg, "cpu") and on_device(cfg, "cuda")
    for rank in (0, 1):
        n_cached, cached = real_batches(cfg, rank, 2, 7, torch.device("cpu"))
        n_loaded, loaded = real_batches(dataclasses.replace(cfg, data_cache=False), rank, 2, 7, torch.device("cpu"))
        n_held, held = real_batches(dataclasses.replace(cfg, data_placement="device"), rank, 2, 7, torch.device("cpu"))
        assert n_cached == n_loaded == n_held == 160
        for _ in range(12):   # 5 steps per epoch: resumes in epoch 1, runs into epoch 3
            a, b, c = next(cached), next(loaded), next(held)
            assert a.shape == (8, nc, 32, 32) and a.is_contiguous() and c.is_contiguous()
            assert torch.equal(bits(a), bits(b)) and torch.equal(bits(a), bits(c))


@pytest.mark.parametrize("nc", [1, 3])
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_sets_decode_once_to_the_loaders_floats(name, nc, tmp_path):
    (tmp_path / "data").mkdir()
    REAL[name](tmp_path / "data")
    request = DataRequest(name, image_size=32, nc=nc, data_root=str(tmp_path / "data"))
    images = open_cache(request, workers=0)
    order = list(reversed(range(len(images))))
    assert len(images) == len(build_dataset(request))
    assert torch.equal(bits(images.batch(order, "cpu")), bits(loader_images(request, order)))


def test_parallel_build_writes_the_same_file(cache_root):
    serial = ensure_cache(DataRequest("synthetic-faces", image_size=16, dataset_size=700, data_seed=5), workers=0)
    kept = serial.read_bytes()
    serial.unlink()
    parallel = ensure_cache(DataRequest("synthetic-faces", image_size=16, dataset_size=700, data_seed=5), workers=2)
    assert parallel == serial and parallel.read_bytes() == kept


# --- Keys, atomic writes, concurrent builders ----------------------------------------------------

def test_key_names_every_input_of_the_pixels(tmp_path):
    base = DataRequest("synthetic-faces", image_size=32, nc=3, dataset_size=100, data_seed=0)
    changed = [dataclasses.replace(base, **kv) for kv in
               ({"image_size": 64}, {"nc": 1}, {"dataset_size": 101}, {"data_seed": 1}, {"split": "test"},
                {"dataset": "synthetic-bedrooms"})]
    paths = {cache_file(r) for r in [base, *changed]}
    assert len(paths) == 7 and all(p.name.endswith("-v1.npy") for p in paths)
    # Real sets: the files under data_root are part of the key; a changed file is a new entry.
    (tmp_path / "data").mkdir()
    fake_datasets.write_folder(tmp_path / "data")
    real = DataRequest("folder", image_size=32, data_root=str(tmp_path / "data"))
    before = cache_file(real)
    first = sorted((tmp_path / "data").rglob("*.png"))[0]
    os.utime(first, ns=(0, 0))
    assert cache_file(real) != before


def test_a_file_that_is_not_the_entry_is_rebuilt(cache_root):
    request = DataRequest("synthetic-faces", image_size=16, dataset_size=50)
    path = cache_file(request)
    path.parent.mkdir(parents=True)
    for foreign in (np.zeros((49, 3, 16, 16), np.uint8), None):   # one image short; cut short on disk
        if foreign is None:
            path.write_bytes(path.read_bytes()[:-100])
        else:
            np.save(path, foreign)
        images = open_cache(request)
        assert len(images) == 50
        assert torch.equal(bits(images.batch([49], "cpu")), bits(loader_images(request, [49])))


_BUILD = """
import sys
from trainables.data import DataRequest
from trainables.data.cache import ensure_cache
print(ensure_cache(DataRequest("synthetic-faces", image_size=int(sys.argv[1]), dataset_size=int(sys.argv[2])), workers=0))
"""


def _builder(size, length):
    return subprocess.Popen([sys.executable, "-c", _BUILD, str(size), str(length)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.slow
def test_concurrent_builders_share_one_whole_file(cache_root):
    """Three processes ask for the same new entry at once: one builds, the others wait and read it."""
    procs = [_builder(16, 3000) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][1][-2000:]
    (path,) = {out.strip() for out, _ in outs}
    assert sorted(p.name for p in cache_root.iterdir()) == [".build.lock", os.path.basename(path)]
    images = np.load(path)
    assert images.shape == (3000, 3, 16, 16)
    request = DataRequest("synthetic-faces", image_size=16, dataset_size=3000)
    assert torch.equal(torch.from_numpy(images[[0, 2999]]), loader_images(dataclasses.replace(request, pixels=True),
                                                                           [0, 2999]))


def test_a_killed_build_leaves_no_entry_and_the_next_build_cleans_up(cache_root):
    proc = _builder(64, 60000)
    deadline = time.time() + 120
    while not any(p.suffix == ".tmp" and p.stat().st_size > 10**6 for p in cache_root.glob(".*")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    request = DataRequest("synthetic-faces", image_size=64, dataset_size=60000)
    assert not cache_file(request).exists()
    small = ensure_cache(DataRequest("synthetic-faces", image_size=64, dataset_size=60000 // 1000))
    assert sorted(p.name for p in cache_root.iterdir()) == [".build.lock", small.name]   # the stale part is gone


_FULL_DISK = """
import resource, signal, warnings
import torch
from orchestrator.config import resolve_config
from trainables.loop import real_batches
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))   # no file may pass 100 kB: a full disk
cfg = resolve_config("smoke")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    n, batches = real_batches(cfg, 0, 1, 0, torch.device("cpu"))
    first = next(batches)
print("WARNED", caught[0].message)
print("SUM", n, first.double().sum().item())
"""


def test_no_room_for_the_cache_trains_from_the_loader(cache_root):
    r = subprocess.run([sys.executable, "-c", _FULL_DISK], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "DCGAN_LAB_CACHE": str(cache_root.parent)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "WARNED data cache not built" in r.stdout and "File too large" in r.stdout, r.stdout
    _, batches = real_batches(dataclasses.replace(resolve_config("smoke"), data_cache=False), 0, 1, 0, "cpu")
    assert f"SUM 512 {next(batches).double().sum().item()}" in r.stdout
    assert [p.name for p in cache_root.iterdir()] == [".build.lock"]   # nothing half-written


# --- The command ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_data_cache_command_prints_path_and_size(cache_root):
    env = {"DCGAN_LAB_CACHE": str(cache_root.parent)}
    r = run_cli("data", "cache", "--dataset", "synthetic-bedrooms", "--size", "16", "--length", "300", env=env)
    assert r.returncode == 0, r.stderr
    path = cache_root / "synthetic-bedrooms-train-16px-3ch-n300-seed0-v1.npy"
    assert r.stdout.strip() == f"{path}: {path.stat().st_size / 2**20:.1f} MB"
    assert "300/300" in r.stderr   # the progress bar
    bad = run_cli("data", "cache", "--dataset", "synthetic-bedrooms", "--size", "20", env=env)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("dcgan-lab: error: image_size=20 is not allowed")
    assert sorted(p.name for p in cache_root.iterdir()) == [".build.lock", path.name]
