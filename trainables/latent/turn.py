"""The turn vector (paper 6.3.2): mean z of faces looking left minus mean z of faces looking
right, chosen by the evaluator's yaw. Added in steps to random faces, it should turn them: the
evaluator's yaw should fall monotonically along each row (yaw < 0 is looking left)."""
import torch
from scipy.stats import spearmanr

from trainables.latent.figures import grid, stack, titled
from trainables.latent.generator import render
from trainables.latent.report import Report
from trainables.models import sample_z


def turn_vector(z_left, z_right):
    return z_left.mean(0) - z_right.mean(0)


def extreme_yaw(netG, evaluator, nz, z_dist, k, pool, generator):
    """From ``pool`` samples, the z of the ``k`` faces looking furthest left and furthest right."""
    z = sample_z(pool, nz, z_dist, generator=generator)
    yaw = evaluator.predict(render(netG, z))["yaw"]
    order = yaw.argsort()
    return z[order[:k]], z[order[-k:]], yaw[order[:k]], yaw[order[-k:]]


def along(z, v, steps):
    """Rows z_i + s v for s in [-1/2, 1/2]: the ends of a row differ by exactly one v."""
    s = torch.linspace(-0.5, 0.5, steps)
    return (z[:, None, :] + s[None, :, None] * v).reshape(-1, z.shape[1]), s


def row_correlations(yaw, s):
    """Spearman rank correlation of yaw with the step, per row (0 for a row whose yaw is constant)."""
    rows = yaw.view(-1, len(s))
    rho = [float(spearmanr(s.numpy(), r.numpy()).statistic) for r in rows]
    return [0.0 if r != r else r for r in rho]


def run_turn(netG, evaluator, nz, z_dist, exemplars=4, rows=8, steps=9, pool=512, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z_left, z_right, yaw_left, yaw_right = extreme_yaw(netG, evaluator, nz, z_dist, exemplars, pool, gen)
    v = turn_vector(z_left, z_right)
    starts = sample_z(rows, nz, z_dist, generator=gen)
    # Control: a random direction of the same length should not turn faces.
    control = torch.randn(nz, generator=gen)
    control *= v.norm() / control.norm()
    numbers = {"exemplars": exemplars, "pool": pool, "rows": rows, "steps": steps, "seed": seed,
               "turn_norm": v.norm().item(), "exemplar_yaw_left": yaw_left.tolist(),
               "exemplar_yaw_right": yaw_right.tolist()}
    panels = []
    for name, direction in (("turn", v), ("random_direction", control)):
        zs, s = along(starts, direction, steps)
        images = render(netG, zs)
        yaw = evaluator.predict(images)["yaw"]
        rho = row_correlations(yaw, s)
        numbers[name] = {"spearman_per_row": rho, "spearman_mean": sum(rho) / len(rho),
                         "rows_monotone_down": sum(r < -1 + 1e-9 for r in rho),
                         "yaw_start_mean": yaw.view(rows, steps)[:, 0].mean().item(),
                         "yaw_end_mean": yaw.view(rows, steps)[:, -1].mean().item()}
        panels.append(titled(grid(images, steps), f"{name}: z + s*v, s from -1/2 to 1/2 (rank corr. of yaw "
                                                  f"with s: {numbers[name]['spearman_mean']:+.2f})"))
    exemplar_grid = titled(grid(render(netG, torch.cat([z_left, z_right])), exemplars),
                           "exemplars: looking left (top), looking right (bottom)")
    return Report(numbers, {"turn": stack(exemplar_grid, *panels)}, {"turn_vector": v.numpy()})
