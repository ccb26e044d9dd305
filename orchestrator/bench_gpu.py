"""The GPU part of ``dcgan-lab bench --device cuda``: the project's step in fp32 and in bf16
autocast, with and without ``cudnn.benchmark`` and ``channels_last``, against the plain loop.
"""
import contextlib
import time

# name -> (bf16 autocast, cudnn.benchmark, channels_last)
VARIANTS = {
    "fp32": (False, False, False),
    "fp32+benchmark": (False, True, False),
    "fp32+benchmark+channels_last": (False, True, True),
    "bf16": (True, False, False),
    "bf16+benchmark": (True, True, False),
    "bf16+benchmark+channels_last": (True, True, True),
}


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


def gpu_variants(cfg, steps, gflop_per_image):
    """Images/s and achieved TFLOP/s of each variant, same nets and seed, on one CUDA device."""
    import torch

    from trainables.models import build_models
    from trainables.step import GANStep, make_optimizers, noise_generator

    out = {}
    for name, (bf16, benchmark, channels_last) in VARIANTS.items():
        torch.backends.cudnn.benchmark = benchmark
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        real = (torch.rand(cfg.batch_size, cfg.nc, cfg.image_size, cfg.image_size, device="cuda") * 2 - 1)
        real = real.contiguous(memory_format=fmt)
        torch.manual_seed(0)
        netG, netD = (n.to("cuda", memory_format=fmt) for n in build_models(cfg))
        step = GANStep(netG, netD, *make_optimizers(cfg, netG, netD), cfg.nz, cfg.z_dist)
        amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

        def one(i):
            with amp():
                return step(real, noise_generator(0, 0, i))

        for i in range(5):  # warm-up, cudnn's autotuning included
            one(i)["loss_d"].item()
        torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(steps):
            res = one(i)
        loss = res["loss_d"].item()
        rate = steps * cfg.batch_size / (time.perf_counter() - t)
        out[name] = {"images_per_s": rate, "tflops": rate * gflop_per_image / 1e3, "loss_d_finite": loss == loss}
    torch.backends.cudnn.benchmark = False
    return out


def print_gpu(r, sizes):
    import torch

    print(f"GPU {torch.cuda.get_device_name()}: GEMM fp32 {r['gemm_tflops']['float32']:.1f} TFLOP/s, "
          f"tf32-off; bf16 {r['gemm_tflops']['bfloat16']:.0f} TFLOP/s")
    for s in sizes:
        print(f"  {s}: batch {r[s]['batch_size']}, plain fp32 loop {r[s]['plain_images_per_s']:.0f} img/s")
        for name, v in r[s]["gpu_variants"].items():
            print(f"    {name:<32}{v['images_per_s']:>10.0f} img/s{v['tflops']:>8.1f} TFLOP/s")
