"""The training step's throughput against a plain PyTorch loop (the PyTorch DCGAN example's, same
nets, same process), the machine's GEMM peak, FLOPs per image, evaluation cost and Ray Train with 1
and 2 workers: the ``steps``, ``eval`` and ``ray`` parts of ``dcgan-lab bench``."""
import statistics
import tempfile
import time

from orchestrator.bench.levers import interleaved_rates
from orchestrator.config import resolve_config
from orchestrator.timing import timed_loop


def gemm_gflops(device="cpu", n=2048, reps=5):
    """The machine's fp32 matrix-multiply rate, measured now (best of ``reps``)."""
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(reps + 1):
        t = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops_per_image(cfg):
    """Multiply-adds of one training step per image, x2 for FLOPs: G forward + backward (3 passes),
    D forward on real, fake and G's fake, each with a backward (3 x 3 passes)."""
    import torch
    from torch import nn

    from trainables.models import build_models

    netG, netD = build_models(cfg)
    macs = {"G": 0, "D": 0}

    def hook(name):
        def count(m, inp, out):
            if isinstance(m, nn.Conv2d):
                macs[name] += out[0].numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            else:  # ConvTranspose2d: every input pixel meets every kernel tap
                macs[name] += inp[0][0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
        return count

    for name, net in (("G", netG), ("D", netD)):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.register_forward_hook(hook(name))
    with torch.no_grad():
        netD(netG(torch.randn(1, cfg.nz)))
    return 2 * (3 * macs["G"] + 9 * macs["D"])


def step_throughput(overrides, steps, device="cpu"):
    """Images/s of the project's step and of a plain reference loop, same nets, same process."""
    import torch

    from trainables.models import build_models
    from trainables.step import GANStep, make_optimizers, noise_generator

    cfg = resolve_config("smoke", {**overrides, "max_steps": steps})
    real = (torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size) * 2 - 1).to(device)

    torch.manual_seed(0)
    netG, netD = (n.to(device) for n in build_models(cfg))
    step = GANStep(netG, netD, *make_optimizers(cfg, netG, netD), cfg.nz, cfg.z_dist)
    torch.manual_seed(0)
    netG2, netD2 = (n.to(device) for n in build_models(cfg))
    plain_step = plain_loop_step(netG2, netD2, cfg, real)
    runs = {"project": timed_loop(lambda i: step(real, noise_generator(0, 0, i)), lambda out: out["loss_d"].item()),
            "plain": timed_loop(plain_step, lambda out: out)}
    rates, _ = interleaved_rates(runs, steps, cfg.batch_size, rounds=4)
    project, plain = rates["project"], rates["plain"]
    gflop_per_image = flops_per_image(cfg) / 1e9
    return {"batch_size": cfg.batch_size, "image_size": cfg.image_size, "project_images_per_s": project,
            "plain_images_per_s": plain, "ratio": project / plain,
            "project_gflops": gflop_per_image * project, "gflop_per_image": gflop_per_image}


def plain_loop_step(netG, netD, cfg, real):
    """The PyTorch DCGAN example's loop, written plainly: the baseline the project must match."""
    import torch
    from torch import nn

    criterion = nn.BCEWithLogitsLoss()
    optD = torch.optim.Adam(netD.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    b = real.shape[0]
    ones, zeros = torch.ones(b, device=real.device), torch.zeros(b, device=real.device)

    def one_step(_i):
        netD.zero_grad()
        errD_real = criterion(netD(real), ones)
        errD_real.backward()
        fake = netG(torch.randn(b, cfg.nz, device=real.device))
        errD_fake = criterion(netD(fake.detach()), zeros)
        errD_fake.backward()
        optD.step()
        netG.zero_grad()
        errG = criterion(netD(fake), ones)
        errG.backward()
        optG.step()
        return (errD_real + errD_fake).item() + errG.item()

    return one_step


def eval_cost():
    """FD on 10,000 samples of a quick-size G (evaluator cached), and the evaluator's training time."""
    from trainables.metrics.evaluate import fd_speed
    from trainables.metrics.evaluators import get_evaluator

    trained = get_evaluator("synthetic-faces", 32).train_seconds
    return {"fd_10k_seconds": fd_speed("synthetic-faces", 32, 10_000, ngf=32)["seconds"],
            "evaluator_train_seconds": trained}


def ray_throughput(max_steps=120):
    """The real training loop under Ray Train at the quick size: 1 worker x 2 CPUs vs 2 x 1."""
    from mlflow import MlflowClient

    from orchestrator.train import run_training

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/bench.db"
        for workers in (1, 2):
            cfg = resolve_config("quick", {"num_workers": workers, "cpus_per_worker": 2 // workers,
                                           "max_steps": max_steps, "log_every": 10, "sample_every": 10_000,
                                           "eval_every": 0,
                                           "checkpoint_every": 10_000, "mlflow_uri": uri,
                                           "storage_path": f"{tmp}/ray", "experiment": "bench"})
            t = time.perf_counter()
            run_id, _ = run_training(cfg, run_name=f"bench-{workers}w")
            wall = time.perf_counter() - t
            rates = [m.value for m in MlflowClient(uri).get_metric_history(run_id, "images_per_s")][1:]
            out[f"{workers}_workers"] = {"images_per_s": statistics.median(rates), "wall_s": wall}
    out["speedup_2_vs_1"] = out["2_workers"]["images_per_s"] / out["1_workers"]["images_per_s"]
    return out


