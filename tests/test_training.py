"""Training on a real local Ray cluster, tracked in a real MLflow store: determinism, DDP, resume, reload."""
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from orchestrator.config import resolve_config
from orchestrator.train import run_training
from trainables.accel import convert_net
from trainables.models import build_models
from trainables.step import GANStep, StepMode, make_optimizers, noise_generator

pytestmark = pytest.mark.slow   # starts Ray, trains, serves MLflow or drives a browser


def _history(uri, run_id, key="loss_d"):
    return [(m.step, m.value) for m in sorted(MlflowClient(uri).get_metric_history(run_id, key), key=lambda m: m.step)]


def _smoke(uri, tmp_path, **overrides):
    return resolve_config("smoke", {"mlflow_uri": uri, "storage_path": str(tmp_path / "ray"), **overrides})


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_step_is_deterministic_in_process(channels_last):
    """Same config and seed: bitwise the same losses (CPU, one process), in the default layout and in
    the channels_last one the quick preset trains in (the nets converted as trainables.loop does)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def losses():
        cfg = resolve_config("smoke", {"channels_last": channels_last})
        torch.manual_seed(cfg.seed)
        netG, netD = (convert_net(cfg, 1, n) for n in build_models(cfg))
        assert all(w.is_contiguous(memory_format=fmt) for n in (netG, netD) for w in n.parameters() if w.dim() == 4)
        step = GANStep(netG, netD, *make_optimizers(cfg, netG, netD), cfg.nz, cfg.z_dist, StepMode.of(cfg, "cpu"))
        real = torch.rand(cfg.batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
        return [step(real, noise_generator(cfg.seed, 0, i))["loss_g"].item() for i in range(5)]

    assert losses() == losses()


def test_same_seed_same_curve_through_ray(ray_local, mlflow_uri, tmp_path):
    """Same seed, same curve, whether batches come from the data cache (run a) or the loader (b)."""
    run_a, status_a = run_training(_smoke(mlflow_uri, tmp_path))
    run_b, status_b = run_training(_smoke(mlflow_uri, tmp_path, data_cache=False))
    run_c, _ = run_training(_smoke(mlflow_uri, tmp_path, seed=1))
    assert status_a == status_b == "finished"
    a, b, c = (_history(mlflow_uri, r) for r in (run_a, run_b, run_c))
    assert a == b  # bitwise equal floats, step by step
    assert a != c
    run = MlflowClient(mlflow_uri).get_run(run_a)
    assert run.data.params["seed"] == "0" and run.data.params["lr"] == "0.0002"
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "finished"
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "d_fake_g"):
        assert [s for s, _ in _history(mlflow_uri, run_a, key)] == list(range(2, 13, 2))
        assert _history(mlflow_uri, run_a, key) == _history(mlflow_uri, run_b, key)
    assert MlflowClient(mlflow_uri).get_run(run_b).data.metrics["fd_final"] == run.data.metrics["fd_final"]
    images = [f.path for f in MlflowClient(mlflow_uri).list_artifacts(run_a, "images")]
    assert any("step+12" in p and p.endswith(".png") for p in images), images
    # trainables/ray_fixes.py reached the Train controllers: none waited 12 s on its placement-group
    # cleaner (Ray logs this line, with a traceback, at the end of every run without the fix).
    logs = Path(ray_local._private.worker._global_node.get_session_dir_path()) / "logs"
    stalled = [f.name for f in logs.rglob("*") if f.is_file() and f.suffix in (".log", ".err", ".out")
               and "Failed to stop PlacementGroupCleaner" in f.read_text(errors="replace")]
    assert not stalled, stalled
    # A local Ray starts no preemption watcher (orchestrator/ray_run.py): no worker log names one, while
    # the Train controllers' do (Ray writes ":actor_name:CLASS" into each actor's log).
    actors = {line.strip() for f in logs.glob("worker-*") for line in f.read_text(errors="replace").splitlines()
              if line.startswith(":actor_name:")}
    assert ":actor_name:TrainController" in actors and ":actor_name:PreemptionWatcher" not in actors, actors


@pytest.mark.parametrize("placement", ["paper", "all"])
def test_two_worker_ddp_with_batchnorm(ray_local, mlflow_uri, tmp_path, placement):
    """Two gloo workers, BN in D: D runs on real and fake batches without an in-place error."""
    run_id, status = run_training(_smoke(mlflow_uri, tmp_path, num_workers=2, bn_placement=placement))
    assert status == "finished"
    steps = [s for s, v in _history(mlflow_uri, run_id)]
    assert steps == list(range(2, 13, 2))
    assert MlflowClient(mlflow_uri).get_run(run_id).data.params["bn_batch_size"] == "8"  # 16 over 2 workers, no sync_bn


def _is_train_worker(proc):
    import psutil

    try:
        return "RayTrainWorker" in " ".join(proc.cmdline())
    except psutil.Error:   # gone, or not ours to read
        return False


def test_resume_after_worker_killed(ray_local, mlflow_uri, tmp_path, figure):
    """SIGKILL the worker mid-run: Ray restarts it from the last checkpoint; MLflow holds each
    logged step exactly once, and the curve and final FD equal an uninterrupted run's."""
    import psutil

    cfg = _smoke(mlflow_uri, tmp_path, max_steps=400, log_every=5, checkpoint_every=100, sample_every=200,
                 max_failures=2, dataset_size=4096)
    result = {}
    thread = threading.Thread(target=lambda: result.update(zip(("run", "status"), run_training(cfg))))
    thread.start()
    killed_at = None
    client = MlflowClient(mlflow_uri)
    deadline = time.time() + 240
    while thread.is_alive() and time.time() < deadline and killed_at is None:
        runs = client.search_runs([client.get_experiment_by_name(cfg.experiment).experiment_id]) \
            if client.get_experiment_by_name(cfg.experiment) else []
        steps = [m.step for r in runs for m in client.get_metric_history(r.info.run_id, "loss_d")]
        if steps and 130 <= max(steps) < 350:
            workers = [p for p in psutil.Process().children(recursive=True) if _is_train_worker(p)]   # our Ray only
            if workers:
                os.kill(workers[0].pid, signal.SIGKILL)
                killed_at = max(steps)
        time.sleep(0.2)
    thread.join(timeout=300)
    assert killed_at is not None, "the run ended before the worker could be killed"
    assert result["status"] == "finished"
    history = _history(mlflow_uri, result["run"])
    steps = [s for s, _ in history]
    expected = list(range(5, 401, 5))
    clean_run, _ = run_training(cfg)
    clean = _history(mlflow_uri, clean_run)
    fd, clean_fd = (MlflowClient(mlflow_uri).get_run(r).data.metrics["fd_final"] for r in (result["run"], clean_run))
    figure(f"worker killed at step {killed_at}: steps lost {len(set(expected) - set(steps))}, duplicates "
           f"{len(steps) - len(set(steps))}, largest gap {max(b - a for a, b in zip(steps, steps[1:]))} steps "
           f"(checkpoint_every={cfg.checkpoint_every}); fd_final {fd:.4f} vs {clean_fd:.4f} uninterrupted")
    assert steps == expected  # every logged step once: no duplicate, no gap (so none beyond a checkpoint interval)
    assert [s for s, _ in clean] == steps
    # Same curve and final FD as an uninterrupted run; float noise only (kernels may differ between processes).
    assert [v for _, v in clean] == pytest.approx([v for _, v in history], rel=1e-4)
    assert fd == pytest.approx(clean_fd, rel=1e-3)


def test_sample_reloads_generator_by_run_id(ray_local, mlflow_uri, tmp_path):
    from PIL import Image

    from orchestrator.cli import main

    run_id, _ = run_training(_smoke(mlflow_uri, tmp_path))
    out = tmp_path / "grid.png"
    assert main(["sample", "--run", run_id, "--n-samples", "16", "--out", str(out), "--mlflow-uri", mlflow_uri]) == 0
    img = Image.open(out)
    assert img.size == (8 * 34 + 2, 2 * 34 + 2)  # 16 samples of 32 px, 8 a row, 2 px padding
    old = tmp_path / "old-flags.png"   # the old spellings --n and --seed still work
    assert main(["sample", "--run", run_id, "--n", "8", "--seed", "3", "--out", str(old), "--mlflow-uri", mlflow_uri]) == 0
    assert Image.open(old).size == (8 * 34 + 2, 34 + 2)
    assert main(["sample", "--run", "f" * 32, "--out", str(tmp_path / "x.png"), "--mlflow-uri", mlflow_uri]) == 2
    assert not (tmp_path / "x.png").exists()


def test_train_on_real_format_files(ray_local, mlflow_uri, tmp_path):
    """torchvision's MNIST loader on idx files written by the test, grayscale model. No FD: MNIST has
    no shipped evaluator here (its data is not installed; a run that asks for FD is refused, saying
    how to make one), so evaluation is off."""
    from fake_datasets import write_mnist

    write_mnist(tmp_path / "data", n=64)
    run_id, status = run_training(_smoke(mlflow_uri, tmp_path, dataset="mnist", nc=1, eval_every=0,
                                         data_root=str(tmp_path / "data"), max_steps=4, log_every=2))
    assert status == "finished"
    assert [s for s, _ in _history(mlflow_uri, run_id)] == [2, 4]


def test_resources_that_never_fit_fail_fast(ray_local, mlflow_uri, tmp_path):
    from trainables.errors import UserError

    with pytest.raises(UserError, match="num_workers=4"):
        run_training(_smoke(mlflow_uri, tmp_path, num_workers=4, cpus_per_worker=1, batch_size=16))
    with pytest.raises(UserError, match="use_gpu"):
        run_training(_smoke(mlflow_uri, tmp_path, use_gpu=True))
    assert MlflowClient(mlflow_uri).search_runs(["0"]) == []


def test_run_logs_quality_and_stability(ray_local, mlflow_uri, tmp_path):
    """The smoke preset evaluates at steps 6 and 12 in fd_faces (never "FID"), then logs the
    run's stability metrics; ``dcgan-lab evaluate`` measures the reloaded G again."""
    from orchestrator.cli import main

    run_id, _ = run_training(_smoke(mlflow_uri, tmp_path))
    metrics = MlflowClient(mlflow_uri).get_run(run_id).data.metrics
    assert [s for s, _ in _history(mlflow_uri, run_id, "fd_faces")] == [6, 12]
    assert not any("fid" in k for k in metrics) and "fd" not in metrics
    for key in ("coverage_kl", "coverage_modes", "variance_ratio", "fd_final", "fd_best",
                "sample_oscillation", "sample_oscillation_global", "sample_oscillation_pixels", "fd_volatility",
                "loss_oscillation", "diverged", "mode_collapse", "attribute_skew"):
        assert key in metrics, key
    assert "collapsed" not in metrics and "kid_faces" not in metrics   # KID: dcgan-lab evaluate, below
    # 12 steps are too few for the history metrics: NaN, each with its note.
    assert metrics["fd_volatility"] != metrics["fd_volatility"]
    assert "fd_volatility: 1 FD evaluations in the last third" in MlflowClient(mlflow_uri).get_run(run_id).data.tags[
        "metric_notes"]
    assert metrics["fd_final"] == metrics["fd_faces"] and metrics["fd_best"] <= metrics["fd_final"]

    assert main(["evaluate", "--run", run_id, "--eval-n", "300", "--mlflow-uri", mlflow_uri]) == 0
    again = MlflowClient(mlflow_uri).get_run(run_id).data.metrics
    assert again["fd_faces_n300"] > 0 and {"kid_faces_n300", "precision_n300", "recall_n300"} <= set(again)
    assert main(["evaluate", "--run", "e" * 32, "--mlflow-uri", mlflow_uri]) == 2
    assert main(["evaluate", "--run", run_id, "--n", "10", "--mlflow-uri", mlflow_uri]) == 2
