"""Vector arithmetic on faces (paper 6.3.2): Y = mean(z_A) - mean(z_B) + mean(z_C), and the
same sum in pixel space as the baseline. Measured: how many outputs the evaluator scores with
the target attributes, for one exemplar per concept against ``k`` averaged."""
import torch

from trainables.latent.figures import grid, stack, titled
from trainables.latent.generator import render
from trainables.latent.queries import attribute_values, matches, query_text
from trainables.latent.report import Report
from trainables.models import sample_z

NEIGHBOURS = 8          # the paper shows Y and 8 neighbours ...
NOISE = 0.25            # ... with uniform noise of +-0.25 added to Y
PRIOR_N = 1024          # random samples behind the prior rate of the target attributes

# The paper's two analogies; long_hair plays woman (true) and man (false).
RECIPES = {
    "smile": dict(a="smiling & long_hair", b="~smiling & long_hair", c="~smiling & ~long_hair",
                  target="smiling & ~long_hair"),   # smiling woman - neutral woman + neutral man = smiling man
    "glasses": dict(a="glasses & ~long_hair", b="~glasses & ~long_hair", c="~glasses & long_hair",
                    target="glasses & long_hair"),  # man with glasses - man without + woman without = woman with
}


def latent_arithmetic(z_a, z_b, z_c):
    """Y = mean(z_A) - mean(z_B) + mean(z_C); each argument (k, nz)."""
    return z_a.mean(0) - z_b.mean(0) + z_c.mean(0)


def neighbours(y, n=NEIGHBOURS, noise=NOISE, generator=None):
    """(1 + n, nz): Y itself, then Y plus independent uniform noise in [-noise, noise]."""
    u = torch.rand(n, y.shape[-1], generator=generator) * 2 - 1
    return torch.cat([y.unsqueeze(0), y + noise * u])


def pixel_arithmetic(x_a, x_b, x_c):
    """The same sum on images, clipped back to [-1, 1]: the paper's pixel-space baseline."""
    return (x_a.mean(0) - x_b.mean(0) + x_c.mean(0)).clamp(-1, 1)


def derive_target(qa, qb, qc):
    """The target of three attribute queries: per attribute named in all three, A - B + C when
    that is 0 or 1 (smiling: 1 - 0 + 0 = 1). None when no attribute qualifies."""
    a, b, c = dict(qa), dict(qb), dict(qc)
    terms = []
    for name in a:
        if name in b and name in c:
            v = int(a[name]) - int(b[name]) + int(c[name])
            if v in (0, 1):
                terms.append((name, bool(v)))
    return tuple(terms) or None


def score(evaluator, images, target):
    """Fraction of images with all target attributes, and each attribute's own fraction."""
    values = attribute_values(evaluator, images)
    out = {"target": matches(values, target).float().mean().item()}
    for name, want in target:
        out[name if want else "~" + name] = (values[name] == want).float().mean().item()
    return out


def _mean_scores(scores):
    return {key: sum(s[key] for s in scores) / len(scores) for key in scores[0]}


def run_arithmetic(netG, evaluator, exemplars, target, k, nz, z_dist, seed=0, names=("A", "B", "C")):
    """``exemplars``: three (trials * k, nz) tensors of z, one per concept; trial t uses rows
    t*k .. t*k+k-1 (and, for the one-exemplar setting, the first of them)."""
    trials = len(exemplars[0]) // k
    gen = torch.Generator().manual_seed(seed)
    settings = {f"latent_{k}": [], "latent_1": [], f"pixel_{k}": [], "pixel_1": []}
    first = {}
    for t in range(trials):
        groups = [z[t * k:(t + 1) * k] for z in exemplars]
        images = [render(netG, z) for z in groups]
        for m in (k, 1) if k > 1 else (1,):
            y = latent_arithmetic(*(z[:m] for z in groups))
            out = render(netG, neighbours(y, generator=gen))
            pix = pixel_arithmetic(*(x[:m] for x in images)).unsqueeze(0)
            if target is not None:
                settings[f"latent_{m}"].append(score(evaluator, out, target))
                settings[f"pixel_{m}"].append(score(evaluator, pix, target))
            if t == 0:
                first[m] = (out, pix, y)
        if t == 0:
            first["exemplars"] = images
    numbers = {"exemplars": k, "trials": trials, "neighbours": NEIGHBOURS, "noise": NOISE, "seed": seed,
               "target": query_text(target) if target else None}
    if target is not None:
        prior = render(netG, sample_z(PRIOR_N, nz, z_dist, generator=gen))
        numbers["prior"] = score(evaluator, prior, target)
        numbers["table"] = {name: {**_mean_scores(s), "outputs": len(s) * (1 + NEIGHBOURS if "latent" in name else 1)}
                            for name, s in settings.items() if s}
        numbers["per_trial_target"] = {name: [x["target"] for x in s] for name, s in settings.items() if s}
    return Report(numbers, {"arithmetic": _figure(first, k, names)}, {"y": first[k][2].numpy()})


def _figure(first, k, names):
    ex = first["exemplars"]
    panels = [titled(grid(torch.cat(ex), k * 3), " | ".join(f"{n} ({k})" for n in names))]
    for m in sorted({k, 1}, reverse=True):
        out, pix, _ = first[m]
        panels.append(titled(grid(out, NEIGHBOURS + 1), f"latent, {m} exemplar(s): Y then 8 neighbours (+-{NOISE})"))
        panels.append(titled(grid(pix, 1), f"pixel space, {m} exemplar(s)"))
    return stack(*panels)
