"""Fashion-MNIST as Debian's package dataset-fashion-mnist installs it: the four .gz IDX files.

The loader reads them where they are, finds them with the default data_root, gives the same
images and labels as torchvision's own FashionMNIST on a gunzipped copy, and refuses a damaged
copy in one line naming the file, through the CLI too, before Ray starts.
"""
import gzip
import os
import shutil

import numpy as np
import pytest
import torch
from torchvision import datasets

from trainables.config import config_from_dict
from trainables.data import DataRequest, build_dataset
from trainables.data.cache import cache_file
from trainables.data.registry import resolve_data_root
from trainables.data.torchvision_sets import _class_label, image_transform
from trainables.errors import UserError
from trainables.loop import data_request

DEBIAN = "/usr/share/datasets/fashion-mnist"
FILES = [f"{prefix}-{kind}-ubyte" for prefix in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")]
SPLITS = {"train": 60000, "test": 10000}

pytestmark = pytest.mark.skipif(not os.path.isdir(DEBIAN),
                                reason=f"{DEBIAN} absent: apt-get install dataset-fashion-mnist")


def build(split="train", data_root=DEBIAN, **kwargs):
    return build_dataset(DataRequest("fashion-mnist", data_root=str(data_root), split=split, **kwargs))


@pytest.fixture(scope="module")
def gunzipped(tmp_path_factory):
    """The package's files gunzipped into torchvision's layout, FashionMNIST/raw/."""
    root = tmp_path_factory.mktemp("torchvision-layout")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        with gzip.open(os.path.join(DEBIAN, name + ".gz")) as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return root


def damaged_copy(root, name, damage):
    """The package's four files under root, ``name`` (gunzipped unless it ends in .gz) passed through
    ``damage(bytes)``."""
    root.mkdir()
    with open(os.path.join(DEBIAN, name.removesuffix(".gz") + ".gz"), "rb") as f:
        data = f.read()
    (root / name).write_bytes(damage(data if name.endswith(".gz") else gzip.decompress(data)))
    for other in FILES:
        if other != name.removesuffix(".gz"):
            os.symlink(os.path.join(DEBIAN, other + ".gz"), root / (other + ".gz"))
    return root


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_reads_the_packages_gz_files(split):
    dataset = build(split, image_size=32, nc=1)
    assert len(dataset) == SPLITS[split]
    # Fashion-MNIST is balanced: a tenth of each split in each of its 10 classes.
    assert np.bincount(dataset.labels).tolist() == [SPLITS[split] // 10] * 10
    image, labels = dataset[0]
    assert image.shape == (1, 32, 32) and -1 <= image.min() < image.max() <= 1
    assert labels["class"].dtype == torch.int64


def test_default_data_root_finds_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # no ./data here
    assert resolve_data_root("fashion-mnist", "./data") == DEBIAN
    assert len(build_dataset(DataRequest("fashion-mnist", image_size=32, nc=1))) == 60000
    cfg = config_from_dict({"dataset": "fashion-mnist"})
    assert cfg.data_root == DEBIAN
    # The data cache keys the entry by the package's files, as if data_root had been given.
    assert cache_file(data_request(cfg)) == cache_file(DataRequest("fashion-mnist", data_root=DEBIAN))
    # A data_root the user names is taken as given.
    with pytest.raises(UserError, match="data_root='elsewhere' has no fashion-mnist data"):
        build(data_root="elsewhere")


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_same_as_torchvision_on_a_gunzipped_copy(split, gunzipped):
    request = DataRequest("fashion-mnist", image_size=32, nc=1, split=split)
    reference = datasets.FashionMNIST(str(gunzipped), train=split == "train", transform=image_transform(request),
                                      target_transform=_class_label)
    for ours in (build(split, image_size=32, nc=1), build(split, gunzipped, image_size=32, nc=1)):
        assert np.array_equal(ours.images, reference.data.numpy())
        assert np.array_equal(ours.labels, reference.targets.numpy())
        for i in (0, 1, len(ours) - 1):
            (image, labels), (expected, expected_labels) = ours[i], reference[i]
            assert torch.equal(image, expected) and torch.equal(labels["class"], expected_labels["class"])


CUT = 1234
DAMAGES = {   # file, damage, what the one line says
    "truncated-gz": ("train-images-idx3-ubyte.gz", lambda data: data[:len(data) // 2],
                     "train-images-idx3-ubyte.gz: truncated: header says 60000x28x28 bytes, file holds"),
    "truncated": ("train-images-idx3-ubyte", lambda data: data[:16 + CUT],
                  f"train-images-idx3-ubyte: truncated: header says 60000x28x28 bytes, file holds {CUT}"),
    "bad-magic": ("train-labels-idx1-ubyte.gz", lambda data: gzip.compress(b"\0\0\x09\x01" + gzip.decompress(data)[4:]),
                  "train-labels-idx1-ubyte.gz: not an IDX file of unsigned bytes in 1 dimension(s): magic 00000901"),
    "bad-crc": ("train-labels-idx1-ubyte.gz", lambda data: data[:-8] + bytes(4) + data[-4:],
                "train-labels-idx1-ubyte.gz: corrupt gzip data"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_file_is_one_line_naming_it(damage, tmp_path):
    name, how, says = DAMAGES[damage]
    root = damaged_copy(tmp_path / "copy", name, how)
    with pytest.raises(UserError) as err:
        build(data_root=root)
    assert str(err.value).startswith(str(root / name) + ": ") and says in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("argv", [["data", "preview", "--dataset", "fashion-mnist", "--data-root", "copy", "--out",
                                   "p.png"],
                                  ["train", "--preset", "smoke", "--set", "dataset=fashion-mnist", "--set",
                                   "data_root=copy"]], ids=["data-preview", "train"])
def test_cli_refuses_a_truncated_copy_before_ray(argv, tmp_path, forks):
    name, how, says = DAMAGES["truncated-gz"]
    damaged_copy(tmp_path / "copy", name, how)
    before = sorted(p.name for p in tmp_path.iterdir())
    r = forks.cli(*argv, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": "", "RAY_ADDRESS": ""})
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith("dcgan-lab: error: ") and r.stderr.count("\n") == 1 and says in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before   # no p.png, no ray_results, no mlflow.db
