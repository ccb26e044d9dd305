"""The torchvision data sets, read from small files in each data set's real on-disk format."""
import gzip
import os

import fake_datasets
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import datasets

from trainables.data import DataRequest, build_dataset, get_entry
from trainables.errors import UserError

WRITERS = {
    "mnist": fake_datasets.write_mnist,
    "fashion-mnist": lambda root: fake_datasets.write_mnist(root, folder="FashionMNIST"),
    "cifar10": fake_datasets.write_cifar10,
    "celeba": fake_datasets.write_celeba,
    "lsun": fake_datasets.write_lsun,
    "folder": fake_datasets.write_folder,
}
DOWNLOADABLE = ["mnist", "fashion-mnist", "cifar10", "celeba"]


@pytest.fixture(autouse=True)
def _own_working_dir(tmp_path, monkeypatch):
    # torchvision's LSUN writes its key cache into the working directory (see write_lsun).
    monkeypatch.chdir(tmp_path)


def build(name, root, **kwargs):
    return build_dataset(DataRequest(name, data_root=str(root), **kwargs))


@pytest.mark.parametrize("size,nc", [(32, 1), (64, 3)])
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_images_in_range_and_batches(name, size, nc, tmp_path):
    WRITERS[name](tmp_path)
    dataset = build(name, tmp_path, image_size=size, nc=nc)
    image, labels = dataset[0]
    assert image.shape == (nc, size, size) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    assert image.min() < 0 < image.max()   # scaled to [-1, 1], not left in [0, 1]
    assert sorted(labels) == sorted(get_entry(name).label_keys)

    images, batch_labels = next(iter(DataLoader(dataset, batch_size=4)))
    assert images.shape == (4, nc, size, size)
    for value in batch_labels.values():
        assert value.shape[0] == 4 and value.dtype == torch.int64


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_class_labels_match_files(name, split, tmp_path):
    written = WRITERS[name](tmp_path)[split]
    dataset = build(name, tmp_path, split=split, image_size=32)
    assert [int(dataset[i][1]["class"]) for i in range(len(dataset))] == written


@pytest.mark.parametrize("split", ["train", "test"])
def test_celeba_attrs_match_files_as_zero_one(split, tmp_path):
    written = fake_datasets.write_celeba(tmp_path)[split]
    dataset = build("celeba", tmp_path, split=split, image_size=32)
    attrs = torch.stack([dataset[i][1]["attr"] for i in range(len(dataset))])
    assert attrs.shape == (len(written), 40) and attrs.dtype == torch.int64
    assert attrs.tolist() == written


def test_lsun_test_split_is_bedroom_val(tmp_path):
    fake_datasets.write_lsun(tmp_path, n=5, n_test=3)
    assert len(build("lsun", tmp_path, split="train")) == 5
    assert len(build("lsun", tmp_path, split="test")) == 3


def test_mnist_converts_grey_to_rgb(tmp_path):
    fake_datasets.write_mnist(tmp_path)
    image, _ = build("mnist", tmp_path, nc=3, image_size=32)[0]
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


@pytest.mark.parametrize("name", sorted(WRITERS))
@pytest.mark.parametrize("where", ["missing", "empty"])
def test_no_data_names_data_root(name, where, tmp_path):
    root = tmp_path / "data"
    if where == "empty":
        root.mkdir()
    with pytest.raises(UserError, match="data_root=") as err:
        build(name, root)
    message = str(err.value)
    assert str(root) in message and "\n" not in message
    if name in DOWNLOADABLE:
        assert "--set download=true" in message


def test_missing_file_is_named(tmp_path):
    fake_datasets.write_celeba(tmp_path)
    os.remove(tmp_path / "celeba" / "list_eval_partition.txt")
    with pytest.raises(UserError, match="list_eval_partition.txt is missing"):
        build("celeba", tmp_path)


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    def no_internet(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://x/, got:\nno route")

    monkeypatch.setattr(datasets.MNIST, "download", no_internet)
    with pytest.raises(UserError, match="download=true could not fetch dataset='mnist'.*no route") as err:
        build("mnist", tmp_path, download=True)
    assert "\n" not in str(err.value)


def test_folder_skips_corrupt_images_with_a_count(tmp_path):
    good = fake_datasets.write_folder(tmp_path, n=6, corrupt=3)
    with pytest.warns(UserWarning, match="skipped 3 of 9 image files"):
        dataset = build("folder", tmp_path)
    assert dataset.paths == good
    assert all(dataset[i][0].shape == (3, 64, 64) for i in range(len(dataset)))


def test_folder_of_only_corrupt_images_fails(tmp_path):
    fake_datasets.write_folder(tmp_path, n=0, corrupt=2)
    with pytest.raises(UserError, match="no readable image files"):
        build("folder", tmp_path)


def test_folder_names_an_image_cut_short(tmp_path):
    fake_datasets.write_truncated_jpeg(tmp_path / "cut.jpg")
    dataset = build("folder", tmp_path)
    with pytest.raises(UserError, match=f"^{tmp_path / 'cut.jpg'}: cannot decode the image: image file is truncated"):
        dataset[0]


def test_bad_split_and_nc_name_the_key(tmp_path):
    fake_datasets.write_mnist(tmp_path)
    with pytest.raises(UserError, match="split='val'"):
        build("mnist", tmp_path, split="val")
    with pytest.raises(UserError, match="nc=2"):
        build("mnist", tmp_path, nc=2)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_files_gzipped_in_data_root_as_distributed(name, folder, tmp_path):
    """The four .gz files in data_root itself, as Zalando and Debian ship them, read as torchvision's layout."""
    labels = fake_datasets.write_mnist(tmp_path / "tv", folder=folder)
    (tmp_path / "gz").mkdir()
    for path in (tmp_path / "tv" / folder / "raw").iterdir():
        (tmp_path / "gz" / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
    for split in ("train", "test"):
        ours, reference = build(name, tmp_path / "gz", split=split), build(name, tmp_path / "tv", split=split)
        assert ours.labels.tolist() == labels[split] and (ours.images == reference.images).all()


def test_idx_file_longer_than_its_header_says(tmp_path):
    fake_datasets.write_mnist(tmp_path)
    with open(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte: too long: header says 8 bytes, file holds 10$"):
        build("mnist", tmp_path)


def test_idx_labels_that_are_no_class(tmp_path):
    fake_datasets.write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1] + b"\xff")
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte: corrupt: label 255 is not a class \(0-9\)"):
        build("mnist", tmp_path)


def _cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def test_image_cut_short_is_one_line_from_a_dataloader_worker(tmp_path):
    """The data cache decodes with DataLoader workers, which re-raise with their traceback."""
    fake_datasets.write_truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(UserError) as err:
        next(iter(DataLoader(build("folder", tmp_path), num_workers=1)))
    assert str(err.value).startswith(f"{tmp_path / 'cut.jpg'}: cannot decode the image") and "\n" not in str(err.value)


def test_celeba_image_cut_short_is_named(tmp_path):
    fake_datasets.write_celeba(tmp_path)
    image = tmp_path / "celeba" / "img_align_celeba" / "000001.jpg"
    _cut(image)
    with pytest.raises(UserError, match=f"^{image}: cannot decode the image: image file is truncated"):
        build("celeba", tmp_path)[0]


@pytest.mark.parametrize("name,says", [("list_attr_celeba.txt", "line 6: 29 fields, expected 41"),
                                       ("list_eval_partition.txt", "line 6: 1 fields, expected 2")])
def test_celeba_annotation_cut_short_is_named(name, says, tmp_path):
    fake_datasets.write_celeba(tmp_path)
    _cut(tmp_path / "celeba" / name)
    with pytest.raises(UserError, match=f"^{tmp_path / 'celeba' / name}: {says}$"):
        build("celeba", tmp_path)


def test_celeba_annotation_missing_rows_is_truncated(tmp_path):
    fake_datasets.write_celeba(tmp_path)
    path = tmp_path / "celeba" / "list_bbox_celeba.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(UserError, match="list_bbox_celeba.txt: truncated: its first line says '11' rows, the file holds 9"):
        build("celeba", tmp_path)


@pytest.mark.parametrize("damage,says", [("cut", r"truncated: its meta page says \d+ pages of 4096 bytes"),
                                         ("garbage", "not an LMDB data file")])
def test_lsun_lmdb_damaged_is_one_line(damage, says, tmp_path):
    fake_datasets.write_lsun(tmp_path)
    data = tmp_path / "bedroom_train_lmdb" / "data.mdb"
    if damage == "cut":
        _cut(data, keep=0.3)   # read through LMDB's map, this file would end the process with SIGBUS
    else:
        data.write_bytes(b"not an lmdb" * 100)
    with pytest.raises(UserError, match=f"^{data}: {says}"):
        build("lsun", tmp_path)


@pytest.mark.parametrize("name", ["data_batch_3", "batches.meta"])
def test_cifar10_pickle_cut_short_is_named(name, tmp_path):
    fake_datasets.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / name
    _cut(path)
    with pytest.raises(UserError, match=f"^{path}: not a readable CIFAR-10 pickle"):
        build("cifar10", tmp_path)


def test_cli_refuses_damaged_files_before_ray(tmp_path, forks):
    """train decodes every image into the data cache before Ray starts: a JPEG cut short after its
    header (which PIL's verify passes) stops it there; data preview reads an LMDB's meta page."""
    fake_datasets.write_folder(tmp_path / "imgs")
    fake_datasets.write_truncated_jpeg(tmp_path / "imgs" / "cut.jpg")
    (tmp_path / "lsun").mkdir()
    fake_datasets.write_lsun(tmp_path / "lsun")
    _cut(tmp_path / "lsun" / "bedroom_train_lmdb" / "data.mdb", keep=0.3)
    env = {"MLFLOW_TRACKING_URI": "", "RAY_ADDRESS": "", "DCGAN_LAB_CACHE": str(tmp_path / "cache")}
    cases = {"cut.jpg: cannot decode the image": ["train", "--preset", "smoke", "--set", "dataset=folder",
                                                  "--set", "data_root=imgs"],
             "data.mdb: truncated": ["data", "preview", "--dataset", "lsun", "--data-root", "lsun", "--out", "p.png"]}
    for says, argv in cases.items():
        r = forks.cli(*argv, cwd=tmp_path, env=env)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and says in r.stderr, r.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "imgs", "lsun"]   # no ray_results, p.png, mlflow.db
