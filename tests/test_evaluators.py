"""The shipped domain evaluators measured again on held-out images here (their manifest's scores
reproduced), and used end to end by evaluate_generator, on one worker and on a real two-process
gloo group. The measured scores are printed. Frozen files, digests and the train command:
tests/test_frozen_evaluators.py."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fake_datasets import write_celeba, write_mnist

from trainables.errors import UserError
from trainables.metrics.evaluate import evaluate_generator, fd_speed, reference_embedding
from trainables.metrics.evaluators import get_evaluator, held_out_scores, make_version, real_batches
from trainables.metrics.fid import resolve_feature_extractor
from trainables.metrics.frechet import FeatureStats, fd_stats_to_metric
from trainables.models import Generator, weights_init


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """A fresh cache for this module: every reference embedding here is built here."""
    path = str(tmp_path_factory.mktemp("dcgan-lab-cache"))
    old = os.environ.get("DCGAN_LAB_CACHE")
    os.environ["DCGAN_LAB_CACHE"] = path
    yield path
    if old is None:
        del os.environ["DCGAN_LAB_CACHE"]
    else:
        os.environ["DCGAN_LAB_CACHE"] = old


@pytest.fixture(scope="module")
def faces():
    """The shipped faces evaluator at 32 px."""
    return get_evaluator("synthetic-faces", 32)


@pytest.fixture(scope="module")
def bedrooms():
    return get_evaluator("synthetic-bedrooms", 32)


def _held_out_again(evaluator, figure):
    """Its held-out scores measured here, printed beside the manifest's; they must agree."""
    shipped = evaluator.entry["held_out"]
    scores = held_out_scores(evaluator, n=shipped["n"])
    figure(f"{evaluator.entry['file']} (n={shipped['n']}): " + ", ".join(
        f"{key}={value:.4f} (manifest {shipped[key]})" for key, value in scores.items()))
    for key, value in scores.items():
        assert value == pytest.approx(shipped[key], abs=2e-3), key
    return scores


def test_faces_evaluator_reaches_its_targets_on_held_out_faces(faces, figure):
    scores = _held_out_again(faces, figure)
    for attr in ("long_hair", "smiling", "glasses"):
        assert scores[f"{attr}_accuracy"] >= 0.97
    assert scores["yaw_mae"] <= 0.15


@pytest.mark.slow
def test_bedrooms_evaluator_reaches_its_targets_on_held_out_rooms(bedrooms, figure):
    scores = _held_out_again(bedrooms, figure)
    assert scores["window_mask_iou"] >= 0.8


def test_evaluator_api_features_and_predictions(faces):
    face = faces
    images = torch.rand(5, 3, 32, 32) * 2 - 1
    assert face.name == "faces" and face.features(images).shape == (5, face.dim)
    # Images of another size are resized to the evaluator's.
    assert face.features(torch.rand(5, 3, 64, 64) * 2 - 1).shape == (5, face.dim)
    pred = face.predict(images)
    assert {"long_hair", "smiling", "glasses", "yaw", "skin_tone", "hair_color", "background"} <= set(pred)
    assert ((pred["smiling"] >= 0) & (pred["smiling"] <= 1)).all() and pred["yaw"].shape == (5,)


@pytest.mark.slow
def test_bedrooms_evaluator_predicts_disjoint_window_and_bed_masks(bedrooms):
    images = torch.rand(5, 3, 32, 32) * 2 - 1
    room = bedrooms
    masks = room.predict(images)
    assert room.name == "bedrooms" and masks["window_mask"].shape == (5, 32, 32)
    assert masks["window_mask"].dtype == torch.bool and not (masks["window_mask"] & masks["bed_mask"]).any()


def test_an_unlabelled_data_set_has_no_domain_evaluator():
    with pytest.raises(UserError, match="dataset='lsun' has no labels"):
        get_evaluator("lsun", 32)
    with pytest.raises(UserError, match="dataset='folder' has no labels"):
        resolve_feature_extractor("domain", "folder")


def test_auto_falls_back_to_the_domain_evaluator_without_inception_weights(faces, tmp_path):
    extractor, note = resolve_feature_extractor("auto", "synthetic-faces", str(tmp_path / "missing.pth"),
                                                image_size=32)
    assert extractor.name == "faces"
    assert note.startswith("FID skipped: Inception weights not found at") and "fd_faces" in note


class Replay(torch.nn.Module):
    """A 'generator' that returns the given real images in order, whatever z."""

    def __init__(self, images):
        super().__init__()
        self.images, self.next = images, 0

    def forward(self, z):
        out = self.images[self.next:self.next + len(z)]
        self.next += len(z)
        return out


def _held_out_images(dataset, n):
    return torch.cat([x for x, _ in real_batches(dataset, 32, 3, "test", n)])


def _random_generator(seed=0):
    torch.manual_seed(seed)
    return Generator(nz=100, ngf=32, nc=3, image_size=32).apply(weights_init).eval()


def _evaluate(netG, evaluator, dataset, n, **kwargs):
    return evaluate_generator(netG, nz=100, z_dist="normal", dataset=dataset, image_size=32, n=n, batch_size=128,
                              evaluator=evaluator, **kwargs)


def test_held_out_faces_score_far_better_than_an_untrained_generator(faces, capsys):
    evaluator = faces
    real = _evaluate(Replay(_held_out_images("synthetic-faces", 1000)), evaluator, "synthetic-faces", 1000)
    noise = _evaluate(_random_generator(), evaluator, "synthetic-faces", 1000)
    with capsys.disabled():
        print(f"\n[faces@32, n=1000] held-out reals: {real}\n[faces@32, n=1000] untrained G: {noise}")
    assert set(real) == {"fd_faces", "kid_faces", "precision", "recall", "variance_ratio", "coverage_kl",
                         "coverage_modes"}
    assert real["fd_faces"] < noise["fd_faces"] / 20
    assert real["kid_faces"] < noise["kid_faces"] / 20
    assert real["precision"] > 0.6 and real["recall"] > 0.6 > noise["recall"]
    assert real["coverage_modes"] == 8 and real["coverage_kl"] < 0.02
    assert 0.7 < real["variance_ratio"] < 1.3


@pytest.mark.slow
def test_bedrooms_report_window_and_bed_fractions(bedrooms):
    evaluator = bedrooms
    real = _evaluate(Replay(_held_out_images("synthetic-bedrooms", 400)), evaluator, "synthetic-bedrooms", 400)
    truth = [y for _, y in real_batches("synthetic-bedrooms", 32, 3, "test", 400)]
    window = torch.cat([y["window_mask"] for y in truth]).float().mean()
    bed = torch.cat([y["bed_mask"] for y in truth]).float().mean()
    assert "fd_bedrooms" in real and "coverage_kl" not in real
    assert real["window_fraction"] == pytest.approx(float(window), abs=0.01)
    assert real["bed_fraction"] == pytest.approx(float(bed), abs=0.02)


def test_too_few_samples_for_the_covariance_name_n_and_the_minimum(faces):
    evaluator = faces
    with pytest.raises(UserError, match=r"n=100 is too small for fd_faces.*256-dim.*at least 257"):
        _evaluate(_random_generator(), evaluator, "synthetic-faces", 100)
    with pytest.raises(UserError, match=r"n_real=200 is too small"):
        _evaluate(_random_generator(), evaluator, "synthetic-faces", 300, n_real=200)
    with pytest.raises(UserError, match="metric='fid'"):
        _evaluate(_random_generator(), evaluator, "synthetic-faces", 300, metrics=("fd", "fid"))


def _evaluate_worker(rank, world_size, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        evaluator = get_evaluator("synthetic-faces", 32)
        results = _evaluate(_random_generator(), evaluator, "synthetic-faces", 301, n_real=400)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_distributed_evaluation_matches_a_single_worker(faces, cache, tmp_path):
    evaluator = faces
    mp.spawn(_evaluate_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    assert results[0] == results[1]
    # The reals' statistics the two workers built together equal one worker's own.
    path = os.path.join(cache, "reference", f"synthetic-faces-32px-nc3-{evaluator.key}-n400.pt")
    together = FeatureStats.from_state_dict(torch.load(path, weights_only=True)["stats"])
    os.remove(path)
    alone = reference_embedding(evaluator, "synthetic-faces", 32, 400).stats
    assert together.n == alone.n == 400
    probe = FeatureStats(evaluator.dim)
    probe.append(evaluator.features(_held_out_images("synthetic-faces", 300)))
    assert fd_stats_to_metric(together, probe) == pytest.approx(fd_stats_to_metric(alone, probe), rel=1e-6)
    # Summed in another order: equal to float64 rounding of the largest entry (an entry near 0 has
    # no relative precision of its own).
    assert torch.allclose(together.outer, alone.outer, rtol=1e-6, atol=1e-9 * alone.outer.abs().max().item())


def test_fd_speed_reports_seconds(faces):
    result = fd_speed("synthetic-faces", image_size=32, n=1000, batch_size=500)
    assert result["n"] == 1000 and result["seconds"] > 0 and result["fd_faces"] > 0


def test_class_and_multilabel_evaluators_train_on_tiny_real_format_files(tmp_path):
    folder = tmp_path / "evaluators"
    write_mnist(str(tmp_path), n=64, n_test=16)
    make_version("mnist", 32, nc=1, folder=folder, data_root=str(tmp_path))
    mnist = get_evaluator("mnist", 32, nc=1, folder=folder)
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    assert mnist.name == "mnist" and mnist.features(images).shape == (4, 256)
    assert mnist.predict(images)["class"].shape == (4,)
    assert set(held_out_scores(mnist, data_root=str(tmp_path))) == {"class_accuracy"}
    assert set(mnist.entry["held_out"]) == {"n", "class_accuracy"}

    write_celeba(str(tmp_path))
    make_version("celeba", 32, folder=folder, data_root=str(tmp_path))
    celeba = get_evaluator("celeba", 32, folder=folder)
    attr = celeba.predict(torch.rand(4, 3, 32, 32) * 2 - 1)["attr"]
    assert celeba.name == "celeba" and attr.shape == (4, 40) and ((attr >= 0) & (attr <= 1)).all()
    assert set(held_out_scores(celeba, data_root=str(tmp_path))) == {"attr_accuracy"}
