"""A smoke training on Debian's Fashion-MNIST, as a user starts it: it measures fd_fashion with the shipped
evaluator (its digest logged as evaluator_sha), and its D gives `dcgan-lab features-svm` a table."""
import json
import os

import pytest
from conftest import run_cli
from mlflow import MlflowClient

from trainables.metrics.frozen import find_entry

DEBIAN = "/usr/share/datasets/fashion-mnist"
pytestmark = [pytest.mark.slow,   # starts Ray, trains, serves MLflow or drives a browser
              pytest.mark.skipif(not os.path.isdir(DEBIAN),
                                 reason=f"{DEBIAN} absent: apt-get install dataset-fashion-mnist")]


def test_a_fashion_smoke_training_logs_fd_fashion_and_its_d_classifies(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {"MLFLOW_TRACKING_URI": ""}
    r = run_cli("train", "--preset", "smoke", "--set", "dataset=fashion-mnist", "--set", "nc=1",
                "--set", f"mlflow_uri={uri}", "--set", f"storage_path={tmp_path}/ray", cwd=tmp_path, env=env,
                timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("dcgan-lab").experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert (params["dataset"], params["image_size"], params["nc"]) == ("fashion-mnist", "32", "1")
    assert params["data_root"] == DEBIAN   # the default data_root found the package
    assert params["evaluator_sha"] == find_entry("fashion-mnist", 32, 1)["sha256"]   # the shipped file
    history = MlflowClient(uri).get_metric_history(run.info.run_id, "fd_fashion")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [6, 12]   # smoke: eval_every 6, 12 steps
    assert all(m.value > 0 for m in history)

    out = tmp_path / "svm"
    r = run_cli("features-svm", "--run", run.info.run_id, "--mlflow-uri", uri, "--draws", "2", "--labels-per-class",
                "10", "--val-per-class", "10", "--cnn-epochs", "5", "--out", str(out), cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((out / "features_svm.json").read_text())
    assert result["run"] == run.info.run_id and result["max_steps"] == 12 and len(result["draws"]) == 2
    assert result["n_features"] == (8 + 16 + 32) * 16   # the smoke D: ndf 8, three layers at 32 px
