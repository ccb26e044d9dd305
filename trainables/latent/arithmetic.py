"""Vector arithmetic on faces (paper 6.3.2): Y = mean(z_A) - mean(z_B) + mean(z_C), and the
same sum in pixel space as the baseline. Measured: how many outputs the evaluator scores with
the target attributes, for one exemplar per concept against ``k`` averaged.

The unit of replication is the trial (one draw of exemplars): Y's 8 neighbours are near-copies
of Y, so a trial's 9 outputs are one observation, summarised as the share that hits the target.
With one exemplar per concept Y has three times the prior's variance (its norm is about
sqrt(3) times a typical z's), so each Y is also measured rescaled to the prior's typical norm,
and against random triples (of prior samples, averaged the same way) rescaled to Y's norm.
"""
import math

import torch

from trainables.latent.figures import grid, stack, titled
from trainables.latent.generator import render
from trainables.latent.queries import attribute_values, matches, query_text
from trainables.latent.report import Report
from trainables.latent.stats import SHARE, contrasts, mean_ci, paired, proportion, value
from trainables.models import sample_z

NEIGHBOURS = 8          # the paper shows Y and 8 neighbours ...
NOISE = 0.25            # ... with uniform noise of +-0.25 added to Y
PRIOR_N = 1024          # random samples behind the prior rate of the target attributes
UNIT = "trials"
# Per number of exemplars m: Y; Y at the prior's typical norm; a random triple at Y's norm; pixels.
KINDS = ("latent", "latent_normed", "random", "pixel")



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


def prior_norm(nz, z_dist):
    """sqrt(E|z|^2), the radius of the shell the prior's samples lie near: sqrt(nz) for N(0, 1),
    sqrt(nz / 3) for U(-1, 1)."""
    return math.sqrt(nz / 3 if z_dist == "uniform" else nz)


def rescaled(y, norm):
    return y * (norm / y.norm())


def hits(evaluator, images, target):
    """Per image: whether it has every target attribute, and each attribute on its own."""
    values = attribute_values(evaluator, images)
    out = {"target": matches(values, target)}
    for name, want in target:
        out[name if want else "~" + name] = values[name] == want
    return out


def trial_vectors(groups, random_groups, m, typical):
    """The latent inputs of one trial for m exemplars per concept: Y; Y rescaled to the prior's
    typical norm; the same sum of random prior samples rescaled to Y's norm."""
    y = latent_arithmetic(*(z[:m] for z in groups))
    return {"latent": y, "latent_normed": rescaled(y, typical),
            "random": rescaled(latent_arithmetic(*(z[:m] for z in random_groups)), y.norm())}


def trial_outputs(netG, groups, random_groups, images, m, typical, gen):
    """The outputs of one trial: {kind: images} (each latent input with its 8 neighbours), and Y."""
    vectors = trial_vectors(groups, random_groups, m, typical)
    outputs = {kind: render(netG, neighbours(v, generator=gen)) for kind, v in vectors.items()}
    outputs["pixel"] = pixel_arithmetic(*(x[:m] for x in images)).unsqueeze(0)
    return outputs, vectors["latent"]


def run_arithmetic(netG, evaluator, exemplars, target, *, k, nz, z_dist, seed=0, names=("A", "B", "C")):
    """``exemplars``: three (trials * k, nz) tensors of z, one per concept; trial t uses rows
    t*k .. t*k+k-1 (and, for the one-exemplar setting, the first of them)."""
    trials = len(exemplars[0]) // k
    gen = torch.Generator().manual_seed(seed)
    typical = prior_norm(nz, z_dist)
    ms = (k, 1) if k > 1 else (1,)
    per_trial = {f"{kind}_{m}": [] for m in ms for kind in KINDS}     # per setting: one dict of shares per trial
    y_norms = {m: [] for m in ms}
    first = {}
    for t in range(trials):
        groups = [z[t * k:(t + 1) * k] for z in exemplars]
        random_groups = [sample_z(k, nz, z_dist, generator=gen) for _ in groups]
        images = [render(netG, z) for z in groups]
        for m in ms:
            outputs, y = trial_outputs(netG, groups, random_groups, images, m, typical, gen)
            y_norms[m].append(y.norm().item() / typical)
            if target is not None:
                for kind, out in outputs.items():
                    per_trial[f"{kind}_{m}"].append({key: h.float().mean().item()
                                                     for key, h in hits(evaluator, out, target).items()})
            if t == 0:
                first[m] = outputs, y
        if t == 0:
            first["exemplars"] = images
    numbers = {"exemplars": k, "trials": trials, "unit": UNIT, "neighbours": NEIGHBOURS, "noise": NOISE,
               "seed": seed, "z_dist": z_dist, "prior_norm": typical,
               "target": query_text(target) if target else None,
               "y_norm_over_prior_norm": {str(m): mean_ci(v, UNIT) for m, v in y_norms.items()}}
    if target is not None:
        prior = hits(evaluator, render(netG, sample_z(PRIOR_N, nz, z_dist, generator=gen)), target)
        numbers["prior"] = {key: proportion(int(h.sum()), PRIOR_N, "samples") for key, h in prior.items()}
        numbers["settings"] = {name: {"outputs_per_trial": 1 if name.startswith("pixel") else 1 + NEIGHBOURS,
                                      **{key: mean_ci([s[key] for s in shares], UNIT, bounds=SHARE)
                                         for key in shares[0]},
                                      "per_trial_target": [s["target"] for s in shares]}
                               for name, shares in per_trial.items()}
        numbers["primary"] = f"latent_{k} vs random_{k}"
        numbers["tests"] = contrasts(_tests(numbers["settings"], k, numbers["prior"]["target"]["mean"]),
                                     numbers["primary"])
    return Report(numbers, {"arithmetic": _figure(first, k, names)}, {"y": first[k][1].numpy()})


def _tests(settings, k, prior_rate):
    """Trial-paired contrasts of the target share. The primary: Y against random triples of its
    norm (does the arithmetic, not Y's length, carry the attributes?)."""
    target = {name: s["per_trial_target"] for name, s in settings.items()}
    tests = {f"latent_{k} vs random_{k}": paired(target[f"latent_{k}"], target[f"random_{k}"], UNIT, SHARE)}
    if k > 1:
        tests[f"latent_{k} vs latent_1"] = paired(target[f"latent_{k}"], target["latent_1"], UNIT, SHARE)
        tests[f"latent_normed_{k} vs latent_normed_1"] = paired(target[f"latent_normed_{k}"],
                                                                target["latent_normed_1"], UNIT, SHARE)
    tests[f"latent_{k} vs pixel_{k}"] = paired(target[f"latent_{k}"], target[f"pixel_{k}"], UNIT, SHARE)
    tests[f"latent_{k} vs the prior rate"] = paired(target[f"latent_{k}"], [prior_rate] * len(target[f"latent_{k}"]),
                                                    UNIT, SHARE)
    return tests


def headline(numbers):
    """The per-generator numbers summarised over generators."""
    out = {f"target: {name}": s["target"] for name, s in numbers.get("settings", {}).items()}
    if "prior" in numbers:
        out["target: prior rate"] = value(numbers["prior"]["target"]["mean"], SHARE)
    out.update({f"effect: {name}": t["diff"] for name, t in numbers.get("tests", {}).items()})
    return out


def _figure(first, k, names):
    ex = first["exemplars"]
    panels = [titled(grid(torch.cat(ex), k * 3), " | ".join(f"{n} ({k})" for n in names))]
    captions = {"latent": "Y then 8 neighbours (+-{noise})", "latent_normed": "Y at the prior's norm, 8 neighbours",
                "random": "random triple at |Y|, 8 neighbours", "pixel": "pixel space"}
    for m in sorted({k, 1}, reverse=True):
        outputs, _ = first[m]
        for kind, images in outputs.items():
            caption = captions[kind].format(noise=NOISE)
            panels.append(titled(grid(images, len(images)), f"{m} exemplar(s), {caption}"))
    return stack(*panels)
