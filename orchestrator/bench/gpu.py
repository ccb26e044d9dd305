"""The GPU part of ``dcgan-lab bench --device cuda``, in one run:

1. the project's step in each precision and layout (with cuDNN's autotuner and CUDA graphs
   through ``torch.compile``) against the plain PyTorch loop and against the step as it was
   (noise drawn on the CPU and copied to the device each step);
2. one trial on the GPU against 2, 4 and 8 packed trials (processes sharing it, each capped at
   its share of memory as a packed Tune trial is): their total images/s;
3. FD on 10,000 samples;
4. batches from a uint8 array resident on the GPU (the data cache's shape) against the step.

Every function takes its device, so a test runs them on the CPU at the smoke size.
"""
import time

from orchestrator.config import resolve_config
from trainables.errors import first_line

# name -> the settings that differ from the trained default (fp32, contiguous, eager, noise on the device)
VARIANTS = {
    "fp32, host noise (before)": {"host_noise": True},
    "fp32": {},
    "fp32 +benchmark": {"cudnn_benchmark": True},
    "fp32 +benchmark +channels_last": {"cudnn_benchmark": True, "channels_last": True},
    "fp32 +reduce-overhead": {"compile": "reduce-overhead"},
    "bf16": {"precision": "bf16"},
    "bf16 +benchmark +channels_last": {"precision": "bf16", "cudnn_benchmark": True, "channels_last": True},
    "bf16 +benchmark +channels_last +reduce-overhead": {"precision": "bf16", "cudnn_benchmark": True,
                                                        "channels_last": True, "compile": "reduce-overhead"},
    "fp16 +benchmark +channels_last": {"precision": "fp16", "cudnn_benchmark": True, "channels_last": True},
}
PACKS = (1, 2, 4, 8)


def gpu_gemm_tflops(dtype_name, n=8192, reps=10):
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def bench_config(size, device, settings=None):
    settings = {k: v for k, v in (settings or {}).items() if k != "host_noise"}
    return resolve_config("smoke", {**size, "use_gpu": device == "cuda", **settings})


def trial_step(cfg, device, gpu_share=1.0):
    """The loop's step as a trial builds it (TrialSession, prepare_nets, StepMode) and a fake batch."""
    import torch

    from trainables.accel import configure_backends, prepare_nets
    from trainables.models import build_models
    from trainables.session import TrialSession
    from trainables.step import GANStep, StepMode, make_optimizers

    configure_backends(cfg)
    torch.manual_seed(0)
    netG, netD = prepare_nets(cfg, TrialSession(device == "cuda", gpu_share), *build_models(cfg))
    step = GANStep(netG, netD, *make_optimizers(cfg, netG, netD), cfg.nz, cfg.z_dist, StepMode.of(cfg, device))
    real = torch.rand(cfg.batch_size, cfg.nc, cfg.image_size, cfg.image_size, device=device) * 2 - 1
    return step, real


def timed(fn, steps, warmup, device):
    """(seconds of ``steps`` calls of ``fn(i)`` after ``warmup`` calls, device synced; last loss finite)."""
    import torch

    for i in range(warmup):
        fn(i)["loss_d"].item()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for i in range(warmup, warmup + steps):
        out = fn(i)
    finite = out["loss_d"].item() == out["loss_d"].item()
    sync()
    return time.perf_counter() - t, finite


def step_variants(size, steps, device, variants=VARIANTS):
    """Images/s of the plain loop and of each variant of the project's step, same nets and seed."""
    import torch

    from orchestrator.bench.steps import plain_loop_step
    from trainables.models import build_models
    from trainables.step import noise_generator

    cfg = bench_config(size, device)
    torch.manual_seed(0)
    netG, netD = (n.to(device) for n in build_models(cfg))
    plain = plain_loop_step(netG, netD, cfg, torch.rand(cfg.batch_size, cfg.nc, cfg.image_size, cfg.image_size,
                                                        device=device) * 2 - 1)
    seconds, _ = timed(lambda i: {"loss_d": torch.tensor(plain(i))}, steps, 5, device)
    out = {"plain": {"images_per_s": steps * cfg.batch_size / seconds}}
    for name, settings in variants.items():
        cfg = bench_config(size, device, settings)
        step, real = trial_step(cfg, device)
        noise_device = "cpu" if settings.get("host_noise") else device
        warmup = 10 if cfg.compile != "none" else 5   # compilation and CUDA-graph recording
        try:
            seconds, finite = timed(lambda i, step=step, real=real, dev=noise_device: step(real, noise_generator(0, 0, i, dev)),
                                    steps, warmup, device)
        except Exception as err:  # noqa: BLE001 - a variant that cannot run is a result, not the end of the bench
            out[name] = {"error": first_line(err)}
            continue
        out[name] = {"images_per_s": steps * cfg.batch_size / seconds, "loss_d_finite": finite}
    torch.backends.cudnn.benchmark = False
    return out


def _packed_worker(size, device, share, seconds, barrier, results):
    """One packed trial: warm up, wait for the others, then step for ``seconds``."""
    import torch

    from trainables.step import noise_generator

    torch.set_num_threads(1)
    cfg = bench_config(size, device)
    step, real = trial_step(cfg, device, gpu_share=share)
    timed(lambda i: step(real, noise_generator(0, 0, i, device)), 1, 5, device)
    barrier.wait()
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        out = step(real, noise_generator(0, 0, n, device))
        n += 1
    out["loss_d"].item()
    results.put(n * cfg.batch_size / (time.perf_counter() - t))


def packed_trials(size, device, packs=PACKS, seconds=20.0):
    """Total images/s of k trial processes stepping at once on one device, for each k in ``packs``."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")   # CUDA cannot be forked into
    out = {}
    for k in packs:
        barrier, results = ctx.Barrier(k, timeout=900), ctx.Queue()
        procs = [ctx.Process(target=_packed_worker, args=(size, device, 1.0 / k, seconds, barrier, results))
                 for _ in range(k)]
        for p in procs:
            p.start()
        try:
            rates = _collect(results, procs)
        finally:
            for p in procs:
                p.join(timeout=60)
                if p.is_alive():   # after a failure: the others wait at the barrier
                    p.kill()
                    p.join()
        out[k] = {"total_images_per_s": sum(rates), "per_trial_images_per_s": rates}
    base = out[packs[0]]["total_images_per_s"]
    for k in packs:
        out[k]["vs_one"] = out[k]["total_images_per_s"] / base
    return out


def _collect(results, procs):
    """One rate per process; a process that dies first is an error, not a wait without end."""
    import queue

    rates = []
    while len(rates) < len(procs):
        try:
            rates.append(results.get(timeout=5))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a packed trial process exited with code {dead[0]}") from None
    return rates


def resident_data(size, device, step_images_per_s, n_images=60_000, batches=200):
    """Batches from a resident uint8 array of the cache's shape (random pixels: the timing does not
    depend on them), against the step: data seconds over data + step seconds per batch."""
    import torch

    from trainables.data.device_batches import device_batches
    from trainables.data.sampler import ResumableBatchSampler

    cfg = bench_config(size, device)
    pixels = torch.randint(0, 256, (n_images, cfg.nc, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    t = time.perf_counter()
    it = device_batches(pixels, ResumableBatchSampler(n_images, cfg.batch_size), device,
                        lambda p: p.float().div(255).sub(0.5).div(0.5))
    next(it)
    sync()
    upload = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
    sync()
    per_batch = (time.perf_counter() - t) / batches
    step_s = cfg.batch_size / step_images_per_s
    return {"upload_seconds": upload, "gib": pixels.numel() / 2**30, "images_per_s": cfg.batch_size / per_batch,
            "share_of_step": per_batch / (per_batch + step_s), "dtype": str(batch.dtype)}


def gpu_study(sizes, steps, device="cuda", variants=VARIANTS, packs=PACKS, pack_seconds=20.0, fd_n=10_000,
              tutorial="tutorial"):
    """Every measurement of the GPU part; ``sizes``: name -> config overrides, one of them ``tutorial``."""
    from trainables.metrics.evaluate import fd_speed

    out = {"variants": {name: step_variants(size, steps, device, variants) for name, size in sizes.items()}}
    size = sizes[tutorial]
    out["packed"] = packed_trials(size, device, packs, pack_seconds)
    out["data"] = resident_data(size, device, out["variants"][tutorial]["fp32"]["images_per_s"])
    if fd_n:
        out["fd"] = fd_speed("synthetic-faces", size["image_size"], fd_n, ngf=size["ngf"], device=device)
    return out


def print_gpu(r):
    import torch

    if "gemm_tflops" in r:
        print(f"GPU {torch.cuda.get_device_name()}: GEMM fp32 {r['gemm_tflops']['float32']:.1f} TFLOP/s "
              f"(TF32 off), bf16 {r['gemm_tflops']['bfloat16']:.0f} TFLOP/s")
    g = r["gpu"]
    for size, rows in g["variants"].items():
        plain = rows["plain"]["images_per_s"]
        print(f"  {size}: plain loop {plain:.0f} img/s")
        for name, v in rows.items():
            if name != "plain":
                shown = v["error"] if "error" in v else f"{v['images_per_s']:>10.0f} img/s {v['images_per_s'] / plain:>6.2f}x"
                print(f"    {name:<50}{shown}")
    one = g["packed"]
    print("  packed trials (fp32, tutorial size): " + ", ".join(
        f"{k}: {v['total_images_per_s']:.0f} img/s ({v['vs_one']:.2f}x)" for k, v in one.items()))
    d = g["data"]
    print(f"  resident data: {d['gib']:.2f} GiB up in {d['upload_seconds']:.1f} s; {d['images_per_s']:.0f} img/s, "
          f"{d['share_of_step']:.1%} of a step")
    if "fd" in g:
        print(f"  FD on {g['fd']['n']:,} samples: {g['fd']['seconds']:.1f} s")
