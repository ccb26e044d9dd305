"""Claim verdicts from records: the primary contrast at the paper's other settings, the rules that
turn it into a verdict (replication, direction, horizon), secondaries under Holm, and the flat
summary other tools log (``claims_summary``). The statistics are in ``report.model``.

Rules, in order (docs/report.md states them for readers):
1. The primary estimate is the simple effect alt − paper with every other factor at the paper's
   level (the reference), on the primary metric's analysis scale (log FD for FD), paired within
   seeds and tested with a t over seeds.
2. No verdict with fewer than MIN_SEEDS seeds per arm: "not tested".
3. The primary tests of one claims file are a family: Holm's step-down over their p. Holm-adjusted
   p < 0.05 on the predicted side: "supported"; on the other side: "contradicted" if both cells of
   the claim are shown flat (``report.model.plateau``: TOST at the file's plateau_margin), else
   "not reproduced at this horizon"; adjusted p >= 0.05: "inconclusive".
4. The verdict under each divergence sensitivity analysis (``report.divergence``) is made by the same
   rules; a claim whose verdict changes under one of them is *fragile*.
5. Secondaries get Holm-step-down intervals within their claim and never change the verdict;
   disagreement is said in words.
"""
import math

from orchestrator.report import divergence, model
from search_spaces.metrics import METRICS

VERDICTS = ("supported", "contradicted", "not reproduced at this horizon", "inconclusive", "not tested")
DECISIVE = VERDICTS[:3]      # verdicts that assert an effect
MIN_SEEDS = 3
NEEDS_SEEDS = f"needs >= {MIN_SEEDS} seeds per arm"


def evaluate_claims(claims, records, factors, paper_levels, label, describe=True):
    """(results, untested) for ``claims`` on ``records``.

    ``paper_levels``: factor -> label of its config default; ``label(factor, value)`` -> the label the
    records use for a claim's level. ``untested``: [(claim, why)] for claims these runs cannot test.
    Each metric's per-seed table is built once and shared by every claim. ``describe=False`` (the
    simulations) makes the verdicts alone: no interaction F test, no divergence sensitivity, and a
    cell's plateau only where a verdict needs it (``plateau`` None otherwise)."""
    tables, plateaus = {}, {}

    def table_of(metric):
        if metric not in tables:
            tables[metric] = model.seed_table(records, factors, metric)
        return tables[metric]

    def plateau_of(cell, margin):
        if (cell, margin) not in plateaus:
            plateaus[cell, margin] = model.plateau([r for r in records if _cell(r, factors) == cell], margin)
        return plateaus[cell, margin]

    results, untested = [], []
    for claim in claims:
        res = _evaluate(claim, records, factors, paper_levels, label, table_of, plateau_of, describe)
        if isinstance(res, str):
            untested.append((claim, res))
        else:
            results.append(res)
    _decide(results, plateau_of)
    return results, untested


def _cell(record, factors):
    return tuple(record["levels"][f] for f in factors)


def _evaluate(claim, records, factors, paper_levels, label, table_of, plateau_of, describe):
    """The claim's result dict, or a string saying why these runs cannot test it."""
    if claim.factor not in factors:
        return "its factor does not vary in these runs"
    lv = {"paper": label(claim.factor, claim.paper), "alt": label(claim.factor, claim.alt)}
    present = {r["levels"][claim.factor] for r in records}
    for side in ("paper", "alt"):
        if lv[side] not in present:
            return f"no run has {claim.factor}={lv[side]}"
    i, others = factors.index(claim.factor), [f for f in factors if f != claim.factor]

    def at(rest, side):   # the cell with the other factors at ``rest`` and the claim's factor at ``side``
        return rest[:i] + (lv[side],) + rest[i:]

    cells = {_cell(r, factors) for r in records}
    matched = sorted({c[:i] + c[i + 1:] for c in cells if at(c[:i] + c[i + 1:], "paper") in cells
                      and at(c[:i] + c[i + 1:], "alt") in cells})
    if not matched:
        return f"no runs differ in {claim.factor} alone"
    ref = tuple(paper_levels.get(f) for f in others)   # the paper's other settings
    arms = (at(ref, "paper"), at(ref, "alt"))

    primary = _primary(claim, table_of(claim.primary), records, factors, arms, ref in matched)
    if ref not in matched:
        setting = ", ".join(f"{f}={lvl}" for f, lvl in zip(others, ref))
        verdict, reason = "not tested", f"no runs at the paper's other settings ({setting}) with both levels"
    else:
        verdict, reason = _untestable(primary)
    cell_of = lambda r: _cell(r, factors)  # noqa: E731
    result = {"claim": claim, "paper_label": lv["paper"], "alt_label": lv["alt"], "reference": dict(zip(others, ref)),
              "verdict": verdict, "reason": reason, "primary": primary, "n_cells": len(matched),
              "arms": arms, "plateau": plateau_of(arms[0], claim.plateau_margin) if describe else None,
              "plateau_alt": plateau_of(arms[1], claim.plateau_margin) if describe else None,
              "sensitivity": divergence.sensitivity(records, cell_of, arms, claim.primary)
              if verdict is None and describe else None, "fragile": False,
              **_average(table_of(claim.primary), [(at(m, "paper"), at(m, "alt")) for m in matched], primary,
                         describe)}
    result["secondaries"] = _secondaries(claim, table_of, records, factors, arms, ref in matched)
    return result


def _decide(results, plateau_of):
    """The verdicts of the claims a test can be made for: Holm over their primary p (one family per
    claims file and set of runs), then each one's rule; the same for each divergence sensitivity
    analysis, with that analysis's p in the claim's place in the family. Notes last (they read the verdict)."""
    family = [r for r in results if r["verdict"] is None]
    ps = [r["primary"]["p"] for r in family]
    adjusted = model.holm(ps)[0]
    for i, (res, p_adj) in enumerate(zip(family, adjusted)):
        if res["plateau"] is None and p_adj < model.ALPHA and (res["primary"]["effect"] > 0) != (res["primary"]["expected"] > 0):
            res["plateau"], res["plateau_alt"] = (plateau_of(arm, res["claim"].plateau_margin) for arm in res["arms"])
        res["primary"].update(p_holm=p_adj, family=len(family))
        res["verdict"], res["reason"] = _verdict(res["primary"]["effect"], p_adj, res)
        for est in (res["sensitivity"] or {}).values():
            if est["n"] < MIN_SEEDS or not math.isfinite(est["p"]):
                est.update(p_holm=math.nan, verdict="not tested")
                continue
            est["p_holm"] = model.holm(ps[:i] + [est["p"]] + ps[i + 1:])[0][i]
            est["verdict"] = _verdict(est["effect"], est["p_holm"], res)[0]
        res["fragile"] = any(e["verdict"] != res["verdict"] for e in (res["sensitivity"] or {}).values())
    for res in results:
        res["primary"].setdefault("p_holm", math.nan)
        res["primary"].setdefault("family", len(family))
        res["notes"] = _disagreements(res)


def _estimate(metric, table, records, factors, arms, alpha):
    """The simple effect alt − paper between the two arm cells, at level 1 - alpha; None without data.

    ``table``: the metric's (per-seed table, censored runs). Paired over the seeds both arms ran when
    there are MIN_SEEDS of them, else Welch's t between the arms' seeds; no interval below MIN_SEEDS."""
    if METRICS[metric].kind == "binary":
        flags = [[(str(r.get("seed")), r["values"].get(metric)) for r in records if _cell(r, factors) == arm]
                 for arm in arms]
        flags = [[(s, v) for s, v in f if v is not None and math.isfinite(v)] for f in flags]
        seeds = [len({str(r.get("seed")) for r in records if _cell(r, factors) == arm
                      and math.isfinite(r["values"].get(metric, math.nan))}) for arm in arms]
        if not flags[0] or not flags[1]:
            return None
        est = model.two_proportions(flags[1], flags[0], alpha)
        if min(seeds) < MIN_SEEDS:
            est.update(lo=math.nan, hi=math.nan, p=math.nan)
        return {**est, "n_paper": seeds[0], "n_alt": seeds[1], "censored": 0,
                "test": f"share of runs: Newcombe interval, {est['flag_test']}"}
    tab, censored = table
    if arms[0] not in tab or arms[1] not in tab:
        return None
    paper, alt = tab[arms[0]], tab[arms[1]]
    shared = set(paper) & set(alt)
    if len(shared) >= MIN_SEEDS or (shared and min(len(paper), len(alt)) < MIN_SEEDS):
        est = model.paired(tab, {arms[1]: 1.0, arms[0]: -1.0}, alpha)
    elif min(len(paper), len(alt)) >= MIN_SEEDS:
        est = model.welch(list(alt.values()), list(paper.values()), alpha)
    else:
        est = {"effect": float(sum(alt.values()) / len(alt) - sum(paper.values()) / len(paper)), "df": 0,
               "alpha": alpha, "test": "difference of means (no seed in both arms)", "n_shared": 0}
    if min(len(paper), len(alt)) < MIN_SEEDS:
        est.update(lo=math.nan, hi=math.nan, p=math.nan)
    scale = "log " if METRICS[metric].kind == "log" else ""
    return {**est, "n_paper": len(paper), "n_alt": len(alt), "censored": censored, "test": f"{scale}{metric}: {est['test']}"}


def _primary(claim, table, records, factors, arms, at_reference):
    metric = claim.primary
    est = _estimate(metric, table, records, factors, arms, model.ALPHA) if at_reference else None
    base = {"metric": metric, "scale": METRICS[metric].kind, "expected": claim.expect[0][1]}
    if est is None:
        return {**base, "effect": math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan, "n_paper": 0,
                "n_alt": 0, "df": 0, "censored": table[1], "test": "", "alpha": model.ALPHA}
    return {**base, **est}


def _untestable(primary):
    """("not tested", why) for a primary no test can be made on, else (None, "")."""
    if not math.isfinite(primary["effect"]):
        return "not tested", f"no {primary['metric']} in one of the two arms"
    if min(primary["n_paper"], primary["n_alt"]) < MIN_SEEDS:
        return "not tested", NEEDS_SEEDS
    if not (math.isfinite(primary["lo"]) and math.isfinite(primary["hi"]) and math.isfinite(primary["p"])):
        return "not tested", "the paired differences do not vary: no interval"
    return None, ""


def _verdict(effect, p_holm, res):
    """Verdict and reason from an effect's sign and its Holm-adjusted p, for claim result ``res``."""
    if not p_holm < model.ALPHA:
        return "inconclusive", f"Holm-adjusted p = {p_holm:.3g} >= {model.ALPHA:g}"
    if (1 if effect > 0 else -1) == res["primary"]["expected"]:
        return "supported", f"Holm-adjusted p = {p_holm:.3g} < {model.ALPHA:g}, on the predicted side"
    cells = (("paper's", res["plateau"]), ("alternative's", res["plateau_alt"]))
    if all(pl["flat"] for _, pl in cells):
        return "contradicted", f"against the prediction (Holm-adjusted p = {p_holm:.3g}), both cells shown flat"
    why = "; ".join(f"the {name} cell is {'not shown flat' if pl['testable'] else 'not testable for a plateau'}"
                    for name, pl in cells if not pl["flat"])
    return "not reproduced at this horizon", f"against the prediction (Holm-adjusted p = {p_holm:.3g}), but {why}"


def _average(table, pairs, primary, interaction=True):
    """The effect averaged over every matched cell (paired over the seeds that ran all of them), and
    the F test of the interaction, on the primary metric. With one matched cell it is the primary."""
    tab, _ = table
    pairs = [(p, a) for p, a in pairs if p in tab and a in tab]
    if not pairs:
        return {"average": None, "interaction": None}
    if len(pairs) == 1:
        return {"average": {**primary, "n_cells": 1}, "interaction": None}
    weights = {}
    for p, a in pairs:
        weights[a] = weights.get(a, 0.0) + 1.0 / len(pairs)
        weights[p] = weights.get(p, 0.0) - 1.0 / len(pairs)
    avg = model.paired(tab, weights)
    if avg["n_shared"] < MIN_SEEDS:
        avg.update(lo=math.nan, hi=math.nan, p=math.nan)
    return {"average": {**avg, "n_cells": len(pairs)}, "interaction": model.interaction(tab, pairs) if interaction else None}


def _secondaries(claim, table_of, records, factors, arms, at_reference):
    rows = []
    for metric, sign in claim.secondaries:
        est = _estimate(metric, table_of(metric), records, factors, arms, model.ALPHA) if at_reference else None
        rows.append({"metric": metric, "expected": sign, "est": est})
    tested = [r for r in rows if r["est"] is not None and math.isfinite(r["est"]["p"])]
    adjusted, rejected, levels = model.holm([r["est"]["p"] for r in tested])
    for r, p_adj, rej, level in zip(tested, adjusted, rejected, levels):
        r["est"] = _estimate(r["metric"], table_of(r["metric"]), records, factors, arms, level)
        r.update(p_holm=p_adj, significant=rej)
    for r in rows:
        r.setdefault("p_holm", math.nan)
        r.setdefault("significant", False)
        est = r["est"]
        if est is None:
            r["reading"] = "no data"
        elif not math.isfinite(est["p"]):
            r["reading"] = f"not tested: {NEEDS_SEEDS}" if min(est["n_paper"], est["n_alt"]) < MIN_SEEDS \
                else "no variance: no interval"
        elif not r["significant"]:
            r["reading"] = "not distinguishable from 0"
        else:
            r["reading"] = "as predicted" if (est["effect"] > 0) == (r["expected"] > 0) else "against the prediction"
    return rows


def _disagreements(result):
    """Where a Holm-significant secondary says something the primary's verdict does not, in words."""
    notes, verdict = [], result["verdict"]
    for r in result["secondaries"]:
        if not r["significant"]:
            continue
        agrees = r["reading"] == "as predicted"
        said = f"{r['metric']} {'supports' if agrees else 'goes against'} the claim (Holm-adjusted p = {r['p_holm']:.3g})"
        if verdict == "supported" and not agrees:
            notes.append(f"{said}, while the primary supports it.")
        elif verdict in ("contradicted", "not reproduced at this horizon") and agrees:
            notes.append(f"{said}, while the primary goes against it.")
        elif verdict not in DECISIVE:
            notes.append(f"{said}; the verdict follows the primary ({result['primary']['metric']}) alone.")
    return notes


def summary_row(result, stratum=""):
    """One claim as the flat dict other tools log (the keys are an interface: see docs/report.md)."""
    p, cl = result["primary"], result["claim"]
    log = p["scale"] == "log"
    ratio = lambda x: math.exp(x) if log and math.isfinite(x) else math.nan  # noqa: E731
    return {"claim": cl.key, "factor": cl.factor, "paper": result["paper_label"], "alt": result["alt_label"],
            "metric": p["metric"], "verdict": result["verdict"], "reason": result["reason"],
            "ratio": ratio(p["effect"]), "ratio_lo": ratio(p["lo"]), "ratio_hi": ratio(p["hi"]),
            "effect": p["effect"], "lo": p["lo"], "hi": p["hi"], "n_seeds": min(p["n_paper"], p["n_alt"]),
            "n_cells": result["n_cells"], "test": p["test"], "stratum": stratum, "p": p["p"],
            "p_holm": p.get("p_holm", math.nan), "fragile": result["fragile"],
            **{f"verdict_{k}": ((result["sensitivity"] or {}).get(k) or {}).get("verdict", "")
               for k, _ in divergence.ANALYSES}}
