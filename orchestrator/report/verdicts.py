"""A report's claims as text: the primary table with its family (Holm), the average effects, the
secondaries, the plateau of both cells, the divergence sensitivity, in Markdown, LaTeX and CSV; the
verdict lines, the horizons and the method paragraph. The numbers come from ``report.claims``."""
import csv
import io
import math

from orchestrator.report.claims import MIN_SEEDS
from orchestrator.report.divergence import ANALYSES
from orchestrator.report.model import PLATEAU_MIN_STEPS
from orchestrator.report.render import fmt, tex


def _ratio(x, lo, hi, scale):
    if scale != "log" or not math.isfinite(x):
        return "–"
    ci = f" [{math.exp(lo):.3g}, {math.exp(hi):.3g}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"×{math.exp(x):.3g}{ci}"


def _effect(e):
    if not math.isfinite(e["effect"]):
        return "–"
    ci = f" [{e['lo']:+.3g}, {e['hi']:+.3g}]" if math.isfinite(e["lo"]) and math.isfinite(e["hi"]) else " (no interval)"
    return f"{e['effect']:+.3g}{ci}"


def _name(res):
    return res["claim"].key + (f" [{res['stratum']}]" if res.get("stratum") else "")


def _verdict_text(res):
    text = f"{res['verdict']}: {res['reason']}" if res["verdict"] == "not tested" else res["verdict"]
    return text + (", fragile" if res.get("fragile") else "")


def _predicted(sign):
    return "higher" if sign > 0 else "lower"


def claims_markdown(results, untested):
    """The primary effects (the verdicts), the average effects and interactions beside them, the
    Holm-corrected secondaries, disagreements in words, and the claims these runs do not test."""
    lines = ["### Primary metric (the verdict)", "",
             "| claim | paper vs alternative | primary (scale) | predicted, alt vs paper | effect alt − paper [95 % CI] "
             "| ratio alt/paper [95 % CI] | seeds paper/alt | test | p | Holm-adjusted p | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        p = res["primary"]
        lines.append(f"| {_name(res)} | {res['claim'].factor}: {res['paper_label']} vs {res['alt_label']} | "
                     f"{p['metric']} ({p['scale']}) | {_predicted(p['expected'])} | {_effect(p)} | "
                     f"{_ratio(p['effect'], p['lo'], p['hi'], p['scale'])} | {p['n_paper']}/{p['n_alt']} | "
                     f"{p['test'] or '–'} | {fmt(p['p'], 3)} | {fmt(p['p_holm'], 3)} | **{_verdict_text(res)}** |")
    family = max((r["primary"]["family"] for r in results), default=0)
    lines += ["", f"The primary tests form one family of {family} (Holm's step-down, statsmodels `multipletests`): "
              "the verdict reads the adjusted p; the interval is each test's own 95 % interval."]
    lines += ["", *plateau_markdown(results), "", *sensitivity_markdown(results)]
    lines += ["", "### Beside it: the effect averaged over every matched cell, and the interaction", "",
              "| claim | matched cells | average effect [95 % CI] | ratio [95 % CI] | interaction: F test of equal "
              "simple effects |", "|---|---|---|---|---|"]
    for res in results:
        a, i, p = res["average"], res["interaction"], res["primary"]
        inter = (f"F({i['df_num']}, {i['df_den']}) = {i['F']:.3g}, p = {i['p']:.3g}" if i else
                 "– (one matched cell)" if res["n_cells"] == 1 else "– (fewer than 2 shared seeds, or no variance)")
        lines.append(f"| {_name(res)} | {res['n_cells']} | {_effect(a) if a else '–'} | "
                     f"{_ratio(a['effect'], a['lo'], a['hi'], p['scale']) if a else '–'} | {inter} |")
    rows = [(res, r) for res in results for r in res["secondaries"]]
    if rows:
        lines += ["", "### Secondary metrics (Holm step-down within each claim; they never change a verdict)", "",
                  "| claim | secondary | predicted, alt vs paper | effect alt − paper [interval] | interval level | "
                  "Holm-adjusted p | reading |", "|---|---|---|---|---|---|---|"]
        for res, r in rows:
            e = r["est"]
            level = f"{1 - e['alpha']:.1%}" if e and math.isfinite(e["lo"]) else "–"
            lines.append(f"| {_name(res)} | {r['metric']} | {_predicted(r['expected'])} | {_effect(e) if e else '–'} | "
                         f"{level} | {fmt(r['p_holm'], 3)} | {r['reading']} |")
    notes = [f"- **{_name(res)}**: {n}" for res in results for n in res["notes"]]
    if notes:
        lines += ["", "Where the secondaries disagree with the primary:", "", *notes]
    if untested:
        lines += ["", "Not tested by these runs: " + "; ".join(
            f"{c.key} ({c.factor}: {c.paper} vs {c.alt}): {why}" for c, why in untested) + "."]
    return "\n".join(lines)


def claims_latex(results, caption):
    """The primary effects and verdicts as a booktabs table (the same numbers as report.md)."""
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex(caption)}}}", r"\begin{tabular}{lllrrl}",
             r"\toprule", r"claim & paper vs alternative & primary & effect [95\,\% CI] & ratio alt/paper & verdict \\",
             r"\midrule"]
    for res in results:
        p = res["primary"]
        lines.append(" & ".join(tex(x) for x in (
            _name(res), f"{res['claim'].factor}: {res['paper_label']} vs {res['alt_label']}",
            f"{p['metric']} ({p['scale']}), {p['n_paper']}/{p['n_alt']} seeds", _effect(p),
            _ratio(p["effect"], p["lo"], p["hi"], p["scale"]), _verdict_text(res))) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def verdict_lines(results):
    out = []
    for res in results:
        p, cl = res["primary"], res["claim"]
        size = _ratio(p["effect"], p["lo"], p["hi"], p["scale"])
        size = f"{p['metric']} {size} alt/paper" if size != "–" else f"{p['metric']} {_effect(p)}"
        out.append(f"- **{_name(res)}** ({cl.factor} {res['paper_label']} vs {res['alt_label']}): {_verdict_text(res)}"
                   f" — {size} ({p['n_paper']}/{p['n_alt']} seeds); paper: \"{cl.quote}\" (section {cl.section})")
    return out


def horizons_markdown(rows):
    """The claims' primary effects at 1/4, 1/2 and all of the runs' horizon (``report.horizons``),
    said to be one set of runs read at three steps, and where a point estimate changes side."""
    if not rows:
        return "No claim is tested by these runs, or no run says at which step it stopped."
    lines = ["The same runs read at 1/4, 1/2 and all of their horizon (the largest final step"
             f"{' of each scale' if any(r['stratum'] for r in rows) else ''}), not independent replications: a "
             "claim's three rows are not three tests. They describe how its effect develops with training; the "
             "verdict of record is the full-horizon one (Claims, above). At each step every run is as it stood then: "
             "its FD is that of its last evaluation at or before the step, a run counts as diverged (censored at the "
             "worst FD observed at that step) only if it had diverged by then, and the plateau test of both cells "
             "uses the FD histories up to the step. Metrics measured over a whole run's windows (oscillation, volatility, mode "
             "collapse, skew) are not read at earlier steps.", "",
             "| claim | paper vs alternative | horizon | step | effect alt/paper [95 % CI] | seeds paper/alt | "
             "diverged by then (censored) | flat: paper's / alternative's cell | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = _ratio(r["effect"], r["lo"], r["hi"], "log") if math.isfinite(r["ratio"]) else _effect(r)
        verdict = f"{r['verdict']}: {r['reason']}" if r["verdict"] == "not tested" else r["verdict"]
        lines.append(f"| {_row_name(r)} | {r['factor']}: {r['paper']} vs {r['alt']} | {r['fraction']} | {r['step']} | "
                     f"{size} | {r['n_paper']}/{r['n_alt']} | {r['censored']} | {r['plateau']} / {r['plateau_alt']} | {verdict}"
                     f"{', fragile' if r.get('fragile') else ''} |")
    flips = {}
    for r in rows:
        if math.isfinite(r["ratio"]) and r["ratio"] != 1.0:
            flips.setdefault(_row_name(r), []).append(r)
    notes = [f"- **{name}**: " + ", ".join(f"×{r['ratio']:.3g} at {r['fraction']} (step {r['step']})" for r in rs)
             for name, rs in flips.items() if len({r["ratio"] > 1 for r in rs}) > 1]
    if notes:
        lines += ["", "Where the estimate changes side with training length (descriptive, not a test):", "", *notes]
    return "\n".join(lines)


def _row_name(row):
    return row["claim"] + (f" [{row['stratum']}]" if row["stratum"] else "")


def method_md(results):
    """What the verdicts rest on, in one paragraph: test, scale, seeds, family, censoring, horizon."""
    if not results:
        return "No claim is tested by these runs."
    tests = sorted({r["primary"]["test"] for r in results if r["primary"]["test"]})
    seeds = sorted({min(r["primary"]["n_paper"], r["primary"]["n_alt"]) for r in results})
    censored = max(r["primary"]["censored"] for r in results)
    margins = sorted({r["claim"].plateau_margin for r in results})
    return ("Each claim's verdict comes from its primary metric alone, declared in the claims file before the "
            "runs: the simple effect alt − paper with every other factor at the paper's level, on the metric's "
            "analysis scale (log for FD: a difference of log FD is the log of the ratio of geometric means). "
            "The seed is the unit of replication: the grid runs every cell with the same seeds (same init, data "
            "order and noise), so the effect is taken within each seed and tested with a t over seeds "
            "(statsmodels; Welch's t when the arms share no seeds). "
            f"Tests used: {'; '.join(tests) or 'none'}. Seeds per arm: {', '.join(map(str, seeds))}; no verdict "
            f"below {MIN_SEEDS}. The claims' primary tests are one family: Holm's step-down, the verdict reads the "
            "adjusted p. Diverged runs have no final FD: they take the worst final FD observed (censored, "
            "tied with the worst finished run, never above it)"
            f"{f'; {censored} run(s) censored' if censored else ''}; beside it, the effect under three other "
            "handlings of divergence, and a verdict that changes under one of them is *fragile*. *supported*: "
            "adjusted p < 0.05 on the predicted side; against it, *contradicted* only when both cells of the "
            "claim are shown flat, else *not reproduced at this horizon*; *inconclusive*: adjusted p >= 0.05. "
            "Secondaries are Holm-corrected within their claim and never change a verdict.\n\n"
            "Horizon: a cell is *flat* when the mean of its runs' slopes of log FD on step over the last quarter of "
            "training (one OLS slope per run, the run the unit) is shown inside "
            f"+-{'/'.join(f'{m:g}' for m in margins)} per 1,000 steps (the claims file's plateau_margin) by two "
            "one-sided t tests at 5 % (its 90 % interval inside the margin).")


def plateau_text(pl):
    """One cell's plateau test in words."""
    window = f"steps {pl['start']:.0f}–{pl['horizon']:.0f}"
    if not pl["testable"]:
        return (f"not testable ({pl['n_steps']} evaluated step(s) in {window} over {pl['n_runs']} run(s); the test "
                f"needs 2 runs with {PLATEAU_MIN_STEPS} steps each)")
    return (f"slope {pl['slope']:+.3g} per 1,000 steps over {window}, 90 % interval [{pl['lo']:+.3g}, {pl['hi']:+.3g}] "
            f"({pl['n_runs']} runs), margin +-{pl['margin']:g}: {'flat' if pl['flat'] else 'not shown flat'}")


def plateau_markdown(results):
    """Both cells of each claim: slope, 90 % interval, margin, TOST p and its power at the margin."""
    lines = ["### Horizon: is each cell flat?", "",
             "| claim | cell | runs | slope of log FD / 1,000 steps (last quarter) | 90 % interval | margin | TOST p "
             "| power to show flat (true slope 0) | flat |", "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for cell, pl in (("paper's", res["plateau"]), ("alternative's", res["plateau_alt"])):
            if not pl["testable"]:
                lines.append(f"| {_name(res)} | {cell} | {pl['n_runs']} | not testable ({pl['n_steps']} step(s) in "
                             f"{pl['start']:.0f}–{pl['horizon']:.0f}) | – | ±{pl['margin']:g} | – | – | no |")
                continue
            lines.append(f"| {_name(res)} | {cell} | {pl['n_runs']} | {pl['slope']:+.3f} | [{pl['lo']:+.3f}, "
                         f"{pl['hi']:+.3f}] | ±{pl['margin']:g} | {fmt(pl['p'], 3)} | {pl['power']:.0%} | "
                         f"{'yes' if pl['flat'] else 'no'} |")
    return lines


def _sens_cell(est, scale):
    if est is None:
        return "–"
    size = _ratio(est["effect"], est["lo"], est["hi"], scale) if scale == "log" else _effect(est)
    return f"{size}, p {fmt(est['p'], 3)} (Holm {fmt(est.get('p_holm', math.nan), 3)}): {est.get('verdict', '–')}"


def sensitivity_markdown(results):
    """The declared divergence handling beside the three others, and which verdicts are fragile."""
    lines = ["### Divergence sensitivity (the declared handling is the primary analysis)", ""]
    rows = [res for res in results if res.get("sensitivity")]
    if not rows:
        return lines + ["No run of a tested claim's two arms diverged: nothing to vary."]
    lines += ["| claim | declared: censored at the worst FD | " + " | ".join(f"({chr(97 + i)}) {label}" for i, (_, label)
                                                                        in enumerate(ANALYSES)) + " | fragile |",
              "|---|---|---|---|---|---|"]
    for res in rows:
        p = res["primary"]
        declared = {**p, "verdict": res["verdict"]}
        cells = [_sens_cell(declared, p["scale"])] + [_sens_cell(res["sensitivity"][k], p["scale"]) for k, _ in ANALYSES]
        lines.append(f"| {_name(res)} | " + " | ".join(cells) + f" | {'**yes**' if res['fragile'] else 'no'} |")
    lines += ["", "(c)'s effect is the median per-seed difference; its p is the signed-rank test's, whose smallest "
              "possible value with n seeds is 2/2^n (0.031 at 6)."]
    return lines


def claims_csv(summary_rows):
    """One row per claim: ``summary_row``'s keys (the interface of docs/report.md, section 10)."""
    buf = io.StringIO()
    if summary_rows:
        w = csv.DictWriter(buf, fieldnames=list(summary_rows[0]))
        w.writeheader()
        w.writerows(summary_rows)
    return buf.getvalue()
