"""Group-sequential claim studies: planned looks, error spending, and the decision at each look.

A study declares its looks (seeds per arm at each: by default 5, 10, 15, 20) and a Lan-DeMets
spending function. At each look the report's own claim test (``report.claims.evaluate_claims``: the
paired t over seeds on log final FD, diverged runs censored as the report does) runs on the seeds so
far; a claim whose two-sided boundary is crossed, on either side, is decided and its alternative arm
stops; the paper's arm runs while any claim is open. A claim still open at the last look is
"inconclusive" (not shown to differ, which is not "shown equal"). No futility stop: a claim runs to its
last look unless decided (a non-binding futility rule would save trials without changing the level;
it is left out so that every stop is a decision).

Spending: O'Brien-Fleming type (``obf``, the default), alpha(t) = 4 (1 − Φ(z_{1−α/4} / √t)) two-sided,
or Pocock type (``pocock``), alpha(t) = α ln(1 + (e − 1) t); t is the information fraction, seeds at
the look over the maximum. OBF-type rather than an anytime-valid confidence sequence: the looks are
few and planned (blocks of seeds), where group-sequential boundaries are far tighter than always-valid
ones; OBF spends almost nothing at the first looks, so the last look keeps nearly the fixed design's
level and power, and a spending function lets a look move (a lost block) without breaking the level.

Boundaries: the z statistics of the looks have the canonical joint normal law, corr(Z_j, Z_k) =
√(t_j / t_k) for j <= k. Each look's critical value c_k solves P(no crossing at looks 1..k) =
1 − alpha(t_k) with scipy's multivariate normal CDF (Genz's method, fixed generator) and brentq.
The paired t at n_k seeds is compared with the boundary's nominal level p_k = 2 (1 − Φ(c_k)): the
claim is decided when its p < p_k. With few seeds the t's tails make this approximate: the suite
measures the real level on the simulated studies ``dcgan-lab power`` uses (tests/test_sequential.py).

Family: the claims of one file share α by Holm-type recycling for group-sequential designs (Maurer &
Bretz 2013): each of the m open claims starts with α/m; a claim decided at a look passes its α in
equal parts to the claims still open, whose boundaries are recomputed with their new α and tested
again at that look.

Interval at the stop: the repeated confidence interval (Jennison & Turnbull), effect ± t_{1−p_k/2, df}
· SE at the look where the claim stopped; the RCIs of all looks cover together with 1 − α_claim, so the
one read at a data-dependent stop keeps its level, unlike the fixed-n interval.
"""
import functools
import math
from dataclasses import dataclass

from trainables.errors import UserError

SPENDING = ("obf", "pocock")
DEFAULT_LOOKS = (5, 10, 15, 20)
ALPHA = 0.05
_MVN_RNG = 20161107   # Genz's integration is randomised: one fixed generator, the same boundaries every time


@dataclass(frozen=True)
class SequentialDesign:
    looks: tuple = DEFAULT_LOOKS   # seeds per arm at each look, increasing; the last is the maximum
    spending: str = "obf"          # Lan-DeMets spending function: obf | pocock
    alpha: float = ALPHA           # family-wise, two-sided

    @property
    def fractions(self):
        return tuple(n / self.looks[-1] for n in self.looks)


def design_from(looks, spending="obf", max_seeds=None, alpha=ALPHA):
    """A checked design; a bad value is one line naming the key (``sequential_looks``,
    ``sequential_spending``, ``seeds``)."""
    looks = tuple(looks)
    if not looks or any(int(n) != n or n < 3 for n in looks):
        raise UserError(f"sequential_looks={','.join(map(str, looks))} is not allowed: whole seed counts >= 3 "
                        "(a claim test needs 3 seeds per arm)")
    if any(b <= a for a, b in zip(looks, looks[1:])):
        raise UserError(f"sequential_looks={','.join(map(str, looks))} is not allowed: increasing seed counts")
    if max_seeds is not None and max_seeds < looks[-1]:
        raise UserError(f"seeds={max_seeds} is not allowed: >= the last look ({looks[-1]} seeds per arm); "
                        f"the looks are {','.join(map(str, looks))}")
    if spending not in SPENDING:
        raise UserError(f"sequential_spending={spending!r} is not allowed: one of {', '.join(SPENDING)}")
    return SequentialDesign(tuple(int(n) for n in looks), spending, alpha)


def spent(spending, t, alpha):
    """Two-sided α spent by information fraction ``t`` (0 < t <= 1)."""
    from scipy.stats import norm

    if spending == "obf":
        return float(4 * norm.sf(norm.isf(alpha / 4) / math.sqrt(t)))
    return float(alpha * math.log(1 + (math.e - 1) * t))


@functools.lru_cache(maxsize=512)
def z_boundaries(fractions, alpha, spending):
    """Two-sided critical values (c_1, ..., c_K) of the z statistics at the information ``fractions``."""
    import numpy as np
    from scipy.optimize import brentq
    from scipy.stats import multivariate_normal, norm

    t = np.asarray(fractions, dtype=float)
    corr = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    out = []
    for k in range(len(t)):
        stay = 1 - spent(spending, t[k], alpha)
        if k == 0:
            out.append(float(norm.isf((1 - stay) / 2)))
            continue
        law = multivariate_normal(mean=np.zeros(k + 1), cov=corr[:k + 1, :k + 1])

        def gap(c, k=k, law=law, stay=stay):
            upper = np.array(out + [c])
            return law.cdf(upper, lower_limit=-upper, rng=np.random.default_rng(_MVN_RNG)) - stay

        out.append(float(brentq(gap, 0.5, 12.0, xtol=1e-6)))
    return tuple(out)


def nominal_levels(design, alpha):
    """The two-sided p below which a claim holding ``alpha`` is decided, at each look."""
    from scipy.stats import norm

    return tuple(float(2 * norm.sf(c)) for c in z_boundaries(design.fractions, round(alpha, 12), design.spending))


def repeated_interval(effect, lo, hi, df, level_p, fixed_alpha=ALPHA):
    """The repeated confidence interval at a look: the fixed-n (1 − fixed_alpha) t interval (lo, hi)
    widened to the boundary's nominal level ``level_p``."""
    from scipy.stats import t as student

    if not (df > 0 and math.isfinite(lo) and math.isfinite(hi)):
        return math.nan, math.nan
    se = (hi - lo) / (2 * student.isf(fixed_alpha / 2, df))
    half = student.isf(level_p / 2, df) * se
    return effect - half, effect + half


def decide_look(k, design, open_alpha, estimates):
    """The claims decided at look ``k`` (0-based), with Holm-type recycling.

    ``open_alpha``: {claim: α it holds} for the claims open before this look (updated in place: the
    decided leave, their α goes in equal parts to those still open); ``estimates``: {claim: dict with
    ``p``}. Returns {claim: nominal level it was decided at}, in the order they were decided."""
    decided = {}
    while True:
        crossed = [(est["p"], c) for c, est in estimates.items() if c in open_alpha and math.isfinite(est["p"])
                   and est["p"] < nominal_levels(design, open_alpha[c])[k]]
        if not crossed:
            return decided
        _, claim = min(crossed)   # the strongest first, as Holm's step-down
        decided[claim] = nominal_levels(design, open_alpha[claim])[k]
        freed = open_alpha.pop(claim)
        for c in open_alpha:
            open_alpha[c] += freed / len(open_alpha)


def trials_spent(outcomes, design):
    """Trials a sequential study spends: per look block, one paper run per seed while any claim is
    open, one alternative run per seed for each claim open at that block. ``outcomes``: {claim: stop
    look index, or None for a claim run to the last look}."""
    trials, prev = 0, 0
    for k, n in enumerate(design.looks):
        open_claims = [c for c, stop in outcomes.items() if stop is None or stop >= k]
        if open_claims:
            trials += (n - prev) * (1 + len(open_claims))
        prev = n
    return trials


def run_looks(records, factors, paper, label, claims, design, seed_order=None, family=None, upto=None):
    """Feed a study's runs to the sequential rule look by look, in ``seed_order`` (default: seeds
    sorted as numbers). Returns (history, outcomes): a row per open claim per look (look, seeds per
    arm, effect, fixed-n interval, p, nominal level, α held, decision, repeated interval) and
    {claim: (stop look index or None, verdict, row at the stop)}. Runs of a decided claim's
    alternative beyond its stop, which a sequential study would not have trained, are never read.
    ``upto``: make only the first looks (a study still running); default all."""
    from orchestrator.report.claims import evaluate_claims

    seeds = list(seed_order or sorted({str(r["seed"]) for r in records}, key=_seed_key))
    upto = len(design.looks) if upto is None else upto
    if len(seeds) < design.looks[upto - 1]:
        raise UserError(f"sequential_looks={','.join(map(str, design.looks))} is not allowed: the runs hold "
                        f"{len(seeds)} seeds, fewer than the last look")
    # The family: the claims these runs' design tests (as the report's Holm family), from all the runs.
    if family is None:
        tested, _ = evaluate_claims(claims, records, factors, paper, label, describe=False)
        family = [res["claim"].key for res in tested]
    keys = list(family)
    if not keys:
        raise UserError("sequential: these runs test no claim of the claims file (no paired design)")
    open_alpha = {c: design.alpha / len(keys) for c in keys}
    history, outcomes = [], {}
    for k, n in enumerate(design.looks[:upto]):
        if not open_alpha:
            break
        so_far = set(seeds[:n])
        results, _ = evaluate_claims(claims, [r for r in records if str(r["seed"]) in so_far], factors, paper, label,
                                     describe=False)
        by_key = {res["claim"].key: res for res in results}
        estimates = {c: by_key[c]["primary"] if c in by_key else {"p": math.nan} for c in open_alpha}
        held = dict(open_alpha)
        decided = decide_look(k, design, open_alpha, estimates)
        for c in held:
            est, res = estimates[c], by_key.get(c)
            level = decided.get(c, nominal_levels(design, held[c])[k])
            rci = repeated_interval(est.get("effect", math.nan), est.get("lo", math.nan), est.get("hi", math.nan),
                                    est.get("df", 0), level)
            verdict = _verdict(est, res) if c in decided else ("inconclusive" if k == len(design.looks) - 1 else "open")
            row = {"look": k + 1, "seeds_per_arm": n, "claim": c, "effect": est.get("effect", math.nan),
                   "lo": est.get("lo", math.nan), "hi": est.get("hi", math.nan), "p": est.get("p", math.nan),
                   "alpha_held": held[c], "boundary_p": level, "rci_lo": rci[0], "rci_hi": rci[1], "decision": verdict}
            history.append(row)
            if verdict != "open":
                outcomes[c] = (k if c in decided else None, verdict, row)
    return history, outcomes


def _verdict(est, res):
    """A decided claim's words: on the predicted side "supported"; against it, the report's own rule
    (both cells shown flat: "contradicted", else "not reproduced at this horizon")."""
    if (est["effect"] > 0) == (est["expected"] > 0):
        return "supported"
    return "contradicted" if res is not None and res["verdict"] == "contradicted" else "not reproduced at this horizon"


def _seed_key(s):
    return (0, int(s), "") if str(s).isdigit() else (1, 0, str(s))


def replay_folders(folders, design, claims="paper"):
    """``run_looks`` on report folders written before (a study's blocks, ``report --from``), the
    seeds in block order (the folders' order, each block's seeds in numeric order). Returns
    (history, outcomes, seed order, fixed design's trials)."""
    from orchestrator.report.data import claim_inputs
    from orchestrator.report.folders import FolderRuns
    from orchestrator.report.power import primary_claims

    source = FolderRuns([str(f) for f in folders])
    claim_list = primary_claims(claims)
    recs, factors, paper, label = claim_inputs(source.runs, claim_list, history=source.history)
    order = []
    for folder in folders:
        seeds = {str(r.data.params.get("seed")) for r in FolderRuns([str(folder)]).runs}
        order += sorted(seeds - set(order), key=_seed_key)
    history, outcomes = run_looks(recs, factors, paper, label, claim_list, design, order)
    fixed = len([r for r in recs if str(r["seed"]) in set(order[:design.looks[-1]])])
    return history, outcomes, order, fixed


def simulate(space, noise, effect, studies, design, seed=0):
    """Sequential studies simulated as ``dcgan-lab power`` simulates fixed ones (``power.simulate_study``
    at the design's maximum seeds, seeds looked at in order). Per study: {claim: decisive verdict?},
    {claim: verdict}, trials spent. The family is the design's tested claims."""
    import numpy as np

    from orchestrator.report import power
    from orchestrator.report.claims import DECISIVE, evaluate_claims
    from orchestrator.report.data import canonical

    factors, points, paper = d = power.design(space, design.looks[-1])
    claims = power.primary_claims()
    label = lambda f, v: canonical(str(v))  # noqa: E731
    order = [str(s) for s in range(design.looks[-1])]
    rng = np.random.default_rng(seed)
    family = None
    out = []
    for _ in range(studies):
        recs = power.simulate_study(rng, d, noise, effect)
        if family is None:
            family = [res["claim"].key for res in evaluate_claims(claims, recs, factors, paper, label, describe=False)[0]]
        _, outcomes = run_looks(recs, factors, paper, label, claims, design, order, family)
        verdicts = {c: v for c, (_, v, _) in outcomes.items()}
        out.append(({c: v in DECISIVE for c, v in verdicts.items()}, verdicts,
                    trials_spent({c: stop for c, (stop, _, _) in outcomes.items()}, design)))
    return out


def history_markdown(history, outcomes, design, trials, fixed):
    """The look history as a Markdown table (ratios alt/paper of geometric-mean FD), each claim's
    stop, and the trials spent against the fixed design's."""
    e = lambda v: f"{math.exp(v):.3g}" if math.isfinite(v) else "–"  # noqa: E731
    lines = [f"Looks at {', '.join(map(str, design.looks))} seeds per arm; Lan-DeMets {design.spending.upper()}-type "
             f"spending, family-wise α = {design.alpha:g} shared by Holm-type recycling over {len(outcomes)} claims. "
             "Effect: the alternative's geometric-mean final FD over the paper's (paired over seeds); interval: "
             "the fixed-n 95 % t interval, and the repeated confidence interval (RCI) valid at any look.", "",
             "| look | seeds per arm | claim | ratio | fixed-n 95 % | p | α held | boundary p | RCI | decision |",
             "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in history:
        lines.append(f"| {r['look']} | {r['seeds_per_arm']} | {r['claim']} | {e(r['effect'])} | [{e(r['lo'])}, {e(r['hi'])}] "
                     f"| {r['p']:.2g} | {r['alpha_held']:.4f} | {r['boundary_p']:.2g} | [{e(r['rci_lo'])}, {e(r['rci_hi'])}] "
                     f"| {r['decision']} |")
    lines += ["", "| claim | stopped at | verdict | ratio at the stop | RCI at the stop |", "| --- | --- | --- | ---: | ---: |"]
    for c, (stop, verdict, row) in outcomes.items():
        at = f"look {stop + 1} ({design.looks[stop]} seeds)" if stop is not None else f"last look ({design.looks[-1]} seeds)"
        lines.append(f"| {c} | {at} | **{verdict}** | {e(row['effect'])} | [{e(row['rci_lo'])}, {e(row['rci_hi'])}] |")
    lines += ["", f"Trials: **{trials}** sequential against {fixed} for the fixed design ({trials / fixed:.0%})."]
    return "\n".join(lines)


def parse_looks(text):
    try:
        return tuple(int(x) for x in str(text).split(","))
    except ValueError:
        raise UserError(f"sequential_looks={text!r} is not allowed: comma-separated whole seed counts, "
                        "e.g. 5,10,15,20") from None
