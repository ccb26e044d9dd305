"""``dcgan-lab sweep --sequential`` end to end on real components (Ray Tune, a local MLflow server):
a paired smoke-sized study whose strong claim stops at the first look while the other runs on, its
driver killed between looks and resumed."""
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli
from mlflow import MlflowClient

pytestmark = pytest.mark.slow   # starts Ray, trains, serves MLflow

SPACE = """description: "the paper's cell vs lr 1e-2 and beta1 0.9, one at a time"
design: one_at_a_time
params:
  lr: {dist: grid, values: [2.0e-4, 1.0e-2]}
  beta1: {dist: grid, values: [0.5, 0.9]}
"""
# A learning rate fifty times the paper's moves FD by a factor of about 3 in 150 steps, seed after
# seed: a known strong effect. beta1 0.9 at this size moves it by less than 1 %.
CLAIMS = """description: "a strong effect (lr x50) and a weak one (beta1 0.9)"
claims:
  lr:
    factor: lr
    alt: 1.0e-2
    primary: fd_final
    predict: {fd_final: higher}
    quote: "a learning rate fifty times the paper's"
    section: "test"
  beta1:
    factor: beta1
    alt: 0.9
    primary: fd_final
    predict: {fd_final: higher}
    quote: "beta1 0.9"
    section: "test"
"""


def _args(tmp_path):
    return ["sweep", "--preset", "smoke", "--space", str(tmp_path / "space.yaml"), "--sequential",
            "--sequential-looks", "3,6", "--seeds", "6", "--sequential-spending", "pocock",
            "--sequential-claims", str(tmp_path / "claims.yaml"), "--set", "max_steps=150", "--set", "eval_every=50",
            "--set", "sample_every=50", "--set", "checkpoint_every=50"]


def _children(client):
    exp = client.get_experiment_by_name("dcgan-lab")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return ([r for r in runs if r.data.tags.get("kind") == "sweep"],
            [r for r in runs if r.data.tags.get("kind") == "trial"])


def test_sequential_sweep_stops_a_decided_claim_and_resumes(tmp_path, figure):
    (tmp_path / "space.yaml").write_text(SPACE)
    (tmp_path / "claims.yaml").write_text(CLAIMS)
    out = tmp_path / "driver.out"
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    with open(out, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *_args(tmp_path)], cwd=tmp_path, env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    client = MlflowClient("sqlite:///" + str(tmp_path / "mlflow.db"))
    killed_with = None
    try:   # kill the driver (and the Ray it started) once the second block has begun
        deadline = time.time() + 900
        while time.time() < deadline and proc.poll() is None and killed_with is None:
            time.sleep(2)
            if "[sequential] look 1/2" in out.read_text():
                block2 = [c for c in _children(client)[1] if int(c.data.params["seed"]) >= 3]
                if block2:
                    killed_with = len(_children(client)[1])
    finally:
        with contextlib.suppress(ProcessLookupError):   # gone already when it failed on its own
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = out.read_text()
    assert killed_with, f"the driver ended before its second block began:\n{first[-3000:]}"
    look1 = [line for line in first.splitlines() if line.startswith("[sequential] look 1/2")]
    assert len(look1) == 1 and "lr x" in look1[0] and "beta1 x" in look1[0], look1
    block1 = {c.info.run_id: client.get_metric_history(c.info.run_id, "loss_g") for c in _children(client)[1]
              if int(c.data.params["seed"]) < 3}

    r = run_cli(*_args(tmp_path), "--resume", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    parents, children = _children(client)
    cells = sorted((c.data.params["lr"], c.data.params["beta1"], int(c.data.params["seed"])) for c in children)
    figure(f"sequential smoke study: {look1[0]}; driver killed with {killed_with} child runs; after --resume "
           f"{len(children)} child runs for {len(set(cells))} trials (fixed design: 18)")
    assert len(parents) == 1 and len(children) == len(set(cells)) == 15   # one MLflow run per trial
    assert all(c.data.tags["status"] == "finished" for c in children)
    # lr was decided at the first look (either side: a strong effect), so its arm ran seeds 0-2 only;
    # the paper's arm and beta1's ran all six.
    lr_part, beta1_part = look1[0].split(": ", 1)[1].split("; ")
    assert lr_part.startswith("lr x") and not lr_part.endswith(": open"), lr_part
    assert beta1_part.startswith("beta1 x") and beta1_part.endswith(": open"), beta1_part
    assert sorted(s for lr, _, s in cells if lr == "0.01") == [0, 1, 2]
    assert sorted(s for lr, b, s in cells if lr != "0.01" and b == "0.9") == list(range(6))
    assert "[sequential] look 2/2" in r.stdout
    for run_id, history in block1.items():   # the first block's trials were not run again
        assert [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, "loss_g")] == \
               [(m.step, m.value, m.timestamp) for m in history]
    (parent,) = parents
    looks = client.download_artifacts(parent.info.run_id, "sequential", str(tmp_path / "looks"))
    csv_text = open(os.path.join(looks, "looks.csv")).read()
    assert csv_text.splitlines()[0].startswith("look,seeds_per_arm,claim,effect,lo,hi,p,alpha_held,boundary_p")
    assert "Sequential looks" in client.get_run(parent.info.run_id).data.tags["mlflow.note.content"]
    assert client.get_run(parent.info.run_id).data.tags["sequential_trials"] == "15"
    report = next((tmp_path / "sweeps").glob("*/report/sequential.md")).read_text()
    assert "| lr | look 1 (3 seeds) |" in report and "Trials: **15** sequential against 18" in report
    assert "report/sequential.md" in {f.path for f in client.list_artifacts(parent.info.run_id, "report")}
