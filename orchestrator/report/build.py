"""The report (``dcgan-lab report``, ``orchestrator/report_cmd.py``): ablation tables and verdicts on the
paper's claims, from tracked runs or report folders.

Writes ``report.md``, ``tables.csv``, ``claims.csv``, ``tables.tex``, ``report.html``, ``report.json``, ``runs.csv``,
``histories.csv`` and ``forest.png`` to ``--out`` and, for a sweep, logs them as artifacts of its parent run (under
``report/``). The method is in docs/report.md.
"""
import functools
import json
import math
import re
import sys
import tempfile
from pathlib import Path

from orchestrator.report import data, figures, horizons, render
from orchestrator.report import verdicts as verdicts_text
from orchestrator.report.claims import evaluate_claims, summary_row
from orchestrator.report.folders import FolderRuns, histories_csv
from orchestrator.report.stats import group, table
from trainables import store
from trainables.atomic import write_atomic
from trainables.errors import UserError

REPORT_FILES = ("report.md", "tables.csv", "claims.csv", "tables.tex", "report.html", "report.json", "runs.csv",
                "histories.csv", "forest.png", "fd_curves.png")
# and grids/<cell>.png: the final fixed-noise grid of each cell's first run


def default_out(name):
    """./reports/<name>, with the name made a single safe path component."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "report"
    return Path("reports") / safe


def build_report(uri, out, sweep=None, experiment=None, factors=None, fd_threshold=None, claims="paper", pool=False,
                 folders=None):
    """Read the runs, test the claims, write every format to ``out`` and log it to the sweep's parent.

    The runs are a sweep's or an experiment's in the store at ``uri``, or, with ``folders``, those
    of report folders written before (``report.folders``), pooled. Returns the printed summary and
    the numbers: ``claims_summary`` holds one flat dict per claim evaluated (keys in
    docs/report.md). Bad input fails before anything is written."""
    from search_spaces.claims import load_claims

    claim_list = load_claims(claims)
    if folders:
        source = FolderRuns(folders)
        runs, parent, label = source.runs, None, source.label
        history, grid_of = source.history, source.grid
    else:
        runs, parent, label = data.find_runs(uri, sweep=sweep, experiment=experiment)
        history, grid_of = None, functools.partial(_store_grid, uri)
    strata = data.strata(runs, pool)
    factors = data.choose_factors(runs, factors, [c.factor for c in claim_list])
    maps = data.level_maps(runs, factors)
    recs, threshold = data.records(uri, runs, factors, fd_threshold, history=history)
    paper = data.paper_levels(factors, maps)

    # Claims, one analysis per scale, and the same analysis at earlier steps of the runs.
    by_id = {r["run_id"]: r for r in recs}
    label_of = lambda f, v: maps[f](str(v))  # noqa: E731
    results, untested, horizon_rows = [], [], []
    for name, members in strata.items():
        members = [by_id[r.info.run_id] for r in members]
        found, missed = evaluate_claims(claim_list, members, factors, paper, label_of)
        results += [{**r, "stratum": name} for r in found]
        untested += [(c, why + (f" [{name}]" if name else "")) for c, why in missed]
        horizon_rows += horizons.horizon_rows(claim_list, members, factors, paper, label_of, threshold, name)
    summary_rows = [summary_row(r, r["stratum"]) for r in results]

    # Tables (with --pool, the scale is their first column).
    table_factors = factors
    if len(strata) > 1:
        for name, members in strata.items():
            for r in members:
                by_id[r.info.run_id]["levels"]["scale"] = name
        table_factors = ["scale"] + factors
    tables = [("cells", table_factors, table(recs, table_factors, paper))]
    if len(factors) > 1:
        tables += [(f"by {f}", [f], table(recs, [f], paper, table_factors)) for f in factors]

    scale_md = _scale_md(label, data.scale(runs), threshold, recs)
    md_tables = "\n\n".join(f"### Table: {name}\n\n{render.markdown_table(rows, fs)}" for name, fs, rows in tables)
    claims_md = verdicts_text.claims_markdown(results, untested)
    method = verdicts_text.method_md(results)
    verdicts = "\n".join(verdicts_text.verdict_lines(results)) or "No claim is tested by these runs."
    if any(r["verdict"] == "not tested" for r in results):
        verdicts += ("\n\nExploratory: where a claim is not tested, its effect is a point estimate from too few "
                     "seeds, not a verdict. The study that tests the claims (paired seeds, intervals, verdicts): "
                     "`dcgan-lab sweep --preset stability` (add `--dry-run` for its trial count and cost).")
    horizons_md = verdicts_text.horizons_markdown(horizon_rows)
    md = (f"# dcgan-lab report: {label}\n\n{scale_md}\n\n## Ablation tables\n\n{md_tables}\n\n## Claims\n\n{method}"
          f"\n\n{claims_md}\n\n### Verdicts\n\n{verdicts}\n\n## Horizons\n\n{horizons_md}\n")
    forest = figures.forest_figure(summary_rows)
    html, fd_curves, grids = _html(grid_of, label, scale_md, tables, f"{method}\n\n{claims_md}\n\n{verdicts}", horizons_md,
                                   forest, recs, table_factors)

    files = {
        "report.md": md,
        "tables.csv": render.csv_rows(tables),
        "claims.csv": verdicts_text.claims_csv(summary_rows),
        "tables.tex": "\n\n".join([render.latex_table(rows, fs, f"{label}: {name}") for name, fs, rows in tables]
                                    + [verdicts_text.claims_latex(results, f"{label}: claims (method: report.md)")]),
        "report.html": html,
        "report.json": json.dumps(_json(label, data.scale(runs), threshold, tables, results, summary_rows, untested,
                                        horizon_rows), indent=2, default=str),
        "runs.csv": render.runs_csv(recs, factors),
        "histories.csv": histories_csv(recs),
        "forest.png": forest,
        "fd_curves.png": fd_curves,
        **{f"grids/{name}.png": png for name, png in grids.items()},
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out / name, content)
    if parent is not None:
        c = store.client(uri)
        for name in files:
            c.log_artifact(parent.info.run_id, str(out / name), str(Path("report", name).parent))
    summary = f"{render.markdown_table(tables[0][2], table_factors)}\n\n{verdicts}"
    return {"summary": summary, "tables": tables, "claims": results, "claims_summary": summary_rows,
            "horizons": horizon_rows, "untested": untested, "threshold": threshold, "records": recs,
            "files": [str(out / n) for n in files]}


def _scale_md(label, scale, threshold, recs):
    n_div = sum(1 for r in recs if r["values"].get("diverged") == 1.0)
    n_nan = sum(1 for r in recs if not math.isfinite(r["values"].get("fd_final", math.nan)))
    j = lambda v: ", ".join(map(str, v))  # noqa: E731
    return (f"Measured at: data set {j(scale['dataset'])}, {j(scale['image_size'])} px, ngf {j(scale['ngf'])} / "
            f"ndf {j(scale['ndf'])}, batch {j(scale['batch_size'])}, max_steps {j(scale['max_steps'])} "
            f"(final steps {j(scale['final_steps'])}), seeds {j(scale['seeds'])}, FD ({j(scale['fd'])}) on "
            f"{j(scale['eval_n'])} images per evaluation; {scale['runs']} runs ({n_div} diverged, {n_nan} without a "
            f"final FD — all kept and counted in n). Software: "
            + "; ".join(f"{k.replace('_version', '')} {j(v)}" for k, v in scale["software"].items())
            + " (`?`: not recorded by the run).\n\n"
            f"FD≤T uses T = {render.fmt(threshold)}: the first evaluated step at or below it, averaged over the runs "
            f"that reach it (in brackets: reached / runs whose FD history is known). {render.PAPER_MARK} marks the "
            f"paper's setting (the config's defaults), **bold** the best value of a column. Final FD: geometric mean "
            f"over the runs with one; its interval is a 95 % t interval on log FD for n ≥ 3 seeds of one cell, the two "
            f"values as a range for n = 2, none for n = 1, and none for a row over several cells (\"by\" tables: their "
            f"runs are different settings, not replicates). Diverged, mode collapse, attribute skew: share of runs.")


def _store_grid(uri, run_id, _name):
    """The PNG bytes of the run's last fixed-noise grid in the store, None when it logged none."""
    with tempfile.TemporaryDirectory() as tmp:
        path = data.final_grid(uri, run_id, Path(tmp) / run_id)
        return Path(path).read_bytes() if path else None


def _html(grid_of, label, scale_md, tables, claims_md, horizons_md, forest, recs, factors):
    cells = [(dict(zip(factors, key)), members) for key, members in group(recs, factors).items()]
    figs = [("final FD per cell, one point per seed", figures.seed_points_figure(cells))]
    fd_curves = None
    for key, title, ylabel, log in (("fd", "FD against step (mean, band: min-max over seeds; x: a run diverged)", "FD", True),
                                    ("loss_d", "D loss", "loss_d", False), ("loss_g", "G loss", "loss_g", False),
                                    ("d_real", "D(x)", "D(x)", False), ("d_fake", "D(G(z))", "D(G(z))", False)):
        figs.append((f"{title} per cell", figures.curve_figure(cells, key, title, ylabel, log)))
        fd_curves = fd_curves or figs[-1][1]
    for f in ("lr", "beta1"):
        if f in factors and any(str(row.levels[f]).startswith("[") for row in tables[0][2]):
            figs.append((f"final FD against {f}, coloured by bn_placement",
                         figures.scatter_figure(recs, f, "bn_placement")))
    grids, files = [], {}   # the grids travel inside the HTML, and as files
    for levels, members in cells:
        name = _file_name(levels, members[0]["seed"])
        png = grid_of(members[0]["run_id"], name)
        grids.append((f"{figures.cell_label(levels)} (run {members[0]['run_id'][:8]}, seed {members[0]['seed']})", png))
        if png:
            files[name] = png
    sections = [(f"Table: {name}", render.markdown_table(rows, fs), []) for name, fs, rows in tables]
    sections.append(("Claims", claims_md, [("forest plot: primary effect per claim", forest)]))
    sections.append(("Horizons", horizons_md, []))
    return render.html_page(f"dcgan-lab report: {label}", scale_md, sections, figs, grids), fd_curves, files


def _file_name(levels, seed):
    """``lr-0.0002_beta1-0.5_bn_placement-paper_seed-0``: a cell's grid file name, one safe component."""
    name = "_".join(f"{k}-{v}" for k, v in levels.items()) or "all"
    return re.sub(r"[^A-Za-z0-9.-]+", "_", f"{name}_seed-{seed}").strip("._")


def json_ready(x):
    """JSON-ready: NaN and inf as null, tuples as lists, claims by key."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (tuple, list)):
        return [json_ready(v) for v in x]
    if isinstance(x, dict):
        return {k: json_ready(v) for k, v in x.items()}
    if hasattr(x, "key") and hasattr(x, "factor"):
        return {"key": x.key, "factor": x.factor, "paper": x.paper, "alt": x.alt, "primary": x.primary,
                "expect": dict(x.expect), "quote": x.quote, "section": x.section}
    return x


def _json(label, scale, threshold, tables, results, summary_rows, untested, horizon_rows):
    return json_ready({
        "label": label, "scale": scale, "fd_threshold": threshold,
        "tables": [{"name": n, "factors": fs, "rows": [{"levels": r.levels, "paper": r.paper, "best": sorted(r.best),
                                                         **r.stats} for r in rows]} for n, fs, rows in tables],
        "claims_summary": summary_rows, "claims": results, "horizons": horizon_rows,
        "untested": [{"claim": c.key, "why": why} for c, why in untested],
    })


def print_sweep_report(uri, parent_run_id, out):
    """At the end of a sweep: the Markdown table and the claim verdicts (never fails the sweep)."""
    try:
        result = build_report(uri, out, sweep=parent_run_id)
    except UserError as err:
        print(f"[dcgan-lab] no report: {err}", file=sys.stderr)
        return None
    print("\n" + result["summary"] + f"\n\nreport: {out}/report.html (also on the parent run, under report/)")
    return result
