"""The turn vector (paper 6.3.2): mean z of faces looking left minus mean z of faces looking
right, chosen by the evaluator's yaw. Added in steps to random faces, it should turn them: the
evaluator's yaw should fall monotonically along each row (yaw < 0 is looking left), further
than along random directions of the same length. The recipe is repeated over independent
exemplar draws, the unit of replication: one draw tests one vector, not the method."""
import torch
from scipy.stats import spearmanr

from trainables.latent.figures import grid, stack, titled
from trainables.latent.generator import render
from trainables.latent.report import Report
from trainables.latent.stats import CORRELATION, contrasts, mean_ci, paired
from trainables.models import sample_z

CONTROLS = 8       # random directions of the turn vector's length per draw: the control
UNIT = "exemplar draws"
PRIMARY = "leftward yaw change: turn vector vs random directions"


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


def _row_numbers(yaw, s, rows):
    """Per row of one direction: Spearman of yaw with the step, and the yaw turned left (start - end)."""
    rho = row_correlations(yaw, s)
    left = yaw.view(rows, len(s))[:, 0] - yaw.view(rows, len(s))[:, -1]
    return {"spearman_per_row": rho, "spearman_mean": sum(rho) / rows,
            "rows_monotone_left": sum(r < -1 + 1e-9 for r in rho),
            "leftward_yaw_change": left.mean().item(), "abs_yaw_change": left.abs().mean().item()}


def one_draw(netG, evaluator, nz, z_dist, exemplars, rows, steps, pool, gen):
    """One replication: a fresh pool of exemplars, fresh faces to turn, fresh random directions."""
    z_left, z_right, yaw_left, yaw_right = extreme_yaw(netG, evaluator, nz, z_dist, exemplars, pool, gen)
    v = turn_vector(z_left, z_right)
    starts = sample_z(rows, nz, z_dist, generator=gen)
    zs, s = along(starts, v, steps)
    turned = render(netG, zs)
    numbers = {"turn_norm": v.norm().item(), "exemplar_yaw_left": yaw_left.tolist(),
               "exemplar_yaw_right": yaw_right.tolist(),
               "turn": _row_numbers(evaluator.predict(turned)["yaw"], s, rows)}
    # Control: random directions of the same length; a monotone yaw there is not the turn vector's doing.
    controls, first_control = [], None
    for _ in range(CONTROLS):
        d = torch.randn(nz, generator=gen)
        images = render(netG, along(starts, d * v.norm() / d.norm(), steps)[0])
        controls.append(_row_numbers(evaluator.predict(images)["yaw"], s, rows))
        if first_control is None:
            first_control = images
    numbers["random_directions"] = {key: sum(c[key] for c in controls) / CONTROLS
                                    for key in ("spearman_mean", "leftward_yaw_change", "abs_yaw_change")}
    numbers["random_directions"]["rows_monotone_either_way"] = sum(
        sum(abs(r) > 1 - 1e-9 for r in c["spearman_per_row"]) for c in controls)
    figure = stack(titled(grid(render(netG, torch.cat([z_left, z_right])), exemplars),
                          "exemplars: looking left (top), looking right (bottom)"),
                   titled(grid(turned, steps), f"turn vector: z + s*v, s from -1/2 to 1/2 (rank corr. of yaw with s: "
                                               f"{numbers['turn']['spearman_mean']:+.2f})"),
                   titled(grid(first_control, steps), "a random direction of the same length"))
    return numbers, figure, v


def run_turn(netG, evaluator, *, nz, z_dist, exemplars=4, rows=8, steps=9, pool=512, draws=10, seed=0):
    """``draws`` independent replications of the paper's recipe; the unit of every interval."""
    gen = torch.Generator().manual_seed(seed)
    per_draw = []
    for d in range(draws):
        numbers, fig, v = one_draw(netG, evaluator, nz, z_dist, exemplars, rows, steps, pool, gen)
        per_draw.append(numbers)
        if d == 0:
            figure, first_v = fig, v          # the figure shows the first draw
    series = {f"{who}: {key}": [d[who][key] for d in per_draw]
              for who in ("turn", "random_directions") for key in ("spearman_mean", "leftward_yaw_change",
                                                                   "abs_yaw_change")}
    numbers = {"exemplars": exemplars, "pool": pool, "rows": rows, "steps": steps, "draws": draws, "seed": seed,
               "controls_per_draw": CONTROLS, "unit": UNIT,
               "summary": {key: mean_ci(values, UNIT, CORRELATION if key.endswith("spearman_mean") else None)
                           for key, values in series.items()},
               "turn_norm": mean_ci([d["turn_norm"] for d in per_draw], UNIT), "per_draw": per_draw}
    numbers["tests"] = contrasts({
        PRIMARY: paired(series["turn: leftward_yaw_change"], series["random_directions: leftward_yaw_change"], UNIT),
        "rank correlation of yaw with s: turn vector vs random": paired(
            series["turn: spearman_mean"], series["random_directions: spearman_mean"], UNIT, CORRELATION),
        "absolute yaw change: turn vector vs random": paired(
            series["turn: abs_yaw_change"], series["random_directions: abs_yaw_change"], UNIT),
    }, PRIMARY)
    return Report(numbers, {"turn": figure}, {"turn_vector": first_v.numpy()})


def headline(numbers):
    """The per-generator numbers summarised over generators."""
    out = dict(numbers["summary"])
    out.update({f"effect: {name}": t["diff"] for name, t in numbers["tests"].items()})
    return out
