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


CONTROLS = 8       # random directions of the turn vector's length: the control


def _row_numbers(yaw, s, rows):
    rho = row_correlations(yaw, s)
    change = yaw.view(rows, len(s))[:, -1] - yaw.view(rows, len(s))[:, 0]
    return {"spearman_per_row": rho, "spearman_mean": sum(rho) / rows,
            "abs_spearman_mean": sum(abs(r) for r in rho) / rows,
            "rows_monotone_down": sum(r < -1 + 1e-9 for r in rho),
            "yaw_change_mean": change.mean().item(), "abs_yaw_change_mean": change.abs().mean().item()}


def run_turn(netG, evaluator, nz, z_dist, exemplars=4, rows=8, steps=9, pool=512, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z_left, z_right, yaw_left, yaw_right = extreme_yaw(netG, evaluator, nz, z_dist, exemplars, pool, gen)
    v = turn_vector(z_left, z_right)
    starts = sample_z(rows, nz, z_dist, generator=gen)
    numbers = {"exemplars": exemplars, "pool": pool, "rows": rows, "steps": steps, "seed": seed,
               "turn_norm": v.norm().item(), "exemplar_yaw_left": yaw_left.tolist(),
               "exemplar_yaw_right": yaw_right.tolist(), "controls": CONTROLS}
    zs, s = along(starts, v, steps)
    turned = render(netG, zs)
    numbers["turn"] = _row_numbers(evaluator.predict(turned)["yaw"], s, rows)
    # Control: random directions of the same length; a monotone yaw there is not the turn vector's doing.
    controls = []
    for _ in range(CONTROLS):
        d = torch.randn(nz, generator=gen)
        images = render(netG, along(starts, d * v.norm() / d.norm(), steps)[0])
        controls.append(_row_numbers(evaluator.predict(images)["yaw"], s, rows))
        if len(controls) == 1:
            first_control = images
    numbers["random_directions"] = {key: sum(c[key] for c in controls) / CONTROLS
                                    for key in ("spearman_mean", "abs_spearman_mean", "yaw_change_mean",
                                                "abs_yaw_change_mean")}
    numbers["random_directions"]["rows_monotone"] = sum(sum(abs(r) > 1 - 1e-9 for r in c["spearman_per_row"])
                                                        for c in controls)
    exemplar_grid = titled(grid(render(netG, torch.cat([z_left, z_right])), exemplars),
                           "exemplars: looking left (top), looking right (bottom)")
    figure = stack(exemplar_grid,
                   titled(grid(turned, steps), f"turn vector: z + s*v, s from -1/2 to 1/2 (rank corr. of yaw with s: "
                                               f"{numbers['turn']['spearman_mean']:+.2f})"),
                   titled(grid(first_control, steps), "a random direction of the same length"))
    return Report(numbers, {"turn": figure}, {"turn_vector": v.numpy()})
