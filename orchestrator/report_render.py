"""A report's tables and claims as Markdown, CSV, LaTeX (booktabs) and one self-contained HTML page."""
import base64
import csv
import html
import io
import math

from orchestrator.report_claims import MIN_SEEDS
from orchestrator.report_data import DESCRIBED, SCALE_PARAMS
from orchestrator.report_model import PLATEAU_MIN_STEPS
from orchestrator.report_stats import COLUMNS, RATES

PAPER_MARK = "†"


def fmt(x, digits=4):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}g}"


def fmt_interval(lo, hi):
    return "–" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{fmt(lo)}, {fmt(hi)}]"


def _cell(row, col):
    s = row.stats
    if col == "n":
        return f"{s['n']}" if s["n_fd"] == s["n"] else f"{s['n']} ({s['n_fd']} with FD)"
    if col == "fd_interval":
        kind, lo, hi = s[col]
        return {"t": fmt_interval(lo, hi), "range": f"range {fmt(lo)}–{fmt(hi)}"}.get(kind, "–")
    if col == "steps_to_fd":
        return "–" if not s["n_reached"] else f"{fmt(s[col])} ({s['n_reached']}/{s['n_timed']})"
    if col in RATES:
        return "–" if not math.isfinite(s[col]) else f"{s[col]:.0%}"
    return fmt(s[col])


def _level_cells(row, factors):
    cells = [str(row.levels[f]) for f in factors]
    if row.paper and cells:
        cells[0] += " " + PAPER_MARK
    return cells


def markdown_table(rows, factors):
    head = list(factors) + [h for _, h, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [f"**{_cell(r, c)}**" if c in r.best else _cell(r, c) for c, _, _ in COLUMNS]
        lines.append("| " + " | ".join(_level_cells(r, factors) + vals) + " |")
    return "\n".join(lines)


def _tex(t):
    return (str(t).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")
            .replace("#", r"\#").replace("±", r"$\pm$").replace("≤", r"$\le$").replace("≥", r"$\ge$")
            .replace("×", r"$\times$").replace("−", "-").replace("–", "--").replace(PAPER_MARK, r"$^\dagger$"))


def latex_table(rows, factors, caption):
    cols = "l" * len(factors) + "r" * len(COLUMNS)
    esc = _tex
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(caption)}}}", rf"\begin{{tabular}}{{{cols}}}",
             r"\toprule", " & ".join(esc(h) for h in list(factors) + [h for _, h, _ in COLUMNS]) + r" \\", r"\midrule"]
    for r in rows:
        vals = [rf"\textbf{{{esc(_cell(r, c))}}}" if c in r.best else esc(_cell(r, c)) for c, _, _ in COLUMNS]
        lines.append(" & ".join([esc(c) for c in _level_cells(r, factors)] + vals) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def csv_rows(tables):
    """Every table's rows as flat CSV: raw numbers, the paper flag and the best-marked columns."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["table", "factors", "levels", "paper_default", "n", "n_fd", "fd_gmean", "fd_interval", "fd_interval_lo",
                "fd_interval_hi", "fd_best", *[f"{k}_rate" for k in RATES], "sample_oscillation", "fd_volatility",
                "steps_to_fd", "n_reached", "n_timed", "best_in"])
    for name, factors, rows in tables:
        for r in rows:
            s = r.stats
            kind, lo, hi = s["fd_interval"]
            w.writerow([name, ";".join(factors), ";".join(f"{f}={r.levels[f]}" for f in factors), int(r.paper),
                        s["n"], s["n_fd"], s["fd_gmean"], kind or "none", lo, hi, s["fd_best"], *[s[k] for k in RATES],
                        s["sample_oscillation"], s["fd_volatility"], s["steps_to_fd"], s["n_reached"], s["n_timed"],
                        ";".join(sorted(r.best))])
    return buf.getvalue()


def runs_csv(records, factors):
    """One row per run: id, seed, status, final step, every factor's and scale's param, every final
    metric (as the report read it: a diverged run's FD is under fd_last_before_divergence)."""
    params = list(factors) + [k for k in SCALE_PARAMS + DESCRIBED if k not in factors]
    values = sorted({k for r in records for k in r["values"]})
    logged = sorted({k for r in records for k in r.get("metrics", {})} - set(values))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["run_id", "seed", "status", "final_step", *params, "fd_key", *values, *logged])
    for r in records:
        w.writerow([r["run_id"], r["seed"], r["status"], r["final_step"], *[r["params"].get(k, "") for k in params],
                    r["fd_key"] or "", *[r["values"].get(k, "") for k in values],
                    *[r.get("metrics", {}).get(k, "") for k in logged]])
    return buf.getvalue()


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
    return f"{res['verdict']}: {res['reason']}" if res["verdict"] == "not tested" else res["verdict"]


def _predicted(sign):
    return "higher" if sign > 0 else "lower"


def claims_markdown(results, untested):
    """The primary effects (the verdicts), the average effects and interactions beside them, the
    Holm-corrected secondaries, disagreements in words, and the claims these runs do not test."""
    lines = ["### Primary metric (the verdict)", "",
             "| claim | paper vs alternative | primary (scale) | predicted, alt vs paper | effect alt − paper [95 % CI] "
             "| ratio alt/paper [95 % CI] | seeds paper/alt | test | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        p = res["primary"]
        lines.append(f"| {_name(res)} | {res['claim'].factor}: {res['paper_label']} vs {res['alt_label']} | "
                     f"{p['metric']} ({p['scale']}) | {_predicted(p['expected'])} | {_effect(p)} | "
                     f"{_ratio(p['effect'], p['lo'], p['hi'], p['scale'])} | {p['n_paper']}/{p['n_alt']} | "
                     f"{p['test'] or '–'} | **{_verdict_text(res)}** |")
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
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(caption)}}}", r"\begin{tabular}{lllrrl}",
             r"\toprule", r"claim & paper vs alternative & primary & effect [95\,\% CI] & ratio alt/paper & verdict \\",
             r"\midrule"]
    for res in results:
        p = res["primary"]
        lines.append(" & ".join(_tex(x) for x in (
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
    """The claims' primary effects at 1/4, 1/2 and all of the runs' horizon (``report_horizons``),
    said to be one set of runs read at three steps, and where a point estimate changes side."""
    if not rows:
        return "No claim is tested by these runs, or no run says at which step it stopped."
    lines = ["The same runs read at 1/4, 1/2 and all of their horizon (the largest final step"
             f"{' of each scale' if any(r['stratum'] for r in rows) else ''}), not independent replications: a "
             "claim's three rows are not three tests. They describe how its effect develops with training; the "
             "verdict of record is the full-horizon one (Claims, above). At each step every run is as it stood then: "
             "its FD is that of its last evaluation at or before the step, a run counts as diverged (censored at the "
             "worst FD observed at that step) only if it had diverged by then, and the plateau test uses the FD "
             "histories up to the step. Metrics measured over a whole run's windows (oscillation, volatility, mode "
             "collapse, skew) are not read at earlier steps.", "",
             "| claim | paper vs alternative | horizon | step | effect alt/paper [95 % CI] | seeds paper/alt | "
             "diverged by then (censored) | paper's cell: plateau | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        size = _ratio(r["effect"], r["lo"], r["hi"], "log") if math.isfinite(r["ratio"]) else _effect(r)
        verdict = f"{r['verdict']}: {r['reason']}" if r["verdict"] == "not tested" else r["verdict"]
        lines.append(f"| {_row_name(r)} | {r['factor']}: {r['paper']} vs {r['alt']} | {r['fraction']} | {r['step']} | "
                     f"{size} | {r['n_paper']}/{r['n_alt']} | {r['censored']} | {r['plateau']} | {verdict} |")
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
    """What the verdicts rest on, in one paragraph: test, scale, seeds, censoring, horizon."""
    if not results:
        return "No claim is tested by these runs."
    tests = sorted({r["primary"]["test"] for r in results if r["primary"]["test"]})
    seeds = sorted({min(r["primary"]["n_paper"], r["primary"]["n_alt"]) for r in results})
    censored = max(r["primary"]["censored"] for r in results)
    horizons, seen = [], set()
    for r in results:
        cell = tuple(sorted({**r["reference"], r["claim"].factor: r["paper_label"]}.items()))
        if cell in seen:
            continue
        seen.add(cell)
        horizons.append(f"{', '.join(f'{k}={v}' for k, v in cell)}{' [' + r['stratum'] + ']' if r.get('stratum') else ''}: "
                        f"{plateau_text(r['plateau'])}")
    return ("Each claim's verdict comes from its primary metric alone, declared in the claims file before the "
            "runs: the simple effect alt − paper with every other factor at the paper's level, on the metric's "
            "analysis scale (log for FD: a difference of log FD is the log of the ratio of geometric means). "
            "The seed is the unit of replication: the grid runs every cell with the same seeds (same init, data "
            "order and noise), so the effect is taken within each seed and tested with a t over seeds "
            "(statsmodels; Welch's t when the arms share no seeds). "
            f"Tests used: {'; '.join(tests) or 'none'}. Seeds per arm: {', '.join(map(str, seeds))}; no verdict "
            f"below {MIN_SEEDS}. Diverged runs have no final FD: they take the worst final FD observed (censored, "
            "tied with the worst finished run, never above it)"
            f"{f'; {censored} run(s) censored' if censored else ''}. *supported*: the 95 % interval excludes 0 on "
            "the predicted side; against it, *contradicted* only when the paper's cell has reached a plateau, else "
            "*not reproduced at this horizon*; *inconclusive*: the interval includes 0. Each claim is its own "
            "test at 5 % (no correction across claims); its secondaries are Holm-corrected.\n\n"
            "Horizon (the paper's cell; plateau test: OLS of log FD on step over the last quarter of training, one "
            "intercept per run, two-sided t test of slope = 0 at 5 %): " + "; ".join(horizons) + ".")


def plateau_text(pl):
    window = f"steps {pl['start']:.0f}–{pl['horizon']:.0f}"
    if not pl["testable"]:
        return (f"plateau not testable at this horizon ({pl['n_steps']} evaluated step(s) in {window} over "
                f"{pl['n_runs']} run(s); the test needs {PLATEAU_MIN_STEPS})")
    state = "plateau reached (slope not distinguishable from 0)" if pl["reached"] else "still moving"
    return (f"log FD slope over {window} {pl['slope']:+.3g} per 1,000 steps [{pl['lo']:+.3g}, {pl['hi']:+.3g}], "
            f"p = {pl['p']:.3g} (df {pl['df']}): {state}")


def html_page(title, scale_md, sections, figures, grids):
    """``sections``: [(heading, markdown, [(caption, png bytes)] shown under it)];
    ``figures``: [(caption, png bytes)]; ``grids``: [(caption, png bytes or None)]. Images travel
    inside the page (base64), so the file is self-contained."""
    def img(caption, png, cls="plot", width=""):
        return (f"<img class='{cls}' alt='{html.escape(caption)}'{width} "
                f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>")

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
             "th{background:#eee}figure{display:inline-block;margin:6px;vertical-align:top}"
             "figcaption{font-size:11px;max-width:300px}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", _md_to_html(scale_md)]
    for heading, md, images in sections:
        parts += [f"<h2>{html.escape(heading)}</h2>"]
        parts += [f"<figure class='plot'>{img(c, png)}<figcaption>{html.escape(c)}</figcaption></figure>"
                  for c, png in images]
        parts.append(_md_to_html(md))
    parts.append("<h2>Figures</h2>")
    for caption, png in figures:
        parts.append(f"<figure class='plot'>{img(caption, png)}<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("<h2>Final sample grids</h2>")
    for caption, png in grids:
        body = img(caption, png, "grid", " width='260'") if png else "<p>(no grid logged)</p>"
        parts.append(f"<figure>{body}<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _md_to_html(md):
    """The few Markdown shapes a report uses: tables, bullet lists, paragraphs, **bold**."""
    import re

    def inline(t):
        bold = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(t))
        return re.sub(r"(?<![*\w])\*([^*]+?)\*(?![*\w])", r"<i>\1</i>", bold)

    out, table, items = [], [], []

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells[0]) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
                       + "</table>")
            table.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        if line.startswith("- "):
            items.append(line[2:])
            continue
        flush()
        if line.startswith("#"):
            out.append(f"<h3>{inline(line.lstrip('#').strip())}</h3>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(out)

