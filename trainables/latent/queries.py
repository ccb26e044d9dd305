"""Attribute queries answered by a domain evaluator: ``"smiling & long_hair"``, ``"~glasses"``.

A query is a conjunction of attribute names, each optionally negated with ``~``. The attributes
are the evaluator's binary heads (true where its probability is over 0.5) and two read off its
yaw: ``looking_left`` and ``looking_right`` (|yaw| over YAW_TURNED).
"""
import torch

from trainables.errors import UserError
from trainables.latent.generator import render
from trainables.models import sample_z

YAW_TURNED = 0.5
SEARCH_BATCH = 256


def attributes(spec):
    """The query-able attribute names of an evaluator (by its spec), in a fixed order."""
    heads = spec.heads
    names = [key for key, kind, _ in heads if kind == "binary"]
    if any(key == "yaw" for key, _, _ in heads):
        names += ["looking_left", "looking_right"]
    return names


def attribute_values(evaluator, images):
    """{attribute: bool tensor (N,)} for every attribute of the evaluator."""
    pred = evaluator.predict(images)
    values = {key: pred[key] > 0.5 for key in attributes(evaluator.spec) if key in pred}
    if "yaw" in pred:
        values["looking_left"] = pred["yaw"] < -YAW_TURNED
        values["looking_right"] = pred["yaw"] > YAW_TURNED
    return values


def parse_query(text, allowed, flag="query"):
    """``"a & ~b"`` -> ``(("a", True), ("b", False))``; unknown names fail, listing the allowed ones."""
    terms = []
    for part in str(text).split("&"):
        part = part.strip()
        want = not part.startswith("~")
        name = part.lstrip("~").strip()
        if name not in allowed:
            choices = ", ".join(allowed) if allowed else "none (this generator's evaluator has no binary attributes)"
            raise UserError(f"{flag}={text!r}: attribute {name!r} is unknown; allowed: {choices} "
                            f"(negate with ~, combine with &)")
        terms.append((name, want))
    return tuple(terms)


def query_text(query):
    return " & ".join(("" if want else "~") + name for name, want in query)


def matches(values, query):
    """Bool tensor: which samples satisfy every term of ``query``."""
    n = len(next(iter(values.values())))
    hit = torch.ones(n, dtype=torch.bool)
    for name, want in query:
        hit &= values[name] == want
    return hit


def find_exemplars(netG, evaluator, queries, k, *, nz, z_dist, budget=4096, seed=0, flags=None, need=""):
    """Sample z until each query has ``k`` matches or ``budget`` samples are spent.

    Returns one (k, nz) tensor of z per query, the first matches in sampling order. Fails with
    the count found when a query stays short (``need``, e.g. " (--exemplars 3 x --trials 5)", says where ``k`` came from).
    """
    gen = torch.Generator().manual_seed(seed)
    found = [[] for _ in queries]
    drawn = 0
    while drawn < budget and any(sum(len(f) for f in hits) < k for hits in found):
        z = sample_z(min(SEARCH_BATCH, budget - drawn), nz, z_dist, generator=gen)
        drawn += len(z)
        values = attribute_values(evaluator, render(netG, z))
        for hits, query in zip(found, queries):
            hits.append(z[matches(values, query)])
    out = []
    for i, (hits, query) in enumerate(zip(found, queries)):
        z = torch.cat(hits)
        if len(z) < k:
            flag = flags[i] if flags else "query"
            raise UserError(f"{flag}={query_text(query)!r} matched {len(z)} of {drawn} samples, fewer than the "
                            f"{k} needed{need}; try another query or a larger --budget")
        out.append(z[:k])
    return out
