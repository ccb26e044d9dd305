"""Real data sets, loaded by torchvision's own dataset classes (MNIST's IDX files by
trainables/data/idx.py) and registered by name.

Where each one lives under ``data_root`` (torchvision's layout, so ``download=true`` fills it):

    mnist          MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, gunzipped or .gz; or
                   the four .gz files in data_root itself, as Zalando and Debian ship them
    fashion-mnist  FashionMNIST/raw/ with the same four files, or them in data_root; with the
                   default data_root and none there, Debian's /usr/share/datasets/fashion-mnist
    cifar10        cifar-10-batches-py/ with data_batch_1..5, test_batch, batches.meta
    celeba         celeba/ with img_align_celeba/ and the five annotation .txt files
    lsun           bedroom_train_lmdb/ and bedroom_val_lmdb/ (torchvision cannot download these)
    folder         data_root itself: any tree of images, searched recursively

Every image is resized on its short side, centre-cropped to ``image_size``, converted to ``nc``
channels and scaled to [-1, 1]; there is no augmentation.

Integrity. torchvision compares the MD5 of CIFAR-10's batches and CelebA's annotation files with
the official release's every time it opens them, so any other copy in the same format (a
subset, a re-pickled file, the tests' small files) cannot be opened. The two small subclasses
below count those files as present when they exist; a damaged one is refused, naming it.
Downloads are still verified: the archive's MD5 for CIFAR-10, each file's MD5 for CelebA.

Corrupt images in ``folder`` are skipped, with one warning that counts them, because scraped
image folders often hold a few broken or non-image files (AppleDouble ``._x.jpg``, cut-off
downloads) and a sweep should not die hours in on one of them. Every file is opened and checked
with PIL's ``verify`` when the data set is built (the header, and for PNG the chunk checksums;
nothing is decoded), so the length is fixed from the start. A JPEG cut short after its header
passes that check; decoding it (the data cache decodes every image before Ray starts) fails in
one line naming the file. Damaged files of the other formats are refused the same way
(trainables/data/integrity.py, trainables/data/idx.py).

LSUN: torchvision caches the LMDB's key list in ``_cache_<letters of the path>`` in the
working directory (pytorch/vision#825); that file is left as torchvision writes it.
"""
import os
import warnings
from functools import partial

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets, transforms
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, is_image_file

from trainables.data.idx import read_idx
from trainables.data.integrity import DataFileError, NamedItems, check_celeba_annotations, check_lmdb, unreadable_pickle
from trainables.data.registry import register_dataset
from trainables.errors import UserError, bad_value, first_line

DOWNLOAD_HINT = "fetch it with --set download=true on a machine with internet"
LSUN_HINT = ("torchvision cannot download LSUN: get the bedroom LMDBs with download.py -c bedroom "
             "from https://github.com/fyu/lsun and unzip them there")


def image_transform(request):
    """PIL image -> float tensor (nc, image_size, image_size) in [-1, 1]; with ``request.pixels``,
    the uint8 tensor before ``scale_pixels``."""
    if request.nc not in (1, 3):
        raise bad_value("nc", request.nc, "1 (grey) or 3 (RGB)")
    return transforms.Compose([
        transforms.Resize(request.image_size),
        transforms.CenterCrop(request.image_size),
        transforms.Grayscale(1) if request.nc == 1 else transforms.Lambda(_to_rgb),
        transforms.Lambda(_to_pixels),
        *([] if request.pixels else [transforms.Lambda(scale_pixels)]),
    ])


def scale_pixels(pixels):
    """uint8 pixels (any shape, any device) -> float32 in [-1, 1] by torchvision's op sequence:
    ToTensor's x / 255, then Normalize(0.5, 0.5)'s (x - 0.5) / 0.5."""
    return pixels.float().div_(255).sub_(0.5).div_(0.5)


# Transforms are module functions, not lambdas, so that data sets pickle (DataLoader workers
# under spawn, Ray).
def _to_rgb(image):
    return image.convert("RGB")


def _to_pixels(image):
    # pil_to_tensor gives a permuted HWC view: a contiguous CHW tensor, as ToTensor gave.
    return transforms.functional.pil_to_tensor(image).contiguous()


def _class_label(target):
    return {"class": torch.tensor(target, dtype=torch.int64)}


def _attr_labels(attr):
    # torchvision has already mapped CelebA's -1/1 to 0/1 (int64, 40 values).
    return {"attr": attr}


def _no_labels(_target):
    return {}


def _is_train(request):
    if request.split not in ("train", "test"):
        raise bad_value("split", request.split, "train or test")
    return request.split == "train"


def _check_files(request, paths, expected, no_download_hint=None):
    """Fail on one line naming data_root when files under it are missing.

    With download=true torchvision fetches them instead, unless the data set has no download
    (no_download_hint then says where to get it).
    """
    if request.download and no_download_hint is None:
        return
    missing = [path for path in paths if not os.path.exists(os.path.join(request.data_root, path))]
    if missing:
        raise UserError(f"data_root={request.data_root!r} has no {request.dataset} data: expected {expected} "
                        f"there ({missing[0]} is missing); {no_download_hint or DOWNLOAD_HINT}")


def _open(request, make):
    """Call make(), a torchvision constructor; a failed download or an empty split becomes one line."""
    try:
        dataset = make()
    except (OSError, RuntimeError) as err:
        if not request.download:
            raise
        # torchvision's download errors span several lines (one per mirror).
        reason = " ".join(str(err).split())
        raise UserError(f"download=true could not fetch dataset={request.dataset!r} into "
                        f"data_root={request.data_root!r}: {reason}") from err
    if len(dataset) == 0:
        raise UserError(f"data_root={request.data_root!r} holds no images in the {request.split!r} split "
                        f"of dataset={request.dataset!r}")
    return dataset


# MNIST and Fashion-MNIST: 28x28 grey digits / clothes, 10 classes, in IDX files (trainables/data/idx.py).
# Where Debian's packages put the four .gz files (dataset-fashion-mnist): found when data_root is the default.
SYSTEM_ROOTS = {"MNIST": "/usr/share/datasets/mnist", "FashionMNIST": "/usr/share/datasets/fashion-mnist"}
IDX_PACKAGES = {"FashionMNIST": "dataset-fashion-mnist"}
N_CLASSES = 10


def _idx_stems(train):
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _idx_path(folder, stem):
    """stem's file in folder: gunzipped (torchvision's download leaves both) or .gz; None if neither."""
    paths = [os.path.join(folder, stem + ext) for ext in ("", ".gz")]
    return next((path for path in paths if os.path.isfile(path)), None)


def _idx_folder(cls, root):
    """The folder holding cls's IDX files: torchvision's ``<Class>/raw/`` under root, else root
    itself (the .gz files as Zalando and Debian ship them); None when neither holds one."""
    stems = _idx_stems(True) + _idx_stems(False)
    for folder in (os.path.join(root, cls.__name__, "raw"), root):
        if any(_idx_path(folder, stem) for stem in stems):
            return folder
    return None


def _locate_idx(cls, data_root):
    system_root = SYSTEM_ROOTS[cls.__name__]
    if _idx_folder(cls, data_root) is None and _idx_folder(cls, system_root) is not None:
        return system_root
    return data_root


class IdxImages(Dataset):
    """Images (n, 28, 28) and class labels (n,) from IDX files, item for item as torchvision's MNIST."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index])), _class_label(int(self.labels[index]))


def _idx_images(cls, request):
    train = _is_train(request)
    if request.download and _idx_folder(cls, request.data_root) is None:
        _open(request, partial(cls, request.data_root, train=train, download=True))   # into <Class>/raw/
    folder = _idx_folder(cls, request.data_root) or request.data_root
    paths = [_idx_path(folder, stem) for stem in _idx_stems(train)]
    if None in paths:
        missing = _idx_stems(train)[paths.index(None)]
        package = IDX_PACKAGES.get(cls.__name__)
        hint = f"apt-get install {package} (found in {SYSTEM_ROOTS[cls.__name__]}), or " if package else ""
        raise UserError(f"data_root={request.data_root!r} has no {request.dataset} data: expected the IDX files "
                        f"{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz] there or in {cls.__name__}/raw/ "
                        f"({missing}[.gz] is missing); {hint}{DOWNLOAD_HINT}")
    images, labels = read_idx(paths[0], 3), read_idx(paths[1], 1)
    if len(images) != len(labels):
        raise UserError(f"{paths[0]} holds {len(images)} images but {paths[1]} {len(labels)} labels")
    if labels.size and labels.max() >= N_CLASSES:
        raise UserError(f"{paths[1]}: corrupt: label {labels.max()} is not a class (0-{N_CLASSES - 1})")
    if len(images) == 0:
        raise UserError(f"{paths[0]} holds no images")
    return IdxImages(images, labels, image_transform(request))


@register_dataset("mnist", scale=scale_pixels, label_keys=("class",), summary="MNIST digits, 28x28 grey, 10 classes",
                  locate=partial(_locate_idx, datasets.MNIST))
def mnist(request):
    return _idx_images(datasets.MNIST, request)


@register_dataset("fashion-mnist", scale=scale_pixels, label_keys=("class",),
                  summary="Fashion-MNIST, 28x28 grey, 10 classes", locate=partial(_locate_idx, datasets.FashionMNIST))
def fashion_mnist(request):
    return _idx_images(datasets.FashionMNIST, request)


class _CIFAR10Files(datasets.CIFAR10):
    """CIFAR-10 whose batch files count as present when they exist (see the module docstring)."""

    train_list = [[name, None] for name, _ in datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in datasets.CIFAR10.test_list]
    meta = {**datasets.CIFAR10.meta, "md5": None}


@register_dataset("cifar10", scale=scale_pixels, label_keys=("class",), summary="CIFAR-10, 32x32 colour, 10 classes")
def cifar10(request):
    folder = _CIFAR10Files.base_folder
    batches = [name for name, _ in _CIFAR10Files.train_list + _CIFAR10Files.test_list]
    paths = [os.path.join(folder, name) for name in batches + [_CIFAR10Files.meta["filename"]]]
    _check_files(request, paths, f"{folder}/ with data_batch_1..5, test_batch and batches.meta")
    try:
        return _open(request, partial(_CIFAR10Files, request.data_root, train=_is_train(request),
                                      transform=image_transform(request), target_transform=_class_label,
                                      download=request.download))
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever a damaged pickle raises: name the file if one is
        culprit = unreadable_pickle([os.path.join(request.data_root, path) for path in paths])
        if culprit is None:
            raise
        raise DataFileError(f"{culprit[0]}: not a readable CIFAR-10 pickle ({first_line(culprit[1])})") from err


def _celeba_annotations():
    return [name for _, _, name in datasets.CelebA.file_list if name.endswith(".txt")]


class _CelebAFiles(datasets.CelebA):
    """CelebA whose annotation files count as present when they exist (see the module docstring)."""

    def _check_integrity(self):
        folder = os.path.join(self.root, self.base_folder)
        return os.path.isdir(os.path.join(folder, "img_align_celeba")) and all(
            os.path.isfile(os.path.join(folder, name)) for name in _celeba_annotations())


@register_dataset("celeba", scale=scale_pixels, label_keys=("attr",),
                  summary="CelebA aligned faces, 178x218, 40 binary attributes")
def celeba(request):
    folder = _CelebAFiles.base_folder
    names = ["img_align_celeba"] + _celeba_annotations()
    _check_files(request, [os.path.join(folder, name) for name in names],
                 f"{folder}/ with img_align_celeba/ and {', '.join(names[1:])}")
    split = "train" if _is_train(request) else "test"   # CelebA's "valid" partition goes unused
    if os.path.isfile(os.path.join(request.data_root, folder, names[-1])):   # not before a download
        check_celeba_annotations(os.path.join(request.data_root, folder))
    dataset = _open(request, partial(_CelebAFiles, request.data_root, split=split, target_type="attr",
                                     transform=image_transform(request), target_transform=_attr_labels,
                                     download=request.download))
    return NamedItems(dataset, partial(_celeba_image, dataset))


def _celeba_image(dataset, index):
    return os.path.join(dataset.root, dataset.base_folder, "img_align_celeba", dataset.filename[index])


@register_dataset("lsun", scale=scale_pixels, summary="LSUN bedrooms (bedroom_train / bedroom_val LMDBs), unlabelled")
def lsun(request):
    category = "bedroom_train" if _is_train(request) else "bedroom_val"
    _check_files(request, [os.path.join(f"{category}_lmdb", "data.mdb")],
                 f"{category}_lmdb/ (an LMDB directory holding data.mdb)", no_download_hint=LSUN_HINT)
    check_lmdb(os.path.join(request.data_root, f"{category}_lmdb"))
    dataset = _open(request, partial(datasets.LSUN, request.data_root, classes=[category],
                                     transform=image_transform(request), target_transform=_no_labels))
    return NamedItems(dataset, partial(_lsun_image, dataset))


def _lsun_image(dataset, index):
    db = dataset.dbs[0]   # one category
    return f"{os.path.join(db.root, 'data.mdb')} (key {db.keys[index].decode(errors='replace')})"


class ImageFiles(Dataset):
    """The given image files, in order, unlabelled."""

    def __init__(self, paths, transform):
        self.paths = paths
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        path = self.paths[index]
        try:
            image = default_loader(path)
        except OSError as err:
            # PIL's "image file is truncated" does not say which file.
            raise DataFileError(f"{path}: cannot decode the image: {first_line(err)}") from err
        return self.transform(image), {}


def _image_paths(root):
    """Every file under root with an image extension, in sorted path order."""
    found = []
    for folder, _, names in os.walk(root, followlinks=True):
        found.extend(os.path.join(folder, name) for name in names if is_image_file(name))
    return sorted(found)


def _is_readable(path):
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # noqa: BLE001 - PIL raises OSError, SyntaxError (bad PNG chunks), struct.error, ... on bad files
        return False


@register_dataset("folder", scale=scale_pixels, summary="every image under data_root, recursively, unlabelled")
def folder(request):
    root = request.data_root
    if not os.path.isdir(root):
        raise UserError(f"data_root={root!r} is not a directory: dataset=folder expects a directory of images "
                        f"(searched recursively)")
    paths, unreadable = [], []
    for path in _image_paths(root):
        (paths if _is_readable(path) else unreadable).append(path)
    if not paths:
        raise UserError(f"data_root={root!r} holds no readable image files: dataset=folder expects "
                        f"files ending in {', '.join(IMG_EXTENSIONS)}, in any subfolder")
    if unreadable:
        warnings.warn(f"data_root={root!r}: skipped {len(unreadable)} of {len(paths) + len(unreadable)} "
                      f"image files that PIL cannot read, e.g. {unreadable[0]}", stacklevel=2)
    return ImageFiles(paths, image_transform(request))
