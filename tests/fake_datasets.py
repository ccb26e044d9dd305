"""Tiny copies of the real data sets, written in each one's real on-disk format.

Each ``write_*`` puts its files under ``root`` where torchvision looks for them (the layout in
trainables/data/torchvision_sets.py) and returns what a test needs to check against: the labels
written, per split, in the order torchvision reads them. Pixels and labels are random, from a
fixed seed.
"""
import hashlib
import io
import os
import pickle

import lmdb
import numpy as np
from PIL import Image

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def write_mnist(root, n=8, n_test=4, folder="MNIST"):
    """MNIST's idx files, gunzipped as torchvision reads them; folder="FashionMNIST" for Fashion-MNIST.

    Returns {"train": labels, "test": labels}.
    """
    rng = np.random.default_rng(0)
    raw = os.path.join(root, folder, "raw")
    os.makedirs(raw, exist_ok=True)
    labels = {}
    for split, prefix, count in (("train", "train", n), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels[split] = rng.integers(0, 10, count).tolist()
        # idx header: magic (0x08 = unsigned byte, then the number of dimensions), big-endian sizes.
        _write_bytes(os.path.join(raw, f"{prefix}-images-idx3-ubyte"),
                     _idx_header(3, count, 28, 28) + images.tobytes())
        _write_bytes(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"),
                     _idx_header(1, count) + bytes(labels[split]))
    return labels


def _idx_header(ndim, *sizes):
    return bytes([0, 0, 0x08, ndim]) + b"".join(size.to_bytes(4, "big") for size in sizes)


def write_cifar10(root, n=10, n_test=4):
    """CIFAR-10's python pickles: n training images spread over data_batch_1..5, n_test in test_batch.

    Returns {"train": labels, "test": labels}.
    """
    rng = np.random.default_rng(0)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    train_counts = [len(part) for part in np.array_split(np.arange(n), 5)]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    labels = {"train": [], "test": []}
    for name, count in zip(names, train_counts + [n_test]):
        batch_labels = rng.integers(0, 10, count).tolist()
        labels["test" if name == "test_batch" else "train"].extend(batch_labels)
        # One row per image: 1024 red, then 1024 green, then 1024 blue bytes, row-major.
        batch = {"batch_label": name, "labels": batch_labels,
                 "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 "filenames": [f"image_{i}.png" for i in range(count)]}
        _write_pickle(os.path.join(folder, name), batch)
    _write_pickle(os.path.join(folder, "batches.meta"), {
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        "num_cases_per_batch": max(train_counts), "num_vis": 3072})
    return labels


def write_celeba(root, n=6, n_test=3):
    """CelebA's aligned 178x218 JPEGs and its five annotation files; two images go to the valid split.

    Returns {"train": attrs, "test": attrs}, each row 40 values of 0/1 (the files hold -1/1).
    """
    rng = np.random.default_rng(0)
    folder = os.path.join(root, "celeba")
    images = os.path.join(folder, "img_align_celeba")
    os.makedirs(images, exist_ok=True)
    partitions = [0] * n + [1] * 2 + [2] * n_test   # 0 train, 1 valid, 2 test
    names = [f"{i:06d}.jpg" for i in range(1, len(partitions) + 1)]
    attrs = rng.integers(0, 2, (len(names), len(CELEBA_ATTRS)))
    for name in names:
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(os.path.join(images, name))

    def rows(values):
        return [f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(names, values)]

    count = str(len(names))
    landmarks = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                 "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
    _write_lines(os.path.join(folder, "list_attr_celeba.txt"), [count, " ".join(CELEBA_ATTRS)] + rows(attrs * 2 - 1))
    _write_lines(os.path.join(folder, "list_eval_partition.txt"), [f"{a} {p}" for a, p in zip(names, partitions)])
    _write_lines(os.path.join(folder, "identity_CelebA.txt"), rows(rng.integers(1, 100, (len(names), 1))))
    _write_lines(os.path.join(folder, "list_bbox_celeba.txt"),
                 [count, "image_id x_1 y_1 width height"] + rows(rng.integers(0, 200, (len(names), 4))))
    _write_lines(os.path.join(folder, "list_landmarks_align_celeba.txt"),
                 [count, landmarks] + rows(rng.integers(0, 178, (len(names), 10))))
    return {"train": attrs[:n].tolist(), "test": attrs[n + 2:].tolist()}


def write_lsun(root, n=5, n_test=3):
    """LSUN's LMDBs bedroom_train_lmdb and bedroom_val_lmdb: WebP images keyed by their SHA-1 in hex.

    torchvision caches the key list in ``_cache_<letters of the path>`` in the working directory,
    and paths that differ only in digits (pytest's tmp dirs) share that file: build from a test
    that changes into its own tmp_path (``monkeypatch.chdir``). Returns the two LMDB paths.
    """
    rng = np.random.default_rng(0)
    paths = []
    for category, count in (("bedroom_train", n), ("bedroom_val", n_test)):
        path = os.path.join(root, f"{category}_lmdb")
        with lmdb.open(path, map_size=1 << 26) as env, env.begin(write=True) as txn:
            for _ in range(count):
                size = rng.integers(48, 96, 2)   # LSUN's images vary in size; the short side is 256 there
                image = Image.fromarray(rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8))
                data = _encode(image, "WEBP")
                txn.put(hashlib.sha1(data).hexdigest().encode("ascii"), data)
        paths.append(path)
    return paths


def write_folder(root, n=6, corrupt=0):
    """n images in nested folders (PNG and JPEG; RGB, grey and RGBA; odd sizes), plus a text file.

    corrupt adds that many unreadable files with image extensions: random bytes, then empty
    files, alternately. Returns the readable images' paths, sorted.
    """
    rng = np.random.default_rng(0)
    folders = [root, os.path.join(root, "a"), os.path.join(root, "a", "b")]
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        channels = (3, 1, 4)[i % 3]   # RGB, grey, RGBA
        height, width = rng.integers(40, 90, 2)
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
        ext = ".png" if channels == 4 or i % 2 == 0 else ".jpg"   # JPEG has no alpha
        path = os.path.join(folders[i % len(folders)], f"image_{i}{ext}")
        image.save(path)
        paths.append(path)
    for i in range(corrupt):
        _write_bytes(os.path.join(folders[i % len(folders)], f"bad_{i}.{'png' if i % 2 else 'jpg'}"),
                     b"" if i % 2 else rng.bytes(512))
    _write_lines(os.path.join(root, "README.txt"), ["not an image"])
    return sorted(paths)


def write_truncated_jpeg(path):
    """A JPEG cut off half way through its pixels: PIL opens and verifies it, but decoding fails."""
    pixels = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(pixels), "JPEG")   # noise: the header is a small part of the file
    _write_bytes(path, data[: len(data) // 2])


def _encode(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _write_lines(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
