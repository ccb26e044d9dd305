"""``dcgan-lab power``: how many seeds a claim test needs, from simulated studies; the simulation and
its noise model are in ``orchestrator/report/power.py``."""
import math

from orchestrator.report.power import POOLED_SD, SEED_SD, Noise, claim_power, contrast_spreads, seeds_for_power


def add_subparser(subparsers):
    p = subparsers.add_parser("power", help="seeds per arm a claim test needs, from simulated studies")
    p.add_argument("--space", default="paper-claims-paired", help="the sweep space whose design is simulated")
    p.add_argument("--ratio", type=float, default=1.5, help="the alternative's FD over the paper's (geometric means)")
    p.add_argument("--sd", type=float, default=POOLED_SD, help="within-cell SD of log final FD")
    p.add_argument("--seed-sd", type=float, default=SEED_SD, help="SD of a seed's effect shared by its cells")
    p.add_argument("--target", type=float, default=0.8, help="power wanted")
    p.add_argument("--min-seeds", type=int, default=5, help="fewest seeds per arm considered")
    p.add_argument("--max-seeds", type=int, default=40, help="most seeds per arm considered")
    p.add_argument("--studies", type=int, default=200, help="simulated studies per seed count")
    p.add_argument("--from", dest="runs_csv", default="",
                   help="a report's runs.csv (or its folder): the spread per claim is its paired contrast's SD there")
    p.set_defaults(func=cmd_power)


def cmd_power(args):
    from trainables.errors import UserError

    for key, value, ok, allowed in (
            ("ratio", args.ratio, args.ratio > 1, "> 1"), ("sd", args.sd, args.sd > 0, "> 0"),
            ("seed-sd", args.seed_sd, args.seed_sd >= 0, ">= 0"), ("target", args.target, 0 < args.target < 1, "in (0, 1)"),
            ("min-seeds", args.min_seeds, args.min_seeds >= 3, ">= 3 (a verdict needs 3 seeds per arm)"),
            ("max-seeds", args.max_seeds, args.max_seeds >= args.min_seeds, f">= min-seeds ({args.min_seeds})"),
            ("studies", args.studies, args.studies >= 20, ">= 20")):
        if not ok:
            raise UserError(f"{key}={value} is not allowed: {allowed}")
    if args.runs_csv:
        print(render_from(args, contrast_spreads(args.runs_csv, args.space)))
        return 0
    noise = Noise(sd=args.sd, seed_sd=args.seed_sd)
    rows, chosen = seeds_for_power(args.space, args.ratio, noise, args.target, args.min_seeds, args.max_seeds,
                                   args.studies)
    print(render(args, noise, rows, chosen))
    return 0


def render(args, noise, rows, chosen):
    lines = [f"Power of the claim tests of space {args.space!r}: the alternative's FD x{args.ratio:g} the paper's "
             f"(geometric means), within-cell SD of log FD {noise.sd:g}, seed SD {noise.seed_sd:g}, "
             f"{noise.diverged:.0%} of runs diverged; {args.studies} simulated studies per row (an estimate by simulation; "
             f"MC SE: its Monte-Carlo standard error, studies the unit).", "",
             "| seeds per arm | trials | power | MC SE |", "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {s} | {n} | {p:.1%} | {se:.1%} |" for s, n, p, se in rows]
    lines.append("")
    if chosen is None:
        lines.append(f"No seed count up to {args.max_seeds} reaches {args.target:.0%} power.")
    else:
        lines.append(f"Fewest seeds per arm with power >= {args.target:.0%}: **{chosen}** "
                     f"(`--seeds {chosen}`; at least {args.min_seeds} whatever the simulation says).")
    return "\n".join(lines)


def render_from(args, spreads):
    lines = [f"Power per claim from {args.runs_csv}: the SD over seeds of each claim's paired contrast (log final FD, "
             f"alt − paper within a seed); the alternative's FD x{args.ratio:g} the paper's; simulated through the "
             f"report's rules on space {args.space!r} ({args.studies} studies; Holm over the claims), beside one "
             "paired t at 5 % (statsmodels TTestPower).", "",
             "| claim | seeds there | contrast SD | power at those seeds (MC SE) | one t at 5 % | seeds for "
             f"{args.target:.0%} (one t) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key, n, sd in spreads:
        if not sd > 0:   # one seed, or a contrast without spread: nothing to plan from
            lines.append(f"| {key} | {n} | {sd:.3f} | – | – | – |")
            continue
        power, se = claim_power(args.space, n, args.ratio, sd, args.studies)
        effect = math.log(args.ratio) / sd
        single = t_power(effect, n)
        lines.append(f"| {key} | {n} | {sd:.3f} | {power:.0%} ({se:.1%}) | {single:.0%} | "
                     f"{t_seeds_for(effect, args.target)} |")
    return "\n".join(lines)


def t_power(effect, n, alpha=0.05):
    """Power of one two-sided paired t at ``alpha`` with ``n`` seeds (statsmodels' TTestPower). For
    very large effects statsmodels returns NaN (its lower tail, below 1e-20 there, is NaN in scipy's
    noncentral t); the upper tail alone, from scipy, is then the power."""
    from scipy import stats
    from statsmodels.stats.power import TTestPower

    power = TTestPower().power(effect_size=effect, nobs=n, alpha=alpha)
    if math.isnan(power):
        power = stats.nct.sf(stats.t.ppf(1 - alpha / 2, n - 1), n - 1, effect * math.sqrt(n))
    return float(power)


def t_seeds_for(effect, target, alpha=0.05, most=1000):
    """Fewest seeds (at least 2, the fewest a t test takes) for one paired t at ``alpha`` to reach
    ``target`` power, as text. statsmodels' solver gives the start, checked upward with ``t_power``:
    for large effects the solver answers below 2 seeds or not at all (NaN, with a
    ConvergenceWarning), and there the count goes up from 2."""
    import warnings

    from statsmodels.stats.power import TTestPower

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the solver's ConvergenceWarning: handled below
        need = TTestPower().solve_power(effect_size=effect, power=target, alpha=alpha)
    start = max(2, math.floor(need)) if math.isfinite(need) else 2
    return next((str(n) for n in range(start, most + 1) if t_power(effect, n, alpha) >= target), f"> {most}")
