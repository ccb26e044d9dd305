"""``dcgan-lab report``: ablation tables and the paper's claims, with numbers, from tracked runs.

Writes ``report.md``, ``tables.csv``, ``tables.tex``, ``report.html`` and ``report.json`` to
``--out`` and, for a sweep, logs them as artifacts of its parent run (under ``report/``).
"""
import json
import math
import re
import sys
import tempfile
from pathlib import Path

from orchestrator import report_render as render
from orchestrator import tracking
from orchestrator.errors import UserError

REPORT_FILES = ("report.md", "tables.csv", "tables.tex", "report.html", "report.json")


def add_subparser(subparsers):
    p = subparsers.add_parser("report", help="ablation tables and claim verdicts from MLflow runs")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="every run of this MLflow experiment (sweep parents excluded)")
    which.add_argument("--sweep", help="the child runs of this sweep's parent run id")
    p.add_argument("--out", default="", help="output folder (default: ./reports/<sweep id or experiment>)")
    p.add_argument("--factors", default="", help="comma-separated params to tabulate (default: those that vary)")
    p.add_argument("--fd-threshold", type=float, default=None,
                   help="FD for the steps-to-threshold column (default: the median final FD of the runs)")
    p.add_argument("--mlflow-uri", default="", help="tracking URI (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    p.set_defaults(func=cmd_report)


def cmd_report(args):
    factors = [f.strip() for f in args.factors.split(",") if f.strip()] or None
    if args.fd_threshold is not None and not (math.isfinite(args.fd_threshold) and args.fd_threshold > 0):
        raise UserError(f"fd-threshold={args.fd_threshold!r} must be a positive number")
    uri = tracking.tracking_uri(args.mlflow_uri)
    if not uri.startswith("sqlite:///"):
        tracking.check_reachable(uri)
    out = Path(args.out) if args.out else default_out(args.sweep or args.experiment)
    result = build_report(uri, out, sweep=args.sweep, experiment=args.experiment, factors=factors,
                          fd_threshold=args.fd_threshold)
    print(result["summary"])
    print(f"\nreport written to {out}/ ({', '.join(REPORT_FILES)})")
    return 0


def default_out(name):
    """./reports/<name>, with the name made a single safe path component."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "report"
    return Path("reports") / safe


def build_report(uri, out, sweep=None, experiment=None, factors=None, fd_threshold=None):
    """Read the runs, write every format to ``out``, log to the sweep's parent; returns the summary
    (Markdown table + claim verdicts) and the numbers."""
    from orchestrator import report_data as data
    from orchestrator import report_stats as stats

    runs, parent, label = data.find_runs(uri, sweep=sweep, experiment=experiment)
    factors = data.choose_factors(runs, factors)
    recs, threshold = data.records(uri, runs, factors, fd_threshold)
    paper = data.paper_levels(factors, runs)
    scale = data.scale(runs)

    tables = [("cells", factors, stats.table(recs, factors, paper))]
    if len(factors) > 1:
        tables += [(f"by {f}", [f], stats.table(recs, [f], paper)) for f in factors]
    claims, untested = [], []
    for claim in stats.CLAIMS:
        mapped = _claim_in_labels(claim, paper, runs, factors)
        res = stats.evaluate_claim(mapped, recs, factors) if mapped else None
        if res is None:
            if claim.factor in factors or claim.factor in data.PAPER_LEVELS:
                untested.append(claim)
        else:
            claims.append(res)

    scale_md = _scale_md(label, scale, threshold, recs)
    md_tables = "\n\n".join(f"### Table: {name}\n\n{render_md(rows, fs)}" for name, fs, rows in tables)
    claims_md = _claims_md(claims, untested)
    md = f"# dcgan-lab report: {label}\n\n{scale_md}\n\n## Ablation tables\n\n{md_tables}\n\n{claims_md}\n"

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "report.md": md,
        "tables.csv": render.csv_rows(tables),
        "tables.tex": "\n\n".join(render.latex_table(rows, fs, f"{label}: {name}") for name, fs, rows in tables),
        "report.html": _html(uri, label, scale_md, tables, claims_md, recs, factors),
        "report.json": json.dumps(_json(label, scale, threshold, tables, claims, untested), indent=2, default=str),
    }
    for name, text in files.items():
        _write_atomic(out / name, text)
    if parent is not None:
        c = tracking.client(uri)
        for name in files:
            c.log_artifact(parent.info.run_id, str(out / name), "report")
    summary = f"{render_md(tables[0][2], factors)}\n\n" + "\n".join(render.verdict_lines(claims) or
                                                                    ["No claim is tested by these runs."])
    return {"summary": summary, "tables": tables, "claims": claims, "untested": untested, "threshold": threshold,
            "records": recs, "files": [str(out / n) for n in files]}


def render_md(rows, factors):
    return render.markdown_table(rows, factors)


def _claim_in_labels(claim, paper, runs, factors):
    """The claim with its two levels written as the table labels them (binned factors too)."""
    import dataclasses

    from orchestrator.report_data import level_maps

    if claim.factor not in factors:
        return None
    to_label = level_maps(runs, [claim.factor])[claim.factor]
    return dataclasses.replace(claim, paper=to_label(claim.paper), alt=to_label(claim.alt))


def _scale_md(label, scale, threshold, recs):
    n_div = sum(1 for r in recs if r["values"].get("diverged") == 1.0)
    n_nan = sum(1 for r in recs if not math.isfinite(r["values"].get("fd_final", math.nan)))
    j = lambda v: ", ".join(map(str, v))  # noqa: E731
    return (f"Measured at: data set {j(scale['dataset'])}, {j(scale['image_size'])} px, ngf {j(scale['ngf'])} / "
            f"ndf {j(scale['ndf'])}, batch {j(scale['batch_size'])}, max_steps {j(scale['max_steps'])} "
            f"(final steps {j(scale['final_steps'])}), seeds {j(scale['seeds'])}, FD on {j(scale['eval_n'])} images "
            f"per evaluation; {scale['runs']} runs ({n_div} diverged, {n_nan} without a final FD — all kept and "
            f"counted in n).\n\n"
            f"FD≤T uses T = {render.fmt(threshold)}: the first evaluated step at or below it, averaged over the runs "
            f"that reach it (reached/n in brackets). {render.PAPER_MARK} marks the paper's setting, **bold** the "
            f"best value of a column. 95 % CIs: percentile bootstrap over seeds (runs) of the mean, "
            f"2000 resamples. Diverged and collapsed: share of runs.")


def _claims_md(claims, untested):
    return ("## Claims\n\nEach effect is alternative − paper, from runs that differ in that factor alone (matched "
            "cells: every other tabulated factor equal), averaged over the matched cells; 95 % CI from a two-level "
            "bootstrap (cells, then seeds within each). A metric's verdict is *supported* when its CI excludes 0 "
            "in the direction the paper predicts, *contradicted* when it excludes 0 the other way, else "
            "*inconclusive*; a claim is supported when at least one metric supports it and none contradicts it "
            "(and the mirror for contradicted).\n\n" + render.claims_markdown(claims, untested)
            + "\n\n### Verdicts\n\n" + "\n".join(render.verdict_lines(claims) or ["No claim is tested by these runs."]))


def _html(uri, label, scale_md, tables, claims_md, recs, factors):
    from orchestrator import report_data as data
    from orchestrator import report_stats as stats

    cells = [(dict(zip(factors, key)), members) for key, members in stats.group(recs, factors).items()]
    figures = []
    for key, title, ylabel, log in (("fd", "FD against step (mean, band: min-max over seeds)", "FD", True),
                                    ("loss_d", "D loss", "loss_d", False), ("loss_g", "G loss", "loss_g", False),
                                    ("d_real", "D(x)", "D(x)", False), ("d_fake", "D(G(z))", "D(G(z))", False)):
        png, drawn = render.curve_figure(cells, key, title, ylabel, log)
        figures.append((f"{title} per cell", png))
    for f in ("lr", "beta1"):
        if f in factors and any(str(lvl).startswith("[") for row in tables[0][2] for lvl in [row.levels[f]]):
            figures.append((f"final FD against {f}, coloured by bn_placement",
                            render.scatter_figure(recs, f, "bn_placement")))
    grids = []
    with tempfile.TemporaryDirectory() as tmp:  # the grids travel inside the HTML
        for levels, members in cells:
            path = data.final_grid(uri, members[0]["run_id"], Path(tmp) / members[0]["run_id"])
            grids.append((f"{render._cell_label(levels)} (run {members[0]['run_id'][:8]}, seed {members[0]['seed']})",
                          render.file_b64(path) if path else None))
    sections = [(f"Table: {name}", render.markdown_table(rows, fs)) for name, fs, rows in tables]
    sections.append(("Claims", claims_md.split("\n", 2)[-1]))
    return render.html_page(f"dcgan-lab report: {label}", scale_md, sections, figures, grids)


def _json(label, scale, threshold, tables, claims, untested):
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, tuple):
            return [clean(v) for v in x]
        return x

    return {
        "label": label, "scale": scale, "fd_threshold": clean(threshold),
        "tables": [{"name": n, "factors": fs, "rows": [{"levels": r.levels, "paper": r.paper, "best": sorted(r.best),
                                                         **{k: clean(v) for k, v in r.stats.items()}} for r in rows]}
                   for n, fs, rows in tables],
        "claims": [{"claim": c["claim"].key, "factor": c["claim"].factor, "paper": c["claim"].paper,
                    "alt": c["claim"].alt, "text": c["claim"].text, "verdict": c["verdict"],
                    "effects": [{k: clean(v) for k, v in e.items()} for e in c["effects"]]} for c in claims],
        "untested": [c.key for c in untested],
    }


def _write_atomic(path, text):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def print_sweep_report(uri, parent_run_id, out):
    """At the end of a sweep: the Markdown table and the claim verdicts (never fails the sweep)."""
    try:
        result = build_report(uri, out, sweep=parent_run_id)
    except UserError as err:
        print(f"[dcgan-lab] no report: {err}", file=sys.stderr)
        return None
    print("\n" + result["summary"] + f"\n\nreport: {out}/report.html (also on the parent run, under report/)")
    return result
