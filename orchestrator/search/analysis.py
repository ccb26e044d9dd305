"""Everything measured from a search's trials table, written to one folder: importance, partial dependence,
the landscape and divergence by region, best FD against the number of trials and, when the table holds
the stability metric, the Pareto front. ``write_analysis`` is what the search's report calls."""
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.search import budget, figures, importance, landscape, pareto

FILES = {
    "importance": "importance.csv",
    "importance_md": "importance.md",
    "importance_png": "importance.png",
    "partial_dependence": "partial_dependence.csv",
    "partial_dependence_png": "partial_dependence.png",
    "landscape_png": "landscape.png",
    "divergence": "divergence_by_region.csv",
    "expected_best": "expected_best.csv",
    "best_so_far": "best_so_far.csv",
    "budget_png": "budget.png",
    "pareto": "pareto.csv",
    "pareto_png": "pareto.png",
    "summary_md": "analysis.md",
}


def stage1(trials):
    """The search's own trials (stage 1): what importance, landscape and the budget curves are measured on."""
    return trials[trials["stage"] == 1] if "stage" in trials else trials


def write_analysis(trials, folder, *, resamples=200, n_trees=32, seed=0, objectives=pareto.OBJECTIVES,
                   space=importance.SPACE):
    """Measure the stage-1 trials of ``trials`` (all samplers and search seeds pooled for importance and
    the landscape: random search's trials cover the space the forest needs) and write FILES into
    ``folder``. The budget curves need both samplers, the Pareto front the ``objectives`` columns; each is
    skipped, and said, otherwise. Returns a dict: the paths written (FILES keys), ``top`` (the most
    important parameter per evaluator and handling), ``saved`` (budget.trials_saved, or None), ``best``
    (the best trial's config and log FD) and ``summary`` (the markdown written to analysis.md)."""
    out = _Folder(folder)
    rows = stage1(trials)
    lines = [f"# What the search's {len(rows)} stage-1 trials say", ""]
    finished = np.isfinite(rows["log_fd"].astype(float)) & ~rows["diverged"].astype(bool)
    top, best, saved = {}, None, None
    if not finished.any():
        lines.append(f"Nothing to measure yet: none of the {len(rows)} stage-1 trials finished with an FD.")
    else:
        top = _importance_section(rows, out, lines, resamples=resamples, n_trees=n_trees, seed=seed, space=space)
        best = _landscape_section(rows, out, lines, seed=seed, space=space)
        saved = _budget_section(rows, out, lines, resamples=resamples, seed=seed)
        _pareto_section(rows, out, lines, objectives=objectives, space=space)
    summary = "\n".join(lines)
    out.save("summary_md", summary)
    return dict(paths=out.paths, top=top, saved=saved, summary=summary,
                best=None if best is None else dict(config=best["config"], log_fd=float(best["log_fd"])))


class _Folder:
    """The analysis folder: ``save(key, data)`` writes bytes, text or a DataFrame (CSV) under FILES[key]."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paths = {}

    def save(self, key, data):
        path = self.folder / FILES[key]
        if isinstance(data, bytes):
            path.write_bytes(data)
        elif isinstance(data, str):
            path.write_text(data)
        else:
            data.to_csv(path, index=False)
        self.paths[key] = path


def _importance_section(rows, out, lines, *, resamples, n_trees, seed, space):
    """Importance of each knob for log final FD; returns the top parameter per evaluator and handling."""
    table = importance.importance_table(rows, resamples=resamples, n_trees=n_trees, seed=seed, space=space)
    md = importance.importance_markdown(table)
    out.save("importance", table)
    out.save("importance_md", md)
    out.save("importance_png", figures.importance_figure(table))
    lines += ["## Importance for log final FD", "", md]
    return {f"{e}/{h}": part.loc[part["importance"].idxmax(), "parameter"]
            for (e, h), part in table.groupby(["evaluator", "handling"], sort=False)}


def _landscape_section(rows, out, lines, *, seed, space):
    """Partial dependence, the landscape figure and divergence by region; returns the best trial."""
    pd_table = landscape.partial_dependence(rows, seed=seed, space=space)
    out.save("partial_dependence", pd_table)
    out.save("partial_dependence_png", figures.partial_dependence_figure(pd_table))
    dists = importance.search_distributions(space)
    out.save("landscape_png", figures.landscape_figure(
        rows, importance.paper_point(space), choices=dists["bn_placement"].choices,
        lr_range=(dists["lr"].low, dists["lr"].high), beta1_range=(dists["beta1"].low, dists["beta1"].high)))
    div = landscape.divergence_by_region(rows, space=space)
    out.save("divergence", div)
    best = landscape.best_trial(rows)
    lines += ["## Landscape", "",
              f"Surrogate (random forest, diverged penalised): out-of-bag R^2 {pd_table['surrogate_oob_r2'].iloc[0]:.3f}.",
              f"Best stage-1 trial: {best['config']} (log FD {best['log_fd']:.3f}).", "",
              "Share of trials that diverged by region (Wilson intervals; the unit is trials):", "",
              _divergence_markdown(div), ""]
    return best


def _budget_section(rows, out, lines, *, resamples, seed):
    """Best FD against the number of trials, TPE against random search; returns budget.trials_saved."""
    lines += ["## Best FD against the number of trials", ""]
    if not {"tpe", "random"} <= set(rows["sampler"]):
        lines += [f"Skipped: the stage-1 trials hold samplers {sorted(set(rows['sampler']))}, not tpe and random.", ""]
        return None
    searches = budget.equal_budget(rows)
    expected = budget.expected_best_curves(searches, resamples=resamples, seed=seed)
    per_seed = budget.expected_best_curves(searches, per_seed=True, resamples=0)
    so_far = budget.best_so_far_curves(searches)
    saved = budget.trials_saved(searches)
    out.save("expected_best", pd.concat([expected, per_seed], ignore_index=True))
    out.save("best_so_far", so_far)
    out.save("budget_png", figures.budget_figure(expected, so_far, saved))
    n_searches = searches.groupby("sampler")["search_seed"].nunique().to_dict()
    lines += [f"Each search's first {int(expected['n'].max())} trials (the budget every search ran); searches per "
              f"sampler: {n_searches}. Diverged trials score the worst finite FD.", ""]
    lines += [f"- {s['sentence']}" for s in saved] + [""]
    return saved


def _pareto_section(rows, out, lines, *, objectives, space):
    """The two-objective front, when the table holds both objectives."""
    lines += ["## Pareto front", ""]
    if not (all(c in rows for c in objectives)
            and np.isfinite(rows[list(objectives)].astype(float)).all(axis=1).any()):
        lines += [f"Skipped: no stage-1 trial has finite {' and '.join(objectives)}.", ""]
        return
    front = pareto.pareto_front(rows, objectives, space=space)
    out.save("pareto", front)
    out.save("pareto_png", figures.pareto_figure(front, objectives))
    lines += [f"{int(front['on_front'].sum())} of {len(front)} trials with finite {' and '.join(objectives)} are "
              "non-dominated (both lower is better).", ""]


def _divergence_markdown(div):
    lines = ["| BN | lr | beta1 | trials | diverged | share [95 % Wilson] |", "|---|---|---|---|---|---|"]
    for _, r in div.iterrows():
        share = "" if not r["trials"] else f"{r['share']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]"
        lines.append(f"| {r['bn_placement']} | {r['lr_range']} | {r['beta1_range']} | {r['trials']} | "
                     f"{r['diverged']} | {share} |")
    return "\n".join(lines)
