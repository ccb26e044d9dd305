"""The latent-space and representation experiments: their math on known inputs, and every
command run through the CLI on small generators in a temp MLflow store.

The generators are tiny (the smoke preset's nets) and trained by regression to reproduce 64
real images from 64 fixed z, so that in seconds they draw things the evaluators recognise:
windows for ``forget``, faces with attributes for the arithmetic queries. (A GAN trained for
the seconds a test can afford draws neither.) They are logged in the training loop's artifact
layout, model/{generator,discriminator}.pt and model/config.yaml. The evaluators are the shipped
frozen ones.
"""
import json
import os

import numpy as np
import pytest
import torch
import yaml
from conftest import run_cli

from orchestrator.cli import main
from orchestrator.config import resolve_config
from trainables import run_logger, store
from trainables.latent.arithmetic import derive_target, latent_arithmetic, neighbours, pixel_arithmetic, prior_norm, trial_vectors
from trainables.latent.forget import energy_matched_maps, fit_window_classifier, maps_to_drop, training_positions
from trainables.latent.generator import fixed_bn, hidden_features, render, render_dropped, split_at_hidden
from trainables.latent.queries import parse_query
from trainables.latent.recipes import RECIPES
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


@pytest.mark.parametrize("z_dist", ["normal", "uniform"])
def test_norm_matched_control_puts_y_on_the_prior_shell_and_random_triples_at_y_norm(z_dist):
    nz, k, gen = 100, 3, torch.Generator().manual_seed(0)
    typical = prior_norm(nz, z_dist)
    assert typical == pytest.approx(float(sample_z(4096, nz, z_dist, generator=gen).norm(dim=1).square().mean().sqrt()),
                                    rel=0.01)
    groups = [sample_z(k, nz, z_dist, generator=gen) for _ in range(3)]
    random_groups = [sample_z(k, nz, z_dist, generator=gen) for _ in range(3)]
    one = trial_vectors(groups, random_groups, 1, typical)
    assert torch.equal(one["latent"], groups[0][0] - groups[1][0] + groups[2][0])
    assert float(one["latent_normed"].norm()) == pytest.approx(typical, rel=1e-5)
    assert float(one["random"].norm()) == pytest.approx(float(one["latent"].norm()), rel=1e-5)
    # Same directions: only the length changed.
    assert torch.allclose(one["latent_normed"] / typical, one["latent"] / one["latent"].norm(), atol=1e-6)
    # One exemplar: Y has three times the prior's variance; three averaged: 3 x 1/3 = 1.
    zs = [sample_z(2000 * k, nz, z_dist, generator=gen).view(2000, k, nz) for _ in range(3)]
    y1 = (zs[0][:, 0] - zs[1][:, 0] + zs[2][:, 0]).norm(dim=1).mean() / typical
    y3 = (zs[0].mean(1) - zs[1].mean(1) + zs[2].mean(1)).norm(dim=1).mean() / typical
    assert float(y1) == pytest.approx(3 ** 0.5, rel=0.02) and float(y3) == pytest.approx(1.0, rel=0.02)


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
    trunk, head = split_at_hidden(netG)
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
    coef, _, accuracy = fit_window_classifier(h, pos, neg)
    drop = maps_to_drop(coef)
    assert accuracy == 1.0
    assert {1, 3} <= set(drop.tolist()) and 0 not in drop.tolist()
    assert set(drop.tolist()) == {i for i, w in enumerate(coef.tolist()) if w > 0}

    # The dropped maps are zero at every position of what the output layer receives.
    seen = []
    hook = head[0].register_forward_hook(lambda _m, inputs, _o, seen=seen: seen.append(inputs[0].clone()))
    try:
        images, zeroed = render_dropped(netG, z, drop)
    finally:
        hook.remove()
    assert float(zeroed.abs().max()) == 0.0
    assert float(seen[0][:, drop].abs().max()) == 0.0
    kept = [i for i in range(h.shape[1]) if i not in drop.tolist()]
    assert float(seen[0][:, kept].abs().max()) > 0
    assert not torch.equal(images, render(netG, z))


def test_layer_choice_cuts_g_at_each_hidden_layer():
    cfg = resolve_config("smoke", {"dataset": "synthetic-bedrooms"})     # 32x32, ngf 8: 4x4x32, 8x8x16, 16x16x8
    torch.manual_seed(0)
    netG = fixed_bn(build_models(cfg)[0], cfg.nz, cfg.z_dist)
    z = sample_z(6, cfg.nz, cfg.z_dist)
    for layer, (maps, side) in {1: (8, 16), 2: (16, 8), 3: (32, 4)}.items():
        trunk, head = split_at_hidden(netG, layer)
        h = hidden_features(netG, z, layer)
        assert h.shape == (6, maps, side, side)
        assert torch.allclose(head(h), render(netG, z), atol=1e-6)
        seen = []
        hook = head[0].register_forward_hook(lambda _m, inputs, _o, seen=seen: seen.append(inputs[0].clone()))
        try:
            render_dropped(netG, z, torch.tensor([0, 2]), layer)
        finally:
            hook.remove()
        assert float(seen[0][:, [0, 2]].abs().max()) == 0.0 and float(seen[0][:, 1].abs().max()) > 0


def test_energy_matched_maps_match_energy_and_avoid_the_chosen_maps():
    energy = torch.logspace(-3, 1, 40)                  # every map a different energy
    chosen = torch.tensor([5, 10, 20, 30])
    for seed in range(5):
        maps = energy_matched_maps(energy, chosen, torch.Generator().manual_seed(seed))
        assert len(set(maps.tolist())) == 4 and not set(maps.tolist()) & set(chosen.tolist())
        # Each pick is one of the 3 free maps nearest a chosen one: within 2 steps of the log-energy ladder.
        ratio = float(energy[maps].sum() / energy[chosen].sum())
        assert 0.6 < ratio < 1.7
    # Over half the layer chosen: overlap only where the rest runs out.
    chosen = torch.arange(0, 30)
    maps = energy_matched_maps(energy, chosen, torch.Generator().manual_seed(0))
    assert len(set(maps.tolist())) == 30 and set(range(30, 40)) <= set(maps.tolist())


# ---------------------------------------------------------------------------------------------
# Every command through the CLI
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A temp MLflow store with three faces generators (the finished runs of a sweep) and a bedrooms
    one, and a private cache (the shipped evaluators' reference embeddings)."""
    root = tmp_path_factory.mktemp("latent")
    # One intra-op thread: on a busy machine two stall each other (see trainables/metrics/evaluators.py).
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    old_cache = os.environ.get("DCGAN_LAB_CACHE")
    os.environ["DCGAN_LAB_CACHE"] = str(root / "cache")
    uri = "sqlite:///" + str(root / "mlflow.db")
    sweep = store.start_run(uri, "latent-test", "sweep", {}, {"kind": "sweep"})
    faces = [_log_fitted_generator(uri, "synthetic-faces", seed, parent=sweep) for seed in range(3)]
    store.end_run(uri, sweep)
    yield {"uri": uri, "root": root, "faces": faces[0], "all_faces": faces, "sweep": sweep,
           "bedrooms": _log_fitted_generator(uri, "synthetic-bedrooms", 0),
           "empty": store.start_run(uri, "latent-test", "no-model", {}, {})}
    torch.set_num_threads(old_threads)
    if old_cache is None:
        del os.environ["DCGAN_LAB_CACHE"]
    else:
        os.environ["DCGAN_LAB_CACHE"] = old_cache


def _log_fitted_generator(uri, dataset, seed, parent=None):
    from trainables.latent.data import load_images

    cfg = resolve_config("smoke", {"dataset": dataset, "mlflow_uri": uri, "seed": seed})
    torch.manual_seed(seed)
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
    run_id = store.start_run(uri, "latent-test", dataset, cfg.to_dict(), {}, parent_run_id=parent)
    logger = run_logger.RunLogger(uri, run_id)
    logger.artifact_bytes(run_logger.torch_bytes(netG.state_dict()), run_logger.MODEL_DIR, "generator.pt")
    logger.artifact_bytes(run_logger.torch_bytes(netD.state_dict()), run_logger.MODEL_DIR, "discriminator.pt")
    logger.artifact_bytes(yaml.safe_dump(cfg.to_dict()).encode(), run_logger.MODEL_DIR, "config.yaml")
    store.end_run(uri, run_id)
    return run_id


def _cli(lab, *args, out=None):
    """Run a command in this process (the CLI's own main); return its JSON report (the summary's
    with several generators) and the output folder."""
    out = out or lab["root"] / "out" / "-".join(a for a in args[:2] if not a.startswith("-"))
    assert main([*args, "--mlflow-uri", lab["uri"], "--out", str(out)]) == 0
    return json.loads(next(out.glob("*.json")).read_text()), out


def _artifacts(lab, run_id, path):
    return {os.path.basename(f.path) for f in store.client(lab["uri"]).list_artifacts(run_id, path)}


def _has_interval(stat, unit, n):
    return stat["unit"] == unit and stat["n"] == n and stat["ci"][0] <= stat["mean"] <= stat["ci"][1]


@pytest.mark.slow
def test_every_command_on_tracked_generators(lab):
    faces, bedrooms = lab["faces"], lab["bedrooms"]

    # walk: one row per pair, a change per step, both paths.
    walk, _ = _cli(lab, "latent", "walk", "--run", faces, "--points", "4", "--steps", "4")
    for how in ("linear", "slerp"):
        assert np.array(walk[how]["per_row_steps"]).shape == (3, 4)
        assert walk[how]["max_over_median"] >= 1.0 and walk[how]["largest_jumps"]
        assert _has_interval(walk[how]["max_over_median_per_path"], "paths", 3)
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
    assert set(arith["settings"]) == {f"{kind}_{m}" for kind in ("latent", "latent_normed", "random", "pixel")
                                      for m in (3, 1)}
    settings = arith["settings"]
    assert settings["latent_3"]["outputs_per_trial"] == 9 and settings["pixel_3"]["outputs_per_trial"] == 1
    assert arith["settings"]["latent_3"]["target"]["ci"] is None        # one trial: no interval
    assert arith["y_norm_over_prior_norm"]["3"]["mean"] == pytest.approx(float(y.norm()) / 4.0, rel=1e-5)  # nz 16

    # arithmetic by the paper's smile recipe over 3 trials: per-trial shares, trial-paired tests.
    smile, _ = _cli(lab, "latent", "arithmetic", "--run", faces, "--recipe", "smile", "--exemplars", "2",
                    "--trials", "3", "--budget", "1024")
    assert smile["target"] == "smiling & ~long_hair" and smile["trials"] == 3 and smile["unit"] == "trials"
    for setting in smile["settings"].values():
        assert len(setting["per_trial_target"]) == 3 and _has_interval(setting["target"], "trials", 3)
    primary = smile["tests"]["latent_2 vs random_2"]
    assert smile["primary"] == "latent_2 vs random_2" and primary["role"] == "primary" and primary["n"] == 3
    assert 0 < primary["p"] <= 1
    assert all("p_holm" in t for name, t in smile["tests"].items() if name != smile["primary"])
    assert 0 <= smile["prior"]["target"]["ci"][0] <= smile["prior"]["target"]["ci"][1] <= 1

    # turn over 3 exemplar draws, each against random directions.
    turn, _ = _cli(lab, "latent", "turn", "--run", faces, "--rows", "2", "--steps", "5", "--pool", "64", "--draws", "3")
    assert len(turn["per_draw"]) == 3 and turn["unit"] == "exemplar draws"
    for draw in turn["per_draw"]:
        assert len(draw["turn"]["spearman_per_row"]) == 2
        assert max(draw["exemplar_yaw_left"]) <= min(draw["exemplar_yaw_right"])
    assert _has_interval(turn["summary"]["turn: leftward_yaw_change"], "exemplar draws", 3)
    assert turn["tests"]["leftward yaw change: turn vector vs random directions"]["n"] == 3

    # neighbours: the whole training set (the smoke preset's 512 images), in both spaces.
    near, _ = _cli(lab, "latent", "neighbours", "--run", faces, "--n", "64", "--heldout-n", "64")
    assert near["train_images"] == 512
    for space in ("evaluator", "pixels"):
        assert near[space]["generated_to_train"]["q50"] > 0 and near[space]["heldout_to_train"]["q50"] > 0
        ratio = near[space]["median_ratio"]
        assert ratio["ci"][0] <= ratio["mean"] <= ratio["ci"][1]

    # represent: D's features (16 x (8 + 16 + 32) for the smoke D) against the baselines, in-domain ...
    rep, _ = _cli(lab, "represent", "--run", faces, "--labels", "glasses", "--pool", "300", "--test-n", "100",
                  "--per-class", "20", "--draws", "3")
    assert rep["feature_size"] == {"D": 896, "D_random": 896, "pixels": 3072} and rep["setting"] == "in-domain"
    task = rep["tasks"]["glasses"]
    for name in ("D", "D_random", "pixels"):
        assert len(task[name]["accuracies"]) == 3 and task[name]["unit"] == "label draws"
        assert 0 <= task[name]["C_interior"] <= 3 and task[name]["n"] == 3
    assert set(rep["tests"]) == {"glasses: D vs D_random", "glasses: D vs pixels"}
    # ... and transfer: the bedrooms D probed on faces attributes (spelled `latent represent`).
    rep, _ = _cli(lab, "latent", "represent", "--run", bedrooms, "--dataset", "synthetic-faces", "--labels", "smiling",
                  "--pool", "300", "--test-n", "100", "--per-class", "20", "--draws", "3")
    assert rep["setting"] == "transfer: D trained on synthetic-bedrooms" and rep["dataset"] == "synthetic-faces"


def test_forget_fits_on_one_set_measures_on_another_at_the_chosen_layer(lab):
    bedrooms = lab["bedrooms"]
    forget, out = _cli(lab, "latent", "forget", "--run", bedrooms, "--n", "150", "--heldout-n", "60")
    coef = np.load(out / "coef.npy")
    assert forget["dropped_maps"] == np.flatnonzero(coef > 0).tolist() and forget["dropped_max_abs"] == 0.0
    assert forget["layer"] == 1 and forget["layer_maps"] == 8 and forget["feature_side"] == 16
    assert forget["share_of_layer_dropped"] == forget["maps_dropped"] / 8
    assert forget["positives"] > 0 and forget["negatives"] == forget["positives"]
    for name in ("before", "dropped", "random", "energy_matched"):
        assert forget["conditions"][name]["window_pixels"]["n"] == 60          # measured on held-out images
    assert forget["tests"]["window: dropped vs energy-matched"]["role"] == "primary"
    assert len(forget["controls"]["energy_matched"]["energy_ratio"]) == forget["control_draws"]
    z_fit, z_heldout = np.load(out / "z_fit.npy"), np.load(out / "z_heldout.npy")
    assert z_fit.shape[0] == 150 and z_heldout.shape[0] == 60
    assert not np.isin(z_heldout[:, 0], z_fit[:, 0]).any()

    # The fit, and so the maps chosen, do not depend on the held-out set.
    other, out2 = _cli(lab, "latent", "forget", "--run", bedrooms, "--n", "150", "--heldout-n", "20",
                       out=lab["root"] / "forget-other")
    assert np.array_equal(np.load(out2 / "coef.npy"), coef) and other["dropped_maps"] == forget["dropped_maps"]

    # The layer at a quarter of the image size: 8x8, 16 maps for the smoke G.
    quarter, _ = _cli(lab, "latent", "forget", "--run", bedrooms, "--n", "150", "--heldout-n", "20", "--layer", "2",
                      out=lab["root"] / "forget-layer2")
    assert quarter["layer"] == 2 and quarter["layer_maps"] == 16 and quarter["feature_side"] == 8
    assert 0 < quarter["maps_dropped"] == len(quarter["dropped_maps"]) and quarter["dropped_max_abs"] == 0.0


def test_several_generators_are_summarised_with_the_generator_as_unit(lab, capsys):
    ids = lab["all_faces"]
    summary, out = _cli(lab, "latent", "walk", "--generators", ",".join(ids), "--points", "3", "--steps", "3")
    assert summary["unit"] == "generators" and summary["generators"] == ids
    stat = summary["statistics"]["linear: mean_max_over_median"]
    assert _has_interval(stat, "generators", 3) and set(stat["per_generator"]) == set(ids)
    for run_id in ids:
        per_run = json.loads((out / run_id / "walk.json").read_text())
        assert stat["per_generator"][run_id] == per_run["linear"]["max_over_median_per_path"]["mean"]
        assert "walk.json" in _artifacts(lab, run_id, "latent/walk")
    # Two generators: numbers per generator, no interval.
    two, _ = _cli(lab, "latent", "walk", "--generators", ",".join(ids[:2]), "--points", "3", "--steps", "3",
                  out=lab["root"] / "walk-two")
    assert two["statistics"]["linear: mean_max_over_median"]["ci"] is None
    # Shares keep their range over generators too.
    smile, _ = _cli(lab, "latent", "arithmetic", "--generators", ",".join(ids), "--recipe", "smile", "--exemplars", "1",
                    "--trials", "3", "--budget", "512", out=lab["root"] / "smile-three")
    for key, stat in smile["statistics"].items():
        assert stat["bounds"] == ([-1.0, 1.0] if key.startswith("effect") else [0.0, 1.0]), key
        assert stat["ci"] is None or -1 <= stat["ci"][0] <= stat["ci"][1] <= 1
    # A sweep's finished runs (the parent itself is not a generator); the summary is logged to the parent.
    swept, _ = _cli(lab, "latent", "walk", "--sweep", lab["sweep"], "--points", "3", "--steps", "3",
                    out=lab["root"] / "walk-sweep")
    assert sorted(swept["generators"]) == sorted(ids)
    assert "walk.json" in _artifacts(lab, lab["sweep"], "latent/walk")
    # A generator that fails is named, and nothing is written for the others either.
    bad = lab["root"] / "bad"
    capsys.readouterr()
    assert main(["latent", "arithmetic", "--generators", ",".join(ids[:2]), "--a", "glasses", "--b", "~glasses",
                 "--c", "smiling", "--exemplars", "20", "--trials", "1", "--budget", "16",
                 "--mlflow-uri", lab["uri"], "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dcgan-lab: error: run={ids[0]!r}: --a='glasses' matched") and not bad.exists()


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
    (["latent", "forget", "--run", "{bedrooms}", "--layer", "4"],
     "layer=4 is not allowed: the 32x32 G of run="),
    (["latent", "walk"], "walk needs --generators RUN_ID[,RUN_ID...] (or --run RUN_ID) or --sweep PARENT_ID"),
    (["latent", "walk", "--generators", "{faces},{faces}"], "names a run twice"),
    (["latent", "walk", "--generators", "{faces},{bedrooms}"], "generators summarised together must share"),
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
