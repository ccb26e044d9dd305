"""A report's tables as Markdown, CSV, LaTeX (booktabs), and one self-contained HTML page; the claims' text is
in ``report.verdicts``."""
import base64
import csv
import html
import io
import math

from orchestrator.report.data import DESCRIBED, SCALE_PARAMS
from orchestrator.report.stats import COLUMNS, RATES

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
        if s.get("n_cells", 1) > 1:
            return f"– (over {s['n_cells']} cells)"
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


def tex(t):
    return (str(t).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")
            .replace("#", r"\#").replace("±", r"$\pm$").replace("≤", r"$\le$").replace("≥", r"$\ge$")
            .replace("×", r"$\times$").replace("−", "-").replace("–", "--").replace(PAPER_MARK, r"$^\dagger$"))


def latex_table(rows, factors, caption):
    cols = "l" * len(factors) + "r" * len(COLUMNS)
    esc = tex
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

