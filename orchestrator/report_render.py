"""A report's tables and claims as Markdown, CSV, LaTeX (booktabs) and one self-contained HTML page."""
import base64
import csv
import html
import io
import math

from orchestrator.report_stats import COLUMNS

PAPER_MARK = "†"


def fmt(x, digits=4):
    if isinstance(x, tuple):
        return "–" if not all(math.isfinite(v) for v in x) else f"[{fmt(x[0])}, {fmt(x[1])}]"
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}g}"


def _cell(row, col):
    s = row.stats
    if col == "n":
        return f"{s['n']}" if s["n_fd"] == s["n"] else f"{s['n']} ({s['n_fd']} with FD)"
    if col == "steps_to_fd":
        return "–" if not s["n_reached"] else f"{fmt(s[col])} ({s['n_reached']}/{s['n']})"
    if col in ("diverged", "collapsed"):
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


def latex_table(rows, factors, caption):
    cols = "l" * len(factors) + "r" * len(COLUMNS)
    esc = lambda t: (str(t).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")  # noqa: E731
                     .replace("&", r"\&").replace("#", r"\#").replace("±", r"$\pm$").replace("≤", r"$\le$")
                     .replace("–", "--").replace(PAPER_MARK, r"$^\dagger$"))
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
    w.writerow(["table", "factors", "levels", "paper_default", "n", "n_fd", "fd_mean", "fd_std", "fd_ci_lo", "fd_ci_hi",
                "fd_best", "diverged_rate", "collapsed_rate", "sample_oscillation", "fd_volatility", "steps_to_fd",
                "n_reached", "best_in"])
    for name, factors, rows in tables:
        for r in rows:
            s = r.stats
            w.writerow([name, ";".join(factors), ";".join(f"{f}={r.levels[f]}" for f in factors), int(r.paper),
                        s["n"], s["n_fd"], s["fd_mean"], s["fd_std"], s["fd_ci"][0], s["fd_ci"][1], s["fd_best"],
                        s["diverged"], s["collapsed"], s["sample_oscillation"], s["fd_volatility"], s["steps_to_fd"],
                        s["n_reached"], ";".join(sorted(r.best))])
    return buf.getvalue()


def claims_markdown(results, untested):
    lines = ["| claim | paper vs alternative | metric | expected sign of alt − paper | effect [95 % CI] | "
             "matched cells (runs paper/alt) | verdict |", "|---|---|---|---|---|---|---|"]
    for res in results:
        cl = res["claim"]
        for i, e in enumerate(res["effects"]):
            first = i == 0
            lines.append(f"| {cl.key if first else ''} | {f'{cl.factor}: {cl.paper} vs {cl.alt}' if first else ''} | "
                         f"{e['metric']} | {e['expected']} | {fmt(e['effect'])} {fmt((e['lo'], e['hi']))} | "
                         f"{e['n_cells']} ({e['n_paper']}/{e['n_alt']}) | {e['verdict']} |")
        lines.append(f"| | | **overall** | | | | **{res['verdict']}** |")
    out = "\n".join(lines)
    if untested:
        out += "\n\nNot tested by these runs (no runs differ in that factor alone): " + \
               ", ".join(f"{c.key} ({c.factor}: {c.paper} vs {c.alt})" for c in untested) + "."
    return out


def verdict_lines(results):
    return [f"- **{r['claim'].key}** ({r['claim'].factor} {r['claim'].paper} vs {r['claim'].alt}): {r['verdict']} — "
            f"paper: \"{r['claim'].text}\" ({r['claim'].source}); "
            + "; ".join(f"{e['metric']} {fmt(e['effect'])} {fmt((e['lo'], e['hi']))}" for e in r["effects"])
            for r in results]


# ---- Figures (matplotlib, embedded as PNG) --------------------------------------------------

def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _cell_label(levels):
    return ", ".join(f"{k}={v}" for k, v in levels.items()) or "all runs"


def _mean_band(histories):
    """Steps present in every run's history; mean and min/max across runs at each."""
    import numpy as np

    common = sorted(set.intersection(*[{s for s, _ in h} for h in histories])) if histories else []
    if not common:
        return [], [], [], []
    table = np.array([[dict(h)[s] for s in common] for h in histories], dtype=float)
    return common, np.nanmean(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)


def curve_figure(cells, key, title, ylabel, log=False):
    """One line per cell: the mean over its runs, with a min-max band over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for levels, members in cells:
        hists = [r["history"].get(key if key != "fd" else r["fd_key"]) or [] for r in members]
        hists = [h for h in hists if h]
        steps, mean, lo, hi = _mean_band(hists)
        if not steps:
            continue
        line, = ax.plot(steps, mean, label=_cell_label(levels), lw=1.4)
        if len(hists) > 1:
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.15)
        drawn += 1
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if drawn:
        ax.legend(fontsize=6, loc="best")
    return _png(fig), drawn


def scatter_figure(records, factor, color_by):
    """Final FD against a continuous factor, one colour per level of ``color_by`` (TPE sweeps)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    groups = {}
    for r in records:
        x = r["params"].get(factor)
        try:
            groups.setdefault(r["params"].get(color_by, "?"), []).append((float(x), r["values"]["fd_final"]))
        except (TypeError, ValueError):
            continue
    for lvl, pts in sorted(groups.items()):
        pts = [(x, y if math.isfinite(y) else math.nan) for x, y in pts]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=f"{color_by}={lvl}", s=18)
    if factor == "lr":
        ax.set_xscale("log")
    ax.set_xlabel(factor)
    ax.set_ylabel("final FD")
    ax.set_title(f"final FD against {factor}")
    ax.legend(fontsize=7)
    return _png(fig)


def html_page(title, scale_md, sections, figures, grids):
    """``sections``: [(heading, markdown table)]; ``figures``: [(caption, png b64)];
    ``grids``: [(caption, png b64 or None)]."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
             "th{background:#eee}figure{display:inline-block;margin:6px;vertical-align:top}"
             "figcaption{font-size:11px;max-width:300px}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", _md_to_html(scale_md)]
    for heading, md in sections:
        parts += [f"<h2>{html.escape(heading)}</h2>", _md_to_html(md)]
    parts.append("<h2>Figures</h2>")
    for caption, png in figures:
        parts.append(f"<figure class='plot'><img alt='{html.escape(caption)}' src='data:image/png;base64,{png}'>"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("<h2>Final sample grids</h2>")
    for caption, png in grids:
        body = (f"<img class='grid' alt='{html.escape(caption)}' width='260' src='data:image/png;base64,{png}'>"
                if png else "<p>(no grid logged)</p>")
        parts.append(f"<figure>{body}<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _md_to_html(md):
    """The few Markdown shapes a report uses: tables, bullet lists, paragraphs, **bold**."""
    import re

    def inline(t):
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(t))

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


def file_b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()
