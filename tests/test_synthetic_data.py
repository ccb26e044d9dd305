"""The synthetic data sets: deterministic, balanced, and with labels that match their pixels."""
import dataclasses
import hashlib
import subprocess
import sys

import fake_datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from torch.utils.data import DataLoader, DistributedSampler

from orchestrator import cli
from trainables.data import DataRequest, build_dataset, get_entry, synthetic_bedrooms, synthetic_faces
from trainables.data.render import render_speed
from trainables.errors import UserError

NAMES = ["synthetic-faces", "synthetic-bedrooms"]


def build(name, **kwargs):
    return build_dataset(DataRequest(name, **kwargs))


def digest(image, labels):
    """A fingerprint of one item's exact bytes, the same in any process."""
    h = hashlib.sha256(image.numpy().tobytes())
    for key in sorted(labels):
        h.update(key.encode() + labels[key].numpy().tobytes())
    return h.hexdigest()


# --- Determinism and the request --------------------------------------------------------------

def test_same_item_in_another_process():
    here = [digest(*build(name, image_size=32, data_seed=7)[1234]) for name in NAMES]
    script = (
        "import sys; sys.path[:0] = ['tests', '.']\n"
        "from test_synthetic_data import NAMES, build, digest\n"
        "print(' '.join(digest(*build(name, image_size=32, data_seed=7)[1234]) for name in NAMES))\n"
    )
    there = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert there.returncode == 0, there.stderr
    assert there.stdout.split() == here


def test_item_does_not_depend_on_access_order():
    dataset = build("synthetic-faces", image_size=16)
    first = digest(*dataset[5])
    for index in (9, 0, 5, 3):
        dataset[index]
    assert digest(*dataset[5]) == first


@pytest.mark.parametrize("name", NAMES)
def test_seed_and_split_change_the_images(name):
    train = build(name, image_size=16)[0][0]
    assert not torch.equal(train, build(name, image_size=16, split="test")[0][0])
    assert not torch.equal(train, build(name, image_size=16, data_seed=1)[0][0])


@pytest.mark.parametrize("nc", [1, 3])
@pytest.mark.parametrize("size", [16, 32, 64, 128])
@pytest.mark.parametrize("name", NAMES)
def test_shape_range_and_labels(name, size, nc):
    dataset = build(name, image_size=size, nc=nc, dataset_size=10)
    assert len(dataset) == 10
    for index in (0, 9):
        image, labels = dataset[index]
        assert image.shape == (nc, size, size) and image.dtype == torch.float32
        assert image.min() >= -1 and image.max() <= 1 and image.max() - image.min() > 0.5
        assert tuple(labels) == get_entry(name).label_keys
        for key, value in labels.items():
            if key.endswith("_mask"):
                assert value.shape == (size, size) and value.dtype == torch.bool
    with pytest.raises(IndexError):
        dataset[10]


def test_gray_is_the_luma_of_colour():
    rgb, _ = build("synthetic-faces", image_size=32)[3]
    gray, _ = build("synthetic-faces", image_size=32, nc=1)[3]
    luma = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]).unsqueeze(0)
    assert (gray - luma).abs().max() < 2 / 255 * 2


@pytest.mark.parametrize("key,value", [("image_size", 48), ("image_size", 8), ("image_size", 256),
                                       ("nc", 2), ("split", "val"), ("dataset_size", 0), ("data_seed", -1)])
@pytest.mark.parametrize("name", NAMES)
def test_bad_request_names_the_key(name, key, value):
    with pytest.raises(UserError, match=key):
        build(name, **{key: value})


def test_batches_under_a_distributed_sampler():
    dataset = build("synthetic-bedrooms", image_size=16, dataset_size=20)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=5, sampler=sampler, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    images, labels = batches[0]
    assert images.shape == (5, 3, 16, 16)
    assert labels["window_boxes"].shape == (5, 2, 4) and labels["bed_mask"].shape == (5, 16, 16)


# --- Factors: balanced and independent ---------------------------------------------------------

def sampled_labels(name, labels_of, n=4000):
    # The data set's own scene -> labels path, without the drawing, so thousands are cheap.
    dataset = build(name, dataset_size=n)
    rows = [labels_of(dataset.scene(i)) for i in range(n)]
    return {key: torch.stack([row[key] for row in rows]) for key in rows[0]}


@pytest.mark.parametrize("name,labels_of", [("synthetic-faces", synthetic_faces.labels),
                                            ("synthetic-bedrooms", synthetic_bedrooms.scene_labels)])
def test_items_carry_the_labels_of_their_scene(name, labels_of):
    dataset = build(name, image_size=16)
    for index in range(5):
        expected = labels_of(dataset.scene(index))
        _, labels = dataset[index]
        assert all(torch.equal(labels[key], expected[key]) for key in expected)


def test_face_factors_balanced_and_independent():
    labels = sampled_labels("synthetic-faces", synthetic_faces.labels)
    for key in ("long_hair", "smiling", "glasses"):
        assert abs(labels[key].float().mean() - 0.5) < 0.04, key
    yaw = labels["yaw"]
    assert yaw.min() >= -1 and yaw.max() <= 1
    quarters = torch.histc(yaw, bins=4, min=-1, max=1) / len(yaw)
    assert (quarters - 0.25).abs().max() < 0.03
    for key, values in (("skin_tone", 5), ("hair_color", 5)):
        share = torch.bincount(labels[key], minlength=values) / len(labels[key])
        assert len(share) == values and (share - 1 / values).abs().max() < 0.03, key
    background = labels["background"]
    assert background.shape[1] == 3 and background.std(0).min() > 0.1
    factors = torch.stack([labels["long_hair"].float(), labels["smiling"].float(), labels["glasses"].float(),
                           yaw, labels["skin_tone"].float(), labels["hair_color"].float(), background[:, 0]])
    correlation = torch.corrcoef(factors) - torch.eye(len(factors))
    assert correlation.abs().max() < 0.07


def test_bedroom_counts_balanced():
    labels = sampled_labels("synthetic-bedrooms", synthetic_bedrooms.scene_labels)
    share = torch.bincount(labels["windows"], minlength=3) / len(labels["windows"])
    assert len(share) == 3 and (share - 1 / 3).abs().max() < 0.03
    for key in ("lamp", "picture"):
        assert abs(labels[key].float().mean() - 0.5) < 0.04, key


# --- Faces: the pixels show the factors ---------------------------------------------------------

def pixels(image):
    return torch.from_numpy(np.array(image)).float() / 255   # PIL -> (size, size, 3) in [0, 1]


def rendered(face, size, **change):
    return pixels(synthetic_faces.draw(dataclasses.replace(face, **change), size)[0])


@pytest.mark.parametrize("size", [32, 64])
def test_glasses_drawn_iff_glasses_and_only_around_the_eyes(size):
    dataset = build("synthetic-faces")
    for index in range(40):
        face = dataset.scene(index)
        changed = (rendered(face, size, glasses=True) - rendered(face, size, glasses=False)).abs().amax(2) > 0.02
        rows = changed.any(1).nonzero().flatten() / size
        assert changed.sum() > 0.01 * size * size, index
        # Lenses, bridge and temples all sit within a band around the eyes.
        assert rows.min() > face.eye_y - 0.1 and rows.max() < face.eye_y + 0.1, index
        # Thick dark frames: a run of near-black pixels where the glasses are.
        dark = rendered(face, size, glasses=True).amax(2) < 0.2
        assert (dark & changed).sum() >= size // 3, index


def test_smile_changes_only_the_mouth():
    dataset = build("synthetic-faces")
    for index in range(20):
        face = dataset.scene(index)
        changed = (rendered(face, 64, smiling=True) - rendered(face, 64, smiling=False)).abs().amax(2) > 0.02
        rows = changed.any(1).nonzero().flatten() / 64
        assert changed.sum() > 10 and rows.min() > face.mouth_y - 0.05 and rows.max() < face.mouth_y + 0.1


def test_mirrored_yaw_gives_mirrored_faces():
    dataset = build("synthetic-faces")
    for index in range(20):
        face = dataset.scene(index)
        yaw = 0.3 + 0.6 * index / 20
        left, right = rendered(face, 64, yaw=-yaw), rendered(face, 64, yaw=yaw)
        assert (left - right.flip(1)).abs().mean() < 0.005, index
        assert (left - right).abs().mean() > 0.015, index   # and the turn is plain to see


# --- Bedrooms: boxes and masks match the pixels ---------------------------------------------------

@pytest.mark.parametrize("size", [16, 64])
def test_masks_present_iff_objects_present(size):
    dataset = build("synthetic-bedrooms", image_size=size)
    for index in range(150):
        _, labels = dataset[index]
        n = int(labels["windows"])
        assert bool(labels["window_mask"].any()) == (n > 0), index
        assert bool(labels["lamp_mask"].any()) == bool(labels["lamp"]), index
        assert bool(labels["picture_mask"].any()) == bool(labels["picture"]), index
        assert labels["bed_mask"].any()
        boxes = labels["window_boxes"]
        assert (boxes[n:] == -1).all() and (boxes[:n] >= 0).all() and (boxes[:n] <= 1).all()
        assert (boxes[:n, 2] > boxes[:n, 0]).all() and (boxes[:n, 3] > boxes[:n, 1]).all()
        masks = torch.stack([labels[key] for key in labels if key.endswith("_mask")])
        assert masks.sum(0).max() <= 1   # one object per pixel


def near_boxes(boxes, size):
    """Pixels that touch any of the boxes (x0, y0, x1, y1 in image widths), grown by one pixel."""
    centres = (torch.arange(size) + 0.5) / size
    near = torch.zeros(size, size, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        rows = (centres >= y0 - 1 / size) & (centres <= y1 + 1 / size)
        cols = (centres >= x0 - 1 / size) & (centres <= x1 + 1 / size)
        near |= rows[:, None] & cols[None, :]
    return near


def test_window_mask_inside_window_boxes():
    dataset = build("synthetic-bedrooms", image_size=64)
    for index in range(60):
        _, labels = dataset[index]
        boxes = labels["window_boxes"][: int(labels["windows"])].tolist()
        assert not (labels["window_mask"] & ~near_boxes(boxes, 64)).any(), index


def dilate(mask):
    return F.max_pool2d(mask[None, None].float(), 3, stride=1, padding=1)[0, 0].bool()


@pytest.mark.parametrize("mask_key,field,absent", [("window_mask", "windows", ()), ("picture_mask", "picture", None)])
def test_masks_cover_the_object_and_nothing_else(mask_key, field, absent):
    size = 64
    dataset = build("synthetic-bedrooms", image_size=size)
    checked = 0
    for index in range(80):
        room = dataset.scene(index)
        if not getattr(room, field):
            continue
        with_it, labels = synthetic_bedrooms.draw(room, size)
        without, _ = synthetic_bedrooms.draw(dataclasses.replace(room, **{field: absent}), size)
        changed = (pixels(with_it) - pixels(without)).abs().amax(2) > 0.01
        mask = labels[mask_key]
        boxes = [window.box for window in room.windows] if field == "windows" else [room.picture.box]
        in_front = labels["bed_mask"] | labels["lamp_mask"]
        # Drawing the object changes most pixels on its mask, and elsewhere only its anti-aliased
        # rim: pixels within its box next to its mask, or next to what stands in front of it.
        assert (changed & mask).sum() >= 0.9 * mask.sum(), index
        assert not (changed & ~near_boxes(boxes, size)).any(), index
        assert not (changed & ~dilate(mask) & ~dilate(in_front)).any(), index
        checked += 1
    assert checked >= 20


# --- render_speed and the preview command ---------------------------------------------------------

def test_render_speed_reports_images_per_second():
    assert render_speed("synthetic-bedrooms", size=16, n=20) > 0


def test_preview_writes_a_grid_and_prints_the_balance(tmp_path, forks):
    out = tmp_path / "new" / "bedrooms.png"
    result = forks.cli("data", "preview", "--dataset", "synthetic-bedrooms", "--n", "9", "--size", "32",
                     "--masks", "--out", str(out), timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "windows: counts" in result.stdout and "window_mask red" in result.stdout
    assert not [p for p in out.parent.iterdir() if p.name != "bedrooms.png"]   # no temporary left behind


def test_preview_reads_a_real_data_set(tmp_path, capsys):
    fake_datasets.write_mnist(tmp_path)
    out = tmp_path / "mnist.png"
    assert cli.main(["data", "preview", "--dataset", "mnist", "--data-root", str(tmp_path), "--n", "4",
                     "--size", "32", "--out", str(out)]) == 0
    assert out.exists() and "4 images of mnist" in capsys.readouterr().out


@pytest.mark.parametrize("args,culprit", [
    (["--dataset", "no-such-data"], "synthetic-bedrooms, synthetic-faces"),
    (["--dataset", "synthetic-faces", "--size", "48"], "image_size=48"),
    (["--dataset", "synthetic-faces", "--masks"], "--masks"),
    (["--dataset", "synthetic-faces", "--n", "0"], "n=0"),
    (["--dataset", "mnist", "--data-root", "/nonexistent"], "data_root="),
])
def test_preview_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, culprit):
    out = tmp_path / "preview.png"
    assert cli.main(["data", "preview", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert culprit in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_preview_bad_out_extension(tmp_path, capsys):
    assert cli.main(["data", "preview", "--dataset", "synthetic-faces", "--out", str(tmp_path / "p.xyz")]) == 2
    assert "out=" in capsys.readouterr().err
