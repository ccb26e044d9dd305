"""The latent-space and representation experiments: their math on known inputs, and every
command run through the CLI on small generators in a temp MLflow store.

The generators are tiny (the smoke preset's nets) and trained by regression to reproduce 64
real images from 64 fixed z, so that in seconds they draw things the evaluators recognise:
windows for ``forget``, faces with attributes for the arithmetic queries. (A GAN trained for
the seconds a test can afford draws neither.) They are logged in the training loop's artifact
layout, model/{generator,discriminator}.pt and model/config.yaml. The evaluators are the real
ones, trained on fewer images into a module-private cache.
"""
import dataclasses
import json
import os

import numpy as np
import pytest
import torch
import yaml

from conftest import run_cli
from orchestrator import tracking
from orchestrator.cli import main
from orchestrator.config import resolve_config
from trainables.latent.arithmetic import RECIPES, derive_target, latent_arithmetic, neighbours, pixel_arithmetic
from trainables.latent.forget import fit_window_classifier, maps_to_drop, training_positions
from trainables.latent.generator import fixed_bn, render, render_dropped, split_at_last_hidden
from trainables.latent.queries import parse_query
from trainables.latent.represent import d_features, discrete_labels
from trainables.models import Discriminator, build_models, sample_z

FIT_IMAGES, FIT_STEPS = 64, 150


# ---------------------------------------------------------------------------------------------
# The math, on known inputs
# ---------------------------------------------------------------------------------------------

def test_vector_arithmetic_and_noise_bounds():
    z_a = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    z_b = torch.tensor([[0.0, 1.0], [2.0, 1.0], [1.0, 1.0]])
    z_c = torch.tensor([[-1.0, 0.5], [1.0, 0.5], [0.0, 2.0]])
    y = latent_arithmetic(z_a, z_b, z_c)
    # mean(A) = (3, 4), mean(B) = (1, 1), mean(C) = (0, 1)  ->  (2, 4)
    assert torch.equal(y, torch.tensor([2.0, 4.0]))

    y = torch.randn(100)
    out = neighbours(y, generator=torch.Generator().manual_seed(0))
    assert out.shape == (9, 100) and torch.equal(out[0], y)
    noise = out[1:] - y
    assert noise.abs().max() <= 0.25 + 1e-6
    # Uniform over the whole interval, not a narrower one: 800 draws reach near both ends.
    assert noise.max() > 0.24 and noise.min() < -0.24 and abs(noise.mean()) < 0.02

    x = torch.full((2, 3, 4, 4), 0.9)
    assert torch.equal(pixel_arithmetic(x, -x, x), torch.ones(3, 4, 4))   # 0.9 + 0.9 + 0.9 clipped


def test_recipes_targets_follow_from_their_queries():
    allowed = ["long_hair", "smiling", "glasses"]
    for recipe in RECIPES.values():
        queries = [parse_query(recipe[k], allowed) for k in "abc"]
        assert set(derive_target(*queries)) == set(parse_query(recipe["target"], allowed))


def test_represent_feature_size_is_16_times_hidden_channels():
    x = torch.zeros(2, 3, 32, 32)
    assert d_features(Discriminator(ndf=64, image_size=32).eval(), x).shape == (2, 7168)   # 16 x (64+128+256)
    assert d_features(Discriminator(ndf=32, image_size=32).eval(), x).shape == (2, 3584)
    x64 = torch.zeros(2, 3, 64, 64)
    assert d_features(Discriminator(ndf=64, image_size=64).eval(), x64).shape == (2, 15360)  # 16 x (64..512)
    # Class labels: one bool or integer per image (not yaw's floats, not CelebA's 40-attribute rows).
    labels = {"smiling": torch.zeros(4, dtype=torch.bool), "yaw": torch.zeros(4), "class": torch.zeros(4, dtype=torch.long),
              "attr": torch.zeros(4, 40, dtype=torch.long)}
    assert discrete_labels(labels) == ["smiling", "class"]


def test_window_classifier_picks_the_maps_that_fire_in_windows_and_they_are_zeroed():
    torch.manual_seed(0)
    cfg = resolve_config("smoke", {"dataset": "synthetic-bedrooms"})
    netG = fixed_bn(build_models(cfg)[0], cfg.nz, cfg.z_dist)
    z = sample_z(20, cfg.nz, cfg.z_dist)
    trunk, head = split_at_last_hidden(netG)
    h = trunk(z.view(20, -1, 1, 1)).detach()
    side = h.shape[-1]
    # Windows in the top-left quarter of every image; maps 1 and 3 fire there, map 0 elsewhere.
    cells = torch.zeros(20, side, side)
    cells[:, :side // 2, :side // 2] = 1
    h = h.abs() * 0.1
    h[:, [1, 3]] += 3 * cells.unsqueeze(1)
    h[:, 0] += 3 * (1 - cells)
    pos, neg = training_positions(cells, torch.Generator().manual_seed(0))
    assert len(pos) == len(neg) == 20 * (side // 2) ** 2
    assert bool((cells[tuple(pos.T)] == 1).all()) and bool((cells[tuple(neg.T)] == 0).all())
    coef, accuracy = fit_window_classifier(h, pos, neg)
    drop = maps_to_drop(coef)
    assert accuracy == 1.0
    assert {1, 3} <= set(drop.tolist()) and 0 not in drop.tolist()
    assert set(drop.tolist()) == {i for i, w in enumerate(coef.tolist()) if w > 0}

    # The dropped maps are zero at every position of what the output layer receives.
    seen = []
    hook = head[0].register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].clone()))
    try:
        images, zeroed = render_dropped(netG, z, drop)
    finally:
        hook.remove()
    assert float(zeroed.abs().max()) == 0.0
    assert float(seen[0][:, drop].abs().max()) == 0.0
    kept = [i for i in range(h.shape[1]) if i not in drop.tolist()]
    assert float(seen[0][:, kept].abs().max()) > 0
    assert not torch.equal(images, render(netG, z))


# ---------------------------------------------------------------------------------------------
# Every command through the CLI
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A temp MLflow store with a faces and a bedrooms generator, and a private evaluator cache."""
    from trainables.metrics import evaluators
    from trainables.metrics.cache import cache_path, save_atomic

    root = tmp_path_factory.mktemp("latent")
    # One intra-op thread: on a busy machine two stall each other (see trainables/metrics/evaluators.py).
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    old_cache = os.environ.get("DCGAN_LAB_CACHE")
    os.environ["DCGAN_LAB_CACHE"] = str(root / "cache")
    uri = "sqlite:///" + str(root / "mlflow.db")
    runs = {}
    for dataset, n_train in (("synthetic-faces", 3000), ("synthetic-bedrooms", 2000)):
        spec = dataclasses.replace(evaluators.EVALUATORS[dataset], n_train=n_train, epochs=2)
        state = evaluators.train_evaluator(spec, dataset, 32, 3, seed=0)
        save_atomic(state, cache_path("evaluators", f"{dataset}-32px-nc3-v{evaluators.EVALUATOR_VERSION}-seed0"))
        runs[dataset] = _log_fitted_generator(uri, dataset)
    runs["empty"] = tracking.start_run(uri, "latent-test", "no-model", {}, {})
    yield {"uri": uri, "root": root, "faces": runs["synthetic-faces"], "bedrooms": runs["synthetic-bedrooms"],
           "empty": runs["empty"]}
    torch.set_num_threads(old_threads)
    if old_cache is None:
        del os.environ["DCGAN_LAB_CACHE"]
    else:
        os.environ["DCGAN_LAB_CACHE"] = old_cache


def _log_fitted_generator(uri, dataset):
    from trainables.latent.data import load_images

    cfg = resolve_config("smoke", {"dataset": dataset, "mlflow_uri": uri})
    torch.manual_seed(0)
    netG, netD = build_models(cfg)
    x, _ = load_images(dataset, cfg.image_size, cfg.nc, "train", FIT_IMAGES)
    z = sample_z(FIT_IMAGES, cfg.nz, cfg.z_dist)
    opt = torch.optim.Adam(netG.parameters(), 5e-3)
    for _ in range(FIT_STEPS):
        i = torch.randint(0, FIT_IMAGES, (32,))
        loss = (netG(z[i]) - x[i]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    run_id = tracking.start_run(uri, "latent-test", dataset, cfg.to_dict(), {})
    logger = tracking.RunLogger(uri, run_id)
    logger.artifact_bytes(tracking.torch_bytes(netG.state_dict()), tracking.MODEL_DIR, "generator.pt")
    logger.artifact_bytes(tracking.torch_bytes(netD.state_dict()), tracking.MODEL_DIR, "discriminator.pt")
    logger.artifact_bytes(yaml.safe_dump(cfg.to_dict()).encode(), tracking.MODEL_DIR, "config.yaml")
    return run_id


def _cli(lab, *args):
    """Run a command in this process (the CLI's own main); return its JSON report."""
    out = lab["root"] / "out" / "-".join(a for a in args[:2] if not a.startswith("-"))
    assert main([*args, "--mlflow-uri", lab["uri"], "--out", str(out)]) == 0
    return json.loads(next(out.glob("*.json")).read_text()), out


def _artifacts(lab, run_id, path):
    return {os.path.basename(f.path) for f in tracking.client(lab["uri"]).list_artifacts(run_id, path)}


def test_every_command_on_tracked_generators(lab):
    faces, bedrooms = lab["faces"], lab["bedrooms"]

    # walk: one row per pair, a change per step, both paths.
    walk, _ = _cli(lab, "latent", "walk", "--run", faces, "--points", "3", "--steps", "4")
    for how in ("linear", "slerp"):
        assert np.array(walk[how]["per_row_steps"]).shape == (2, 4)
        assert walk[how]["max_over_median"] >= 1.0 and walk[how]["largest_jumps"]
    assert {"walk.json", "walk.png", "z_linear.npy", "z_slerp.npy"} <= _artifacts(lab, faces, "latent/walk")

    # sheet (through a real subprocess): z stored locally and in the run.
    sheet_dir = lab["root"] / "sheet"
    result = run_cli("latent", "sheet", "--run", faces, "--n", "16", "--mlflow-uri", lab["uri"], "--out", str(sheet_dir))
    assert result.returncode == 0, result.stderr
    z = torch.from_numpy(np.load(sheet_dir / "z.npy"))
    assert z.shape == (16, 16) and "z.npy" in _artifacts(lab, faces, "latent/sheet")

    # arithmetic by sheet indices (found through the run's logged sheet): Y is the vector sum.
    arith, out = _cli(lab, "latent", "arithmetic", "--run", faces, "--a", "1,2,3", "--b", "4,5,6", "--c", "7,8,9",
                      "--target", "smiling")
    y = torch.from_numpy(np.load(out / "y.npy"))
    assert torch.allclose(y, z[[1, 2, 3]].mean(0) - z[[4, 5, 6]].mean(0) + z[[7, 8, 9]].mean(0), atol=1e-6)
    assert set(arith["table"]) == {"latent_3", "latent_1", "pixel_3", "pixel_1"}
    assert arith["table"]["latent_3"]["outputs"] == 9 and arith["table"]["pixel_3"]["outputs"] == 1

    # arithmetic by the paper's smile recipe: exemplars chosen by the evaluator.
    smile, _ = _cli(lab, "latent", "arithmetic", "--run", faces, "--recipe", "smile", "--exemplars", "2",
                    "--trials", "2", "--budget", "1024")
    assert smile["target"] == "smiling & ~long_hair" and smile["trials"] == 2
    assert all(0 <= row["target"] <= 1 for row in smile["table"].values())

    turn, _ = _cli(lab, "latent", "turn", "--run", faces, "--rows", "2", "--steps", "5", "--pool", "64")
    assert len(turn["turn"]["spearman_per_row"]) == 2
    assert all(-1 <= r <= 1 for r in turn["turn"]["spearman_per_row"])
    assert 0 <= turn["random_directions"]["abs_spearman_mean"] <= 1
    assert max(turn["exemplar_yaw_left"]) <= min(turn["exemplar_yaw_right"])

    near, _ = _cli(lab, "latent", "neighbours", "--run", faces, "--n", "64", "--train-n", "128", "--heldout-n", "64")
    assert near["generated_to_train"]["q50"] > 0 and near["train_images"] == 128

    # forget: the maps dropped are exactly those with a positive weight, and they are zero.
    forget, out = _cli(lab, "latent", "forget", "--run", bedrooms, "--n", "150")
    coef = np.load(out / "coef.npy")
    assert forget["dropped_maps"] == np.flatnonzero(coef > 0).tolist()
    assert forget["maps_dropped"] == len(forget["dropped_maps"]) > 0 and forget["dropped_max_abs"] == 0.0
    assert forget["positives"] > 0 and forget["negatives"] == forget["positives"]
    assert {"before", "after", "control"} <= set(forget)

    # represent: D's features (16 x (8 + 16 + 32) for the smoke D) against the baselines.
    rep, _ = _cli(lab, "represent", "--run", faces, "--labels", "glasses", "--pool", "300", "--test-n", "100",
                  "--per-class", "20", "--draws", "2")
    assert rep["feature_size"] == {"D": 896, "D_random": 896, "pixels": 3072}
    task = rep["tasks"]["glasses"]
    assert all(0 <= task[name]["mean"] <= 1 and len(task[name]["accuracies"]) == 2
               for name in ("D", "D_random", "pixels"))


@pytest.mark.parametrize("args, message", [
    (["latent", "walk", "--run", "0123abcd0123abcd0123abcd0123abcd"], "was not found"),
    (["latent", "walk", "--run", "../../etc"], "is not a valid MLflow run id"),
    (["latent", "sheet", "--run", "{empty}"], "has no generator"),
    (["latent", "arithmetic", "--run", "{faces}", "--a", "smiling & beard", "--b", "~smiling", "--c", "glasses"],
     "attribute 'beard' is unknown; allowed: long_hair, smiling, glasses, looking_left, looking_right"),
    (["latent", "arithmetic", "--run", "{faces}", "--a", "glasses", "--b", "~glasses", "--c", "smiling",
      "--exemplars", "20", "--trials", "1", "--budget", "16"], "of 16 samples, fewer than the 20 needed"),
    (["latent", "forget", "--run", "{faces}"], "forget needs a generator trained on synthetic-bedrooms"),
    (["latent", "turn", "--run", "{bedrooms}"], "turn needs a synthetic-faces generator"),
    (["represent", "--run", "{faces}", "--labels", "smiling,beard"], "labels='beard' is not a label of dataset="),
])
def test_bad_input_is_one_line_and_exit_2(lab, capsys, tmp_path, args, message):
    args = [a.format(**lab) for a in args]
    out = tmp_path / "out"
    assert main([*args, "--mlflow-uri", lab["uri"], "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_bad_input_from_a_fresh_process_has_no_traceback(lab):
    result = run_cli("latent", "forget", "--run", lab["faces"], "--mlflow-uri", lab["uri"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"dcgan-lab: error: run={lab['faces']!r} was trained on dataset='synthetic-faces': forget needs a "
        f"generator trained on synthetic-bedrooms (its evaluator finds the windows)"]
