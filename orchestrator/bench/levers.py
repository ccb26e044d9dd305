"""The ``levers`` part of ``dcgan-lab bench``: the project's step under each CPU lever, at one
size, interleaved, with what each lever does to the losses.

Every variant trains its own copy of the same nets (same seed, same real batch, the same noise
stream step by step), so after the timing their loss sequences can be compared with the reference
step's: bit for bit, or by how far they drift. The variants run in turn, ``rounds`` times, and
each keeps its median rate: load that drifts during the measurement hits all of them alike.
"""
import contextlib
import statistics
import time

from orchestrator.config import resolve_config

# name -> what differs from the reference: the paper's fp32 step as the `stability` preset trains it (1
# thread, foreach Adam, contiguous, eager, fp32; `quick` and `search` add channels_last).
LEVERS = {
    "reference": {},
    "channels_last": {"channels_last": True},
    "oneDNN off": {"mkldnn": False},
    "fused Adam": {"adam": "fused"},
    "for-loop Adam": {"adam": "for-loop"},
    "2 threads": {"threads": 2},
    "torch.compile": {"compile": True},
    "channels_last + compile": {"channels_last": True, "compile": True},
    "bf16 autocast": {"bf16": True},
}


class Variant:
    """One lever's copy of the step, and the losses it has produced so far."""

    def __init__(self, cfg, lever, real):
        import torch

        from trainables.models import build_models
        from trainables.step import GANStep

        self.threads = lever.get("threads", 1)
        self.mkldnn = lever.get("mkldnn", True)
        self.bf16 = lever.get("bf16", False)
        fmt = torch.channels_last if lever.get("channels_last") else torch.contiguous_format
        self.real = real.contiguous(memory_format=fmt)
        torch.manual_seed(0)
        netG, netD = (n.to(memory_format=fmt) for n in build_models(cfg))
        adam = lever.get("adam", "foreach")
        kw = {"foreach": adam == "foreach", "fused": adam == "fused"}
        optG = torch.optim.Adam(netG.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **kw)
        optD = torch.optim.Adam(netD.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **kw)
        if lever.get("compile"):
            netG, netD = torch.compile(netG), torch.compile(netD)
        self.step = GANStep(netG, netD, optG, optD, cfg.nz, cfg.z_dist)
        self.losses = []   # (loss_d, loss_g) per step

    def run(self, steps):
        """Seconds for ``steps`` more steps, losses read after each (a CPU step is synchronous)."""
        import torch

        from trainables.step import noise_generator

        torch.set_num_threads(self.threads)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        # Set directly: mkldnn.flags() also sets oneDNN's TF32 switch, and warns that it has no Intel GPU.
        torch.backends.mkldnn.enabled = self.mkldnn
        t = time.perf_counter()
        try:
            with autocast:
                for _ in range(steps):
                    out = self.step(self.real, noise_generator(0, 0, len(self.losses)))
                    self.losses.append((out["loss_d"].item(), out["loss_g"].item()))
            return time.perf_counter() - t
        finally:
            torch.backends.mkldnn.enabled = True


def lever_throughput(overrides, steps=20, rounds=4, warmup=2, levers=LEVERS):
    """{lever: images/s (median over rounds), steps timed, and its losses against the reference
    step's} at one size; ``steps`` timed steps per variant in all, spread over ``rounds``.
    ``levers`` must hold "reference", the step every lever is compared with."""
    import torch

    cfg = resolve_config("smoke", {**overrides, "max_steps": steps})
    real = torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    real = real * 2 - 1
    prev = torch.get_num_threads()
    variants = {name: Variant(cfg, lever, real) for name, lever in levers.items()}
    # torch.compile compiles here (Inductor's on-disk cache, when warm, makes it much shorter).
    warmup_s = {name: v.run(warmup) for name, v in variants.items()}
    rates, timed = interleaved_rates({name: v.run for name, v in variants.items()}, steps, cfg.batch_size, rounds)
    torch.set_num_threads(prev)
    base = variants["reference"].losses
    return {name: {"images_per_s": rates[name], "steps_timed": timed,
                   "warmup_s": warmup_s[name], **loss_drift(v.losses, base)} for name, v in variants.items()}


def interleaved_rates(runs, steps, batch_size, rounds):
    """({name: images/s, the median of its rounds}, steps timed each) for ``runs``, {name: run(n)
    -> seconds for n more steps}: ``steps`` each in all, spread over ``rounds`` in which every run
    takes its turn, in a different order each round (load that drifts hits all of them alike)."""
    per_round = -(-steps // rounds)
    rates = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            rates[name].append(per_round * batch_size / runs[name](per_round))
    return {name: statistics.median(v) for name, v in rates.items()}, per_round * rounds


def loss_drift(losses, base):
    """How the losses differ from the reference's: bit for bit equal, the largest relative
    difference at the first step (the lever's own rounding) and at the last (after the steps
    between have compounded it)."""
    def rel(a, b):
        return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))

    return {"losses_equal": losses == base, "first_step_rel_diff": rel(losses[0], base[0]),
            "last_step_rel_diff": rel(losses[-1], base[-1])}


def print_levers(levers):
    for size, variants in levers.items():
        base, steps = variants["reference"]["images_per_s"], variants["reference"]["steps_timed"]
        print(f"CPU levers, {size} size ({steps} steps per variant, interleaved; median of rounds):")
        print(f"  {'lever':<24}{'img/s':>9}{'vs reference':>14}{'warm-up s':>11}{'losses':>9}{'rel diff step 1':>17}"
              f"{'last':>10}")
        for name, v in variants.items():
            same = "equal" if v["losses_equal"] else "differ"
            print(f"  {name:<24}{v['images_per_s']:>9.1f}{v['images_per_s'] / base:>13.2f}x{v['warmup_s']:>11.1f}{same:>9}"
                  f"{v['first_step_rel_diff']:>17.1e}{v['last_step_rel_diff']:>10.1e}")
