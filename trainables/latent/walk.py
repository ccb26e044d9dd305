"""Walking in the latent space (paper 6.1): interpolations between random z, and how evenly
the images change along them. A step far larger than its neighbours is a sharp transition,
the paper's sign of memorisation."""
import torch

from trainables.latent.figures import grid, stack, titled
from trainables.latent.generator import render
from trainables.latent.report import Report
from trainables.latent.stats import SHARE, mean_ci, value
from trainables.models import sample_z

PATHS = ("linear", "slerp")
TOP_JUMPS = 5          # the largest jumps listed in the numbers and marked in the figures
JUMP_FLAG = 3.0        # a step this many times its row's median step is flagged as a jump


def lerp(z0, z1, t):
    return (1 - t) * z0 + t * z1


def slerp(z0, z1, t):
    """Spherical interpolation: along the great circle between z0 and z1, scaled between their norms."""
    n0, n1 = z0.norm(), z1.norm()
    u0, u1 = z0 / n0, z1 / n1
    omega = torch.arccos((u0 * u1).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    u = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return u * ((1 - t) * n0 + t * n1)


def path(z0, z1, steps, how):
    """``steps + 1`` points from z0 to z1 (both included)."""
    fn = lerp if how == "linear" else slerp
    return torch.stack([fn(z0, z1, t) for t in torch.linspace(0, 1, steps + 1)])


def step_changes(features, steps):
    """Per-step feature change: (rows, steps) L2 distances between consecutive frames."""
    f = features.view(-1, steps + 1, features.shape[-1])
    return (f[:, 1:] - f[:, :-1]).norm(dim=-1)


def smoothness(changes, scale):
    """Numbers for one kind of path: steps relative to ``scale`` (the mean feature distance
    between two independent samples), each row's largest step over its median, flagged jumps."""
    rel = changes / scale
    median = rel.median(dim=1, keepdim=True).values.clamp_min(1e-12)
    ratio = rel / median
    flat = ratio.flatten()
    top = flat.argsort(descending=True)[:TOP_JUMPS]
    steps = changes.shape[1]
    return {
        "mean_step": rel.mean().item(),
        "max_step": rel.max().item(),
        "mean_max_over_median": ratio.max(dim=1).values.mean().item(),
        "max_over_median_per_path": mean_ci(ratio.max(dim=1).values.tolist(), "paths"),
        "max_over_median": flat.max().item(),
        "jumps_flagged": int((ratio > JUMP_FLAG).sum()),
        "steps": changes.numel(),
        "largest_jumps": [{"row": int(i) // steps, "step": int(i) % steps, "size": rel.flatten()[i].item(),
                           "over_row_median": flat[i].item()} for i in top],
        "per_row_steps": rel.tolist(),
    }


def run_walk(netG, evaluator, *, nz, z_dist, points=9, steps=8, seed=0):
    """``points`` random z, a path between each consecutive pair; linear and slerp."""
    gen = torch.Generator().manual_seed(seed)
    z = sample_z(points, nz, z_dist, generator=gen)
    scale_z = sample_z(512, nz, z_dist, generator=gen)
    f_rand = evaluator.features(render(netG, scale_z))
    scale = (f_rand[:256] - f_rand[256:]).norm(dim=1).mean().item()
    numbers = {"points": points, "steps": steps, "seed": seed, "feature_scale": scale,
               "jump_flag_over_median": JUMP_FLAG, "evaluator": evaluator.name}
    panels, arrays = [], {}
    for how in PATHS:
        zs = torch.cat([path(z[i], z[i + 1], steps, how) for i in range(points - 1)])
        images = render(netG, zs)
        changes = step_changes(evaluator.features(images), steps)
        numbers[how] = smoothness(changes, scale)
        # Mark the frame each flagged top jump lands on.
        marked = {j["row"] * (steps + 1) + j["step"] + 1 for j in numbers[how]["largest_jumps"]
                  if j["over_row_median"] > JUMP_FLAG}
        panels.append(titled(grid(images, steps + 1, marked=marked), f"{how} (red: jumps > {JUMP_FLAG:g}x row median)"))
        arrays[f"z_{how}"] = zs.numpy()
    return Report(numbers, {"walk": stack(*panels)}, arrays)


def headline(numbers):
    """The per-generator numbers summarised over generators."""
    out = {}
    for how in PATHS:
        out[f"{how}: mean_max_over_median"] = numbers[how]["max_over_median_per_path"]
        out[f"{how}: share of steps flagged"] = value(numbers[how]["jumps_flagged"] / numbers[how]["steps"], SHARE)
    return out
