"""GPU-scale settings, as far as a CPU allows: bf16 and channels_last through the real loop, device
settings refused where they cannot run, fractional-GPU trials on a real Ray, SyncBatchNorm under a
real 2-worker gloo run (conversion only: its forward needs CUDA), resume-exact noise and loss
scales, batches from a resident uint8 array, and the GPU bench's code on the CPU.
"""
import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, run_cli
from mlflow import MlflowClient
from torch import nn

from orchestrator.config import resolve_config
from orchestrator.sweep.plan import plan_trials
from search_spaces.loader import load_space
from trainables.checkpoints import restore_training_state, training_state
from trainables.config import run_params
from trainables.errors import UserError
from trainables.models import build_models
from trainables.step import GANStep, StepMode, generate, make_optimizers, noise_generator


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets on a shared 2-core machine: two torch threads contend and run far slower than one."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _step(cfg, mode):
    torch.manual_seed(cfg.seed)
    netG, netD = build_models(cfg)
    if mode.channels_last:
        netG, netD = (n.to(memory_format=torch.channels_last) for n in (netG, netD))
    return GANStep(netG, netD, *make_optimizers(cfg, netG, netD), cfg.nz, cfg.z_dist, mode)


def _real(cfg, seed=1):
    return torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# -- bf16 and channels_last ---------------------------------------------------------------------

@pytest.mark.slow
def test_bf16_and_channels_last_through_the_real_loop(ray_local, mlflow_uri, tmp_path):
    from orchestrator.train import run_training

    cfg = resolve_config("smoke", {"mlflow_uri": mlflow_uri, "storage_path": str(tmp_path / "ray"),
                                   "precision": "bf16", "channels_last": True, "eval_every": 0})
    run_id, status = run_training(cfg)
    assert status == "finished"
    client = MlflowClient(mlflow_uri)
    history = {k: [m.value for m in client.get_metric_history(run_id, k)] for k in ("loss_d", "loss_g")}
    assert all(len(v) == 6 and all(x == x and abs(x) < 1e6 for x in v) for v in history.values()), history
    params = client.get_run(run_id).data.params
    assert (params["precision"], params["channels_last"], params["bn_batch_size"]) == ("bf16", "True", "16")
    assert (params["compile"], params["sync_bn"], params["gpus_per_trial"]) == ("none", "False", "1.0")


def test_bf16_autocasts_the_convs_and_channels_last_reaches_them():
    """What the loop run cannot see: D's first conv computes in bf16 on an NHWC batch."""
    cfg = resolve_config("smoke")
    seen = []
    for mode in (StepMode(), StepMode("cpu", "bf16", channels_last=True)):
        step = _step(cfg, mode)
        conv = step.netD.main[0]
        hook = conv.register_forward_hook(lambda m, inp, out: seen.append(
            (out.dtype, inp[0].is_contiguous(memory_format=torch.channels_last))))
        losses = step(_real(cfg), noise_generator(0, 0, 0))
        hook.remove()
        assert all(v.dtype == torch.float32 for v in losses.values())  # losses come out of autocast in fp32
    assert seen[0] == (torch.float32, False) and seen[3] == (torch.bfloat16, True)  # [0..2] fp32 step, [3..5] bf16


# -- settings refused where they cannot run ---------------------------------------------------

@pytest.mark.parametrize("overrides, culprit", [
    ({"precision": "fp16"}, "precision='fp16' is not allowed: only with use_gpu=true"),
    ({"precision": "fp8"}, "precision='fp8' is not allowed: one of fp32, bf16, fp16"),
    ({"compile": "reduce-overhead"}, "compile='reduce-overhead' is not allowed: only with use_gpu=true"),
    ({"compile": "jit"}, "compile='jit'"),
    ({"sync_bn": True, "num_workers": 2}, "sync_bn=True is not allowed: only with use_gpu=true"),
    ({"gpus_per_trial": 0.25}, "gpus_per_trial=0.25 is not allowed: only with use_gpu=true"),
    ({"gpus_per_trial": 1.5, "use_gpu": True}, "gpus_per_trial=1.5 is not allowed: > 0 and <= 1"),
    ({"gpus_per_trial": 0, "use_gpu": True}, "gpus_per_trial=0.0 is not allowed: > 0 and <= 1"),
    ({"gpus_per_trial": 0.5, "use_gpu": True, "num_workers": 2}, "a GPU share is for single-worker trials"),
])
def test_device_settings_refused_at_the_edge(overrides, culprit):
    with pytest.raises(UserError) as err:
        resolve_config("smoke", overrides)
    assert culprit in str(err.value) and "\n" not in str(err.value)


def test_device_settings_accepted_where_they_run():
    gpu = resolve_config("smoke", {"use_gpu": True, "precision": "fp16", "compile": "reduce-overhead",
                                   "gpus_per_trial": 0.25, "cudnn_benchmark": True})
    assert (gpu.precision, gpu.compile, gpu.gpus_per_trial) == ("fp16", "reduce-overhead", 0.25)
    cpu = resolve_config("smoke", {"precision": "bf16", "channels_last": True, "compile": "default", "sync_bn": True})
    assert cpu.bn_batch_size == cpu.batch_size  # one worker: sync_bn changes nothing
    ddp = resolve_config("paper-faces", {"download": True})
    assert (ddp.num_workers, ddp.sync_bn, ddp.bn_batch_size) == (4, True, 128)
    assert run_params(dataclasses.replace(ddp, sync_bn=False))["bn_batch_size"] == 32


@pytest.mark.parametrize("argv, culprit", [
    (["train", "--preset", "smoke", "--set", "precision=fp16"], "precision='fp16'"),
    (["bench", "--device", "cuda"], "device='cuda'"),
])
def test_cli_refuses_with_one_line(argv, culprit, tmp_path):
    r = run_cli(*argv, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and culprit in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == []


# -- fractional GPUs in the sweep's resource plan --------------------------------------------

def test_trial_plan_packs_gpus_and_refuses_what_no_node_holds():
    space = load_space("smoke")
    cfg = resolve_config("smoke", {"use_gpu": True, "gpus_per_trial": 0.25})
    node = lambda cpu, gpu: {"Alive": True, "Resources": {"CPU": cpu, "GPU": gpu, "memory": 1e10}}  # noqa: E731
    plan = plan_trials(cfg, space, True, [node(8, 0), node(4, 1), node(4, 1), {"Alive": False, "Resources": {}}])
    assert plan.resources == {"cpu": 1, "gpu": 0.25} and plan.concurrency == 8
    assert plan_trials(dataclasses.replace(cfg, gpus_per_trial=0.1), space, True, [node(16, 1)]).concurrency == 10
    with pytest.raises(UserError, match=r"gpus_per_trial=0.25 is not allowed: .* no node .* has 4 CPU\(s\) and 0.25 GPU"):
        plan_trials(dataclasses.replace(cfg, cpus_per_worker=4), space, True, [node(8, 0), node(2, 1)])
    with pytest.raises(UserError, match="gpus_per_trial=0.25 is not allowed: 1 when the space searches num_workers"):
        plan_trials(cfg, space, False, [node(4, 1)])
    searched = dataclasses.replace(space, params={**space.params, "gpus_per_trial": space.params["lr"]})
    with pytest.raises(UserError, match="gpus_per_trial"):
        plan_trials(cfg, searched, True, [node(4, 1)])
    # Train-driver trials (DDP workers): a token for Tune, trials at once by CPUs and by GPUs.
    ddp = resolve_config("smoke", {"use_gpu": True, "num_workers": 2, "cpus_per_worker": 1})
    assert plan_trials(ddp, space, False, [node(8, 1), node(8, 2)]) == type(plan)({"memory": 1}, 1)


PROBE = r"""
import json, os, sys, time
import ray
from ray import tune
from orchestrator.config import resolve_config
from orchestrator.sweep.plan import plan_trials
from search_spaces.loader import load_space

ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)  # a logical GPU
cfg = resolve_config("smoke", {"use_gpu": True, "gpus_per_trial": 0.25})
plan = plan_trials(cfg, load_space("smoke"), True, ray.nodes())

def probe(config):
    t0 = time.time()
    time.sleep(2)
    tune.report({"gpu": ray.get_runtime_context().get_assigned_resources().get("GPU", 0),
                 "visible": int(os.environ.get("CUDA_VISIBLE_DEVICES") or -1), "t0": t0, "t1": time.time()})

tuner = tune.Tuner(tune.with_resources(probe, plan.resources), param_space={"i": tune.grid_search(list(range(4)))},
                   tune_config=tune.TuneConfig(max_concurrent_trials=plan.concurrency),
                   run_config=tune.RunConfig(storage_path=sys.argv[1], verbose=0))
rows = [r.metrics for r in tuner.fit()]
print(json.dumps({"resources": plan.resources, "concurrency": plan.concurrency, "trials": rows}, default=str))
"""


@pytest.mark.slow
def test_fractional_gpu_trials_on_a_real_ray(tmp_path):
    """A Ray with one (logical) GPU and 2 CPUs: the plan asks Tune for a quarter GPU and 1 CPU per
    trial, 2 at once (the CPUs bind first); every trial gets its quarter of GPU 0."""
    r = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["resources"] == {"cpu": 1, "gpu": 0.25} and out["concurrency"] == 2
    trials = out["trials"]
    assert len(trials) == 4 and all(t["gpu"] == 0.25 and t["visible"] == 0 for t in trials), trials
    overlap = max(sum(s["t0"] <= t["t0"] < s["t1"] for s in trials) for t in trials)
    assert overlap <= 2


def test_out_of_memory_names_the_setting():
    """What CUDA raises when a trial outgrows its share (raised by hand here: a real one needs a
    GPU) leaves the trial as one line naming the share, or the batch without one."""
    from trainables.accel import DeviceMemoryError, memory_named

    cfg = resolve_config("smoke", {"use_gpu": True, "gpus_per_trial": 0.25}).to_dict()
    cuda_says = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 22.0 GiB\nmore"
    for settings, culprit in (({}, "gpus_per_trial=0.25 is too small"), ({"gpus_per_trial": 1.0}, "batch_size=16")):
        with pytest.raises(DeviceMemoryError) as err, memory_named({**cfg, **settings}):
            raise torch.OutOfMemoryError(cuda_says)
        assert str(err.value).startswith(culprit) and "Tried to allocate 2.00 GiB" in str(err.value)
        assert "\n" not in str(err.value) and err.value.__cause__ is None


# -- SyncBatchNorm under DDP --------------------------------------------------------------------

def _sync_bn_worker(config):
    """One gloo rank: the loop's conversion of a sync_bn config, then a sample drawn on rank 0 alone."""
    from trainables.accel import convert_net
    from trainables.config import Config
    from trainables.session import TrainSession

    cfg = Config(**config["cfg"])  # validate() keeps sync_bn to CUDA; the conversion runs anywhere
    session = TrainSession()
    torch.manual_seed(cfg.seed)
    plain = build_models(cfg)[0]
    torch.manual_seed(cfg.seed)
    netG, netD = (convert_net(cfg, session.world, net) for net in build_models(cfg))
    counts = [sum(isinstance(m, nn.SyncBatchNorm) for m in net.modules()) for net in (netG, netD)]
    same = 1.0
    if session.rank == 0:  # a SyncBatchNorm forward here would raise (CPU) or wait for rank 1 forever
        z = torch.randn(4, cfg.nz, generator=torch.Generator().manual_seed(0))
        same = float(torch.equal(generate(netG, z), generate(plain, z)))
    try:  # why the config refuses sync_bn on CPU: DDP will not wrap it there
        session.prepare_model(netD)
        refused = ""
    except ValueError as err:
        refused = str(err)
    found = {"sync_G": counts[0], "sync_D": counts[1], "world": session.world, "local_sample_same": same,
             "ddp_refused": refused, "bn_batch_size": cfg.bn_batch_size}
    with open(f"{config['out']}/rank{session.rank}.json", "w") as f:  # Train V2 keeps metrics of checkpoints only
        json.dump(found, f)


@pytest.mark.slow
def test_sync_bn_converts_under_two_gloo_workers(ray_local, tmp_path):
    from ray import cloudpickle  # Ray's own copy pickles the train function
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    cfg = dataclasses.replace(resolve_config("smoke", {"num_workers": 2}), sync_bn=True)
    trainer = TorchTrainer(_sync_bn_worker, train_loop_config={"cfg": cfg.to_dict(), "out": str(tmp_path)},
                           scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                           run_config=RunConfig(storage_path=str(tmp_path / "ray"), name="sync-bn"))
    trainer.fit()
    layers = [sum(isinstance(x, nn.BatchNorm2d) for x in net.modules()) for net in build_models(cfg)]
    for rank in (0, 1):
        m = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert (m["sync_G"], m["sync_D"], m["world"], m["local_sample_same"]) == (*layers, 2, 1.0)
        assert min(layers) > 0 and m["bn_batch_size"] == 16 and "SyncBatchNorm" in m["ddp_refused"]


# -- resume exactness: noise and loss scales ----------------------------------------------------

def test_noise_stream_is_step_derived_and_unchanged_on_cpu():
    for seed, rank, step in ((0, 0, 0), (3, 1, 12345)):
        today = torch.Generator().manual_seed((seed * 1_000_003 + rank * 10_007 + step) % (2**63))
        assert torch.equal(torch.randn(8, 4, generator=noise_generator(seed, rank, step, "cpu")),
                           torch.randn(8, 4, generator=today))
    assert noise_generator(0, 0, 5, torch.device("cpu")).device.type == "cpu"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_resumed_step_continues_bit_for_bit(precision):
    """Steps 0-9 in one go against 0-4, a checkpoint, and 5-9 in fresh nets and a fresh step (the
    fp16 path, loss scalers and all, runs on the CPU here; the config keeps fp16 for CUDA)."""
    cfg = resolve_config("smoke")
    mode = StepMode("cpu", precision)

    def run(step_fn, steps):
        return [step_fn(_real(cfg, i), noise_generator(cfg.seed, 0, i))["loss_g"].item() for i in steps]

    uninterrupted = _step(cfg, mode)
    whole = run(uninterrupted, range(10))
    first = _step(cfg, mode)
    head = run(first, range(5))
    state = training_state(5, first.netG, first.netD, first.optG, first.optD, torch.zeros(1), {})
    state["scalers"] = first.state_dict()
    second = _step(cfg, mode)
    restore_training_state(state, second.netG, second.netD, second.optG, second.optD)
    second.load_state_dict(state["scalers"])
    assert head + run(second, range(5, 10)) == whole
    assert second.state_dict() == uninterrupted.state_dict()
    if precision == "fp16":
        assert uninterrupted.state_dict()["D"]["scale"] > 0


# -- batches from a resident uint8 array --------------------------------------------------------

def test_device_batches_match_the_cpu_conversion_and_resume():
    from trainables.data.device_batches import device_batches, pixel_table
    from trainables.data.sampler import ResumableBatchSampler

    torchvision_scale = lambda p: p.float().div(255).sub(0.5).div(0.5)        # noqa: E731
    rendered_scale = lambda p: p.float().mul(1 / 127.5).sub(1.0)             # noqa: E731
    every = torch.arange(256, dtype=torch.uint8)
    for scale in (torchvision_scale, rendered_scale):
        assert torch.equal(pixel_table(scale, "cpu"), scale(every))
    pixels = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sampler = ResumableBatchSampler(50, 4, rank=1, world_size=2, seed=3)
    batches = device_batches(pixels, sampler, "cpu", torchvision_scale)
    rows = iter(sampler)
    seen = [next(batches) for _ in range(14)]   # two epochs of 6 steps, and into the third
    for batch in seen:
        assert batch.dtype == torch.float32 and torch.equal(batch, torchvision_scale(pixels[next(rows)]))
    resumed = device_batches(pixels, ResumableBatchSampler(50, 4, rank=1, world_size=2, seed=3, start_step=7),
                             "cpu", torchvision_scale)
    assert all(torch.equal(next(resumed), b) for b in seen[7:])


# -- the GPU bench's code, on the CPU -----------------------------------------------------------

def test_gpu_bench_parts_run_on_cpu():
    """Not a timing: the bench's variants, packed trial processes and resident data run end to end."""
    from orchestrator.bench.gpu import VARIANTS, packed_trials, resident_data, step_variants

    size = dict(image_size=32, ngf=8, ndf=8, nz=16, batch_size=16)
    rows = step_variants(size, 3, "cpu", {"bf16": VARIANTS["bf16"]})
    assert set(rows) == {"plain", "bf16"}
    assert all(v["images_per_s"] > 0 for v in rows.values()) and rows["bf16"]["loss_d_finite"]
    packed = packed_trials(size, "cpu", packs=(2,), seconds=0.5)
    assert len(packed[2]["per_trial_images_per_s"]) == 2 and packed[2]["vs_one"] == 1.0
    data = resident_data(size, "cpu", rows["bf16"]["images_per_s"], n_images=256, batches=5)
    assert 0 < data["share_of_step"] < 1 and data["dtype"] == "torch.float32"
