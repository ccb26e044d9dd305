"""``dcgan-lab features-svm`` (the paper's section 5.2): D's features are each hidden layer max-pooled to
4x4, whatever the batch; the SVM solved in the labelled images' span is scikit-learn's own SVM on the
features; label draws are balanced and disjoint; on Debian's Fashion-MNIST files a tracked D gives the
table, the JSON and one CSV row per draw and method; bad input is one line, exit 2."""
import csv
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from mlflow import MlflowClient
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from orchestrator.config import resolve_config
from orchestrator.features_svm import classifiers
from orchestrator.features_svm.features import GRID, d_features
from orchestrator.features_svm.study import METHODS, Design, draw_indices, random_discriminator

DEBIAN = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(not os.path.isdir(DEBIAN),
                                   reason=f"{DEBIAN} absent: apt-get install dataset-fashion-mnist")
TINY = ["--draws", "2", "--labels-per-class", "10", "--val-per-class", "10", "--cnn-epochs", "5"]


class Images:
    """A float image array in the data cache's interface (``batch(indices, device)``)."""

    def __init__(self, x):
        self.x = x

    def batch(self, indices, device):
        return self.x[torch.as_tensor(np.asarray(indices))].to(device)


def log_d_run(uri, folder, **overrides):
    """A tracked run holding a randomly initialised D and its config, as training leaves them."""
    cfg = resolve_config("fashion-quick", {"ndf": 8, **overrides})
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("features-svm")
    exp_id = exp.experiment_id if exp else client.create_experiment("features-svm", str(folder / "artifacts"))
    run_id = client.create_run(exp_id).info.run_id
    model = folder / f"model-{run_id}"
    model.mkdir()
    torch.save(random_discriminator(cfg, 3).state_dict(), model / "discriminator.pt")
    (model / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    client.log_artifacts(run_id, str(model), "model")
    client.set_terminated(run_id)
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("features-svm")
    uri = f"sqlite:///{folder}/mlflow.db"
    return {"uri": uri, "folder": folder, "fashion": log_d_run(uri, folder),
            "faces": log_d_run(uri, folder, dataset="synthetic-faces", nc=3)}


def test_features_are_every_hidden_layer_max_pooled_to_4x4_whatever_the_batch():
    cfg = resolve_config("fashion-quick", {"ndf": 8, "bn_placement": "all"})
    netD = random_discriminator(cfg, 0).eval()
    x = torch.rand(7, 1, 32, 32) * 2 - 1
    features = d_features(netD, Images(x), np.arange(7))
    expected, h = [], x
    with torch.no_grad():
        for layer in netD.main:
            h = layer(h)
            if layer in netD.hidden_layers():
                expected.append(F.adaptive_max_pool2d(h, GRID).flatten(1))
    assert features.shape == (7, (8 + 16 + 32) * GRID * GRID)
    np.testing.assert_array_equal(features, torch.cat(expected, 1).numpy())
    alone = np.concatenate([d_features(netD, Images(x), [i]) for i in range(7)])
    np.testing.assert_allclose(alone, features, rtol=1e-5, atol=1e-6)   # eval-mode BN: no batch statistics


def test_the_svm_in_the_labelled_span_is_the_svm_on_the_features():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 400))
    y = np.repeat(np.arange(3), 20)
    x = centres[y] + 2 * rng.normal(size=(60, 400))
    test_y = np.repeat(np.arange(3), 100)
    test_x = centres[test_y] + 2 * rng.normal(size=(300, 400))
    scaler = StandardScaler().fit(x)
    span = classifiers._span(scaler.transform(x))
    for C in (1e-4, 1e-2):
        plain = LinearSVC(C=C, tol=1e-8, max_iter=100_000).fit(scaler.transform(x), y)   # intercept penalised as a feature
        in_span = LinearSVC(C=C, tol=1e-8, max_iter=100_000, fit_intercept=False).fit(
            classifiers._in_span(scaler, span, x), y)
        np.testing.assert_allclose(in_span.decision_function(classifiers._in_span(scaler, span, test_x)),
                                   plain.decision_function(scaler.transform(test_x)), atol=1e-4)


def test_label_draws_are_balanced_disjoint_and_reproducible():
    labels = np.repeat(np.arange(10), 50)
    design = Design(labels_per_class=7, val_per_class=5, seed=3)
    labelled, val = draw_indices(labels, design, 0)
    assert np.bincount(labels[labelled]).tolist() == [7] * 10 and np.bincount(labels[val]).tolist() == [5] * 10
    assert not set(labelled) & set(val)
    again = draw_indices(labels, design, 0)
    assert (again[0] == labelled).all() and (again[1] == val).all()
    assert not (draw_indices(labels, design, 1)[0] == labelled).all()


def test_the_classifier_of_ds_architecture_has_ds_layers_and_a_10_way_head():
    cfg = resolve_config("fashion-quick", {"ndf": 8})
    netD, net = random_discriminator(cfg, 0), classifiers.classifier_like_d(cfg, 10)
    d_shapes = [p.shape for p in netD.parameters()]
    shapes = [p.shape for p in net.parameters()]
    assert shapes[:len(d_shapes) - 1] == d_shapes[:-1]   # every layer but the head
    assert net(torch.zeros(5, 1, 32, 32)).shape == (5, 10)


@needs_fashion
def test_a_fashion_run_gives_the_table_json_and_per_draw_csv(store, forks, tmp_path):
    out = tmp_path / "out"
    r = forks.cli("features-svm", "--run", store["fashion"], "--mlflow-uri", store["uri"], *TINY, "--out", str(out),
                  timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| supervised CNN of D's architecture |" in r.stdout
    result = json.loads((out / "features_svm.json").read_text())
    assert (result["n_features"], result["n_train"], result["n_test"]) == ((8 + 16 + 32) * 16, 60000, 10000)
    for key in METHODS:
        m = result["methods"][key]
        assert m["low"] <= m["mean"] <= m["high"] and m["n"] == 2
    assert max(result["methods"][key]["mean"] for key in ("d_svm", "random_d_svm")) < 0.6   # chance: 0.9
    rows = list(csv.DictReader(open(out / "draws.csv")))
    assert len(rows) == 2 * len(METHODS) and {row["method"] for row in rows} == set(METHODS)
    assert (out / "features_svm.md").read_text() in r.stdout


@pytest.mark.parametrize("case, argv, says", [
    ("unknown-run", ["--run", "0123456789abcdef0123456789abcdef"], "was not found"),
    ("faces-run", ["--run", "{faces}"], "dataset='synthetic-faces': features-svm needs"),
    ("one-draw", ["--run", "{fashion}", "--draws", "1"], "draws=1 is not allowed: at least 2"),
    ("no-labels", ["--run", "{fashion}", "--labels-per-class", "0"], "labels-per-class=0 is not allowed"),
    pytest.param("too-many-labels", ["--run", "{fashion}", "--labels-per-class", "5950"],
                 "labels-per-class=5950 is not allowed: with val-per-class=100 at most 5900", marks=needs_fashion),
])
def test_bad_input_is_one_line(case, argv, says, store, forks, tmp_path):
    argv = [a.format(**store) for a in argv]
    r = forks.cli("features-svm", *argv, "--mlflow-uri", store["uri"], "--out", str(tmp_path / "out"))
    assert r.returncode == 2, (case, r.stderr[-2000:])
    assert len(r.stderr.strip().splitlines()) == 1 and says in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
