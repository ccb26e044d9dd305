"""What a search study found, in its report folder (report.md, runs.csv, the figures) and on its MLflow
parent run (the same files under report/, and a one-paragraph description). It reads the store
alone, so it works on a study still running or stopped part-way: the report then says how far each
stage got.

Stage 2's comparisons go through the claim machinery (``report.claims.evaluate_claims``): one
"claim" per stage-2 configuration, that its final FD is lower than the paper's configuration's,
paired within the fresh seeds on log FD, the k comparisons one Holm family. The winner's curse is
the stage-1 winner's FD at the stage-1 horizon, from its one stage-1 run, beside the same step of its
fresh-seed runs (their FD histories), each against the paper's configuration read the same way.
"""
import math
from pathlib import Path

from orchestrator.search.settings import STAGE2, experiments, main_search, objective_names
from orchestrator.search.table import NO_FD, PAPER, STAGE_TAG, config_id, study_runs, trials_table
from trainables import store
from trainables.atomic import write_atomic

REPORT_FILE = "report.md"
MIN_ANALYSED = 5   # stage-1 trials before importance and the landscape are estimated at all
RUNS_FILE = "runs.csv"


def write_report(uri, parent, out, s, state, log_to_parent=False):
    """Write the report folder ``out`` from the runs under ``parent``; returns the report's Markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {**state, "max_steps": store.client(uri).get_run(parent).data.params.get("max_steps")}
    runs, running = study_runs(uri, parent)
    df = trials_table(runs)
    df.to_csv(out / RUNS_FILE, index=False)
    plan = state.get("stage2")
    s2 = [r for r in runs if r.data.tags.get(STAGE_TAG) == "2"]
    results, untested, recs = stage2_claims(uri, s2, plan) if plan and s2 else ([], [], [])
    curse = winners_curse(df, plan, recs, s)
    analysed, analysis = analysis_sections(df, out, s)
    sections = [status_md(df, s, state, running), stage1_md(df, s), stage2_md(results, untested, plan, df),
                curse["md"], *analysed]
    md = f"# Search study {state.get('name', Path(out).parent.name)}\n\n" + "\n\n".join(sections) + "\n"
    write_atomic(out / REPORT_FILE, md)
    if log_to_parent:
        c = store.client(uri)
        c.log_artifacts(parent, str(out), "report")
        from trainables.run_note import NOTE_TAG

        c.set_tag(parent, NOTE_TAG, found_paragraph(df, s, results, curse, state, analysis))
    return md


def main_trials(df, s):
    return df[(df.stage == 1) & (df.sampler == s.sampler) & (df.search_seed == s.search_seed)]


def status_md(df, s, state, running):
    """How far each experiment got: a partial study says so first."""
    done = set(state.get("done", []))
    plan = state.get("stage2")
    lines = ["## Where the study stands", "", "| experiment | trials done | planned | state |", "|---|---:|---:|---|"]
    for tag, sampler, seed, budget in experiments(s):
        if tag == STAGE2:
            n = int((df.stage == 2).sum())
            planned = len(plan["configs"]) * len(plan["seeds"]) if plan else (s.top_k + 1) * s.fresh_seeds
        else:
            n = int(((df.stage == 1) & (df.sampler == sampler) & (df.search_seed == seed)).sum())
            planned = budget
        what = "done" if tag in done else ("part-way" if n else "not started")
        lines.append(f"| {tag} ({'stage 2' if tag == STAGE2 else f'stage 1, {sampler}, search seed {seed}'}) | "
                     f"{n} | {planned} | {what} |")
    partial = any(tag not in done for tag, *_ in experiments(s))
    lines += ["", ("**Partial study**: the experiments not marked done above are incomplete; every number below "
                   "is from the trials finished so far." if partial else "All experiments are done.")
              + (f" {running} trial run(s) still running are left out." if running else "")]
    horizons = sorted({int(h) for h in df.horizon.dropna()}) if len(df) else []
    stage2_steps = state.get("max_steps", "the config's max_steps")
    lines += ["", f"Horizons: stage 1 trains each trial for {s.stage1_steps or stage2_steps} steps, stage 2 for "
                  f"{stage2_steps} (horizons of the runs so far: {', '.join(map(str, horizons)) or '–'}). "
                  f"Stage-1 training seeds: {sorted(set(df[df.stage == 1].seed)) or '–'}; stage-2 seeds: "
                  f"{plan['seeds'] if plan else '– (not planned yet)'}."]
    return "\n".join(lines)


def stage1_md(df, s, n_rows=10):
    """The main search's best trials, the paper's point among them, and how many diverged."""
    t = main_trials(df, s)
    if t.empty:
        return "## Stage 1\n\nNo stage-1 trial has finished yet."
    ok = t[t.fd.notna()].sort_values("fd")
    paper = t[t.is_paper]
    rank = (f"rank {int((ok.fd < paper.fd.iloc[0]).sum()) + 1} of {len(ok)} with an FD"
            if not paper.empty and paper.fd.notna().iloc[0] else "no final FD")
    lines = [f"## Stage 1: {s.sampler} search (search seed {s.search_seed})", "",
             f"{len(t)} trials: {int((t.status == 'finished').sum())} finished, {int(t.diverged.sum())} diverged, "
             f"{int((t.status == 'failed').sum())} failed, {int((t.status == NO_FD).sum())} finished without a final FD "
             f"(left out). The paper's point (lr 2e-4, beta1 0.5, bn paper): "
             f"FD {paper.fd.iloc[0]:.4g}, {rank}." if not paper.empty else
             f"{len(t)} trials; the paper's point has not finished yet.", "",
             f"The {min(n_rows, len(ok))} best by final FD (one training seed each):", "",
             "| rank | trial | lr | beta1 | bn_placement | final FD |", "|---:|---:|---:|---:|---|---:|"]
    for i, row in enumerate(ok.head(n_rows).itertuples(), 1):
        mark = " (paper)" if row.is_paper else ""
        lines.append(f"| {i} | {row.trial} | {row.lr:.3g} | {row.beta1:.3f} | {row.bn_placement}{mark} | {row.fd:.4g} |")
    return "\n".join(lines)


def stage2_claims(uri, runs, plan):
    """(results, untested, records): each stage-2 configuration against the paper's, one Holm family."""
    from orchestrator.report.claims import evaluate_claims
    from orchestrator.report.data import records
    from search_spaces.claims import Claim

    recs, _ = records(uri, runs, [])
    for rec, r in zip(recs, runs):
        p = r.data.params
        rec["levels"] = {"config": config_id(p["lr"], p["beta1"], p["bn_placement"])}
    paper = config_id(**PAPER)
    claims = [Claim(f"top{i}", "config", paper, cid, "fd_final", (("fd_final", -1),),
                    f"stage-1 rank {i} of the search", "stage 1")
              for i, cid in enumerate(plan["top_k"], 1) if cid != paper]
    results, untested = evaluate_claims(claims, recs, ["config"], {"config": paper}, lambda f, v: v)
    return results, untested, recs


def stage2_md(results, untested, plan, df):
    from orchestrator.report.verdicts import claims_markdown

    if not plan:
        return "## Stage 2\n\nNot planned yet: it starts when the main search is done."
    s2 = df[df.stage == 2]
    lines = ["## Stage 2: the top configurations against the paper's, on fresh seeds", "",
             f"Configurations: {', '.join(plan['top_k'])} (stage-1 ranks 1..{len(plan['top_k'])}) and the paper's "
             f"{config_id(**PAPER)}; seeds {plan['seeds']}, none used in stage 1 ({plan['stage1_seeds']}).", "",
             "| configuration | runs | diverged | geometric-mean final FD |", "|---|---:|---:|---:|"]
    for cid in plan["configs"]:
        g = s2[s2.config == cid]
        gm = math.exp(g.log_fd.mean()) if g.log_fd.notna().any() else math.nan
        lines.append(f"| {cid} | {len(g)} | {int(g.diverged.sum())} | {gm:.4g} |")
    lines += ["", "Each configuration against the paper's (the claim machinery: alternative = the configuration, "
                  "predicted lower final FD; paired by seed on log FD; Holm over the comparisons):", ""]
    lines.append(claims_markdown(results, untested) if results or untested else "No stage-2 run has finished yet.")
    return "\n".join(lines)


def fd_at(rec, step):
    """A run's FD at its last evaluation at or before ``step`` (NaN if none, or it diverged by then)."""
    hist = [(s, v) for s, v in rec["history"].get(rec["fd_key"], []) if s <= step]
    if not hist or (rec["status"] == "diverged" and rec["final_step"] <= step):
        return math.nan
    return hist[-1][1]


def winners_curse(df, plan, recs, s):
    """The stage-1 winner's FD from its one stage-1 trial beside its fresh seeds' FD at the same step."""
    import numpy as np
    from scipy import stats

    head = "## The winner's curse, measured"
    if not plan or not plan["top_k"]:
        return {"md": f"{head}\n\nStage 2 has not started: nothing to measure yet.", "ratio1": math.nan}
    winner, paper = plan["top_k"][0], config_id(**PAPER)
    s1 = main_trials(df, s)
    step = int(s1.horizon.max()) if s1.horizon.notna().any() else 0

    def fresh(cid):   # {seed: log FD at ``step``}
        return {r["seed"]: math.log(v) for r in recs if r["levels"]["config"] == cid for v in [fd_at(r, step)] if v > 0}

    w1, p1 = (s1[s1.config == c].fd.min() for c in (winner, paper))
    wf, pf = fresh(winner), fresh(paper)
    lines = [head, "", f"The stage-1 winner {winner}: its stage-1 FD (one trial, step {step}) beside its FD on the "
                       f"fresh seeds at the same step (stage 2's FD histories), and the same for the paper's point.", "",
             "| configuration | stage-1 FD (one seed) | fresh-seed FD at the same step: geometric mean [95 % CI] | seeds |",
             "|---|---:|---:|---:|"]
    for cid, one, logs in ((winner, w1, wf), (paper, p1, pf)):
        v = np.array(list(logs.values()))
        if len(v) >= 2:
            lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
            gm = f"{math.exp(v.mean()):.4g} [{math.exp(lo):.4g}, {math.exp(hi):.4g}]"
        else:
            gm = f"{math.exp(v.mean()):.4g}" if len(v) else "–"
        lines.append(f"| {cid} | {one:.4g} | {gm} | {len(v)} |")
    ratio1 = w1 / p1 if p1 and math.isfinite(p1) else math.nan
    shared = sorted(set(wf) & set(pf))
    ratio2 = math.exp(np.mean([wf[s] - pf[s] for s in shared])) if shared else math.nan
    lines += ["", f"Winner / paper at step {step}: ×{ratio1:.3g} in stage 1 (one seed each), ×{ratio2:.3g} on "
                  f"{len(shared)} fresh seed(s) (geometric mean of the paired ratios). The gap between the two is the "
                  "optimism of picking the best of many one-seed trials."]
    return {"md": "\n".join(lines), "ratio1": ratio1, "ratio2": ratio2, "winner": winner, "step": step}


def analysis_sections(df, out, s):
    """The analysis of the trials table (``orchestrator.search.analysis``: importance with bootstrap
    intervals, partial dependence, the landscape, divergence by region, the budget curve, the Pareto
    front) into ``out/analysis/``; (sections, its result dict or None)."""
    from orchestrator.search.analysis import write_analysis

    rows = df[(df.stage == 1) & df.status.isin(["finished", "diverged"])].assign(
        in_curve=lambda t: t.trial < (s.curve_budget or s.budget))   # the budget curve's trials: the same number per search
    if len(rows) < MIN_ANALYSED:
        return [f"## Analysis\n\nNot yet: {len(rows)} stage-1 trials have finished; it needs {MIN_ANALYSED}."], None
    try:
        names = objective_names(s)
        pareto = {"objectives": ("log_fd", names[1])} if len(names) > 1 else {}
        result = write_analysis(rows, out / "analysis", resamples=s.resamples, space=s.space, **pareto)
    except Exception as err:  # noqa: BLE001 - a partial study's report must still be written; say why it is not
        return [f"## Analysis\n\nNot computed on these {len(rows)} trials: {type(err).__name__}: {err}"], None
    figures = ", ".join(f"[{p.name}](analysis/{p.name})" for k, p in result["paths"].items() if p.suffix == ".png")
    pooled = ("Measured on every finished or diverged stage-1 trial, all samplers and search seeds pooled (random "
              "search's trials cover the space the surrogate needs); the budget curve on each search's first trials, "
              "the same number for every search.")
    return [result["summary"].replace("# ", "## Analysis: ", 1).replace("\n", f"\n\n{pooled}\n", 1)
            + f"\n\nFigures: {figures}."], result


def found_paragraph(df, s, results, curse, state, analysis=None):
    """The parent run's description: what the study found, in one paragraph."""
    t = main_trials(df, s)
    if t.empty:
        return f"Search study {state.get('name', '')}: no stage-1 trial has finished yet."
    ok = t[t.fd.notna()].sort_values("fd")
    paper = t[t.is_paper]
    best = ok.iloc[0] if len(ok) else None
    parts = [f"Search study ({s.sampler}, {len(t)} of {s.budget} stage-1 trials"
             f"{'' if main_search(s) in state.get('done', []) else ', partial'}): "
             f"{int(t.diverged.sum())} diverged."]
    if best is not None:
        parts.append(f"Best stage-1 configuration {best.config} (final FD {best.fd:.4g}).")
    if not paper.empty and paper.fd.notna().iloc[0]:
        parts.append(f"The paper's point: FD {paper.fd.iloc[0]:.4g}, rank {int((ok.fd < paper.fd.iloc[0]).sum()) + 1} "
                     f"of {len(ok)}.")
    for res in results:
        p = res["primary"]
        ratio = math.exp(p["effect"]) if math.isfinite(p["effect"]) else math.nan
        parts.append(f"Stage 2, {res['alt_label']} vs the paper's on {min(p['n_paper'], p['n_alt'])} fresh seeds: "
                     f"×{ratio:.3g} final FD, {res['verdict']}.")
    if analysis and analysis.get("top"):
        key, knob = next(iter(analysis["top"].items()))
        parts.append(f"Most important knob for log final FD ({key}): {knob}.")
    for saved in (analysis or {}).get("saved") or []:
        parts.append(saved["sentence"])
    if math.isfinite(curse.get("ratio1", math.nan)):
        parts.append(f"Winner's curse: the winner's FD over the paper's was ×{curse['ratio1']:.3g} in stage 1 and "
                     f"×{curse['ratio2']:.3g} on fresh seeds at the same step.")
    return " ".join(parts) + " Full report: report/report.md in this run's artifacts."
