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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = stage1(trials)
    written, lines = {}, [f"# What the search's {len(rows)} stage-1 trials say", ""]

    def save(key, data):
        path = folder / FILES[key]
        if isinstance(data, bytes):
            path.write_bytes(data)
        elif isinstance(data, str):
            path.write_text(data)
        else:
            data.to_csv(path, index=False)
        written[key] = path

    # Importance of each knob for log final FD.
    table = importance.importance_table(rows, resamples=resamples, n_trees=n_trees, seed=seed, space=space)
    save("importance", table)
    save("importance_md", importance.importance_markdown(table))
    save("importance_png", figures.importance_figure(table))
    top = {f"{e}/{h}": part.loc[part["importance"].idxmax(), "parameter"]
           for (e, h), part in table.groupby(["evaluator", "handling"], sort=False)}
    lines += ["## Importance for log final FD", "", importance.importance_markdown(table)]

    # Partial dependence and the landscape.
    pd_table = landscape.partial_dependence(rows, seed=seed, space=space)
    save("partial_dependence", pd_table)
    save("partial_dependence_png", figures.partial_dependence_figure(pd_table))
    paper = importance.paper_point(space)
    dists = importance.search_distributions(space)
    save("landscape_png", figures.landscape_figure(
        rows, paper, choices=dists["bn_placement"].choices, lr_range=(dists["lr"].low, dists["lr"].high),
        beta1_range=(dists["beta1"].low, dists["beta1"].high)))
    div = landscape.divergence_by_region(rows, space=space)
    save("divergence", div)
    best = landscape.best_trial(rows)
    lines += ["## Landscape", "",
              f"Surrogate (random forest, diverged penalised): out-of-bag R^2 "
              f"{pd_table['surrogate_oob_r2'].iloc[0]:.3f}.",
              "" if best is None else f"Best stage-1 trial: {best['config']} (log FD {best['log_fd']:.3f}).", "",
              _divergence_markdown(div), ""]

    # Best FD against the number of trials, TPE against random search.
    saved = None
    if {"tpe", "random"} <= set(rows["sampler"]):
        searches = budget.equal_budget(rows)
        expected = budget.expected_best_curves(searches, resamples=resamples, seed=seed)
        per_seed = budget.expected_best_curves(searches, per_seed=True, resamples=0)
        so_far = budget.best_so_far_curves(searches)
        saved = budget.trials_saved(searches)
        save("expected_best", pd.concat([expected, per_seed], ignore_index=True))
        save("best_so_far", so_far)
        save("budget_png", figures.budget_figure(expected, so_far, saved))
        n_searches = searches.groupby("sampler")["search_seed"].nunique().to_dict()
        lines += ["## Best FD against the number of trials", "",
                  f"Each search's first {int(expected['n'].max())} trials (the budget every search ran); searches per "
                  f"sampler: {n_searches}. Diverged trials score the worst finite FD.", ""]
        lines += [f"- {s['sentence']}" for s in saved] + [""]
    else:
        lines += ["## Best FD against the number of trials", "",
                  f"Skipped: the stage-1 trials hold samplers {sorted(set(rows['sampler']))}, not tpe and random.", ""]

    # The two-objective front.
    if all(c in rows for c in objectives) and np.isfinite(rows[list(objectives)].astype(float)).all(axis=1).any():
        front = pareto.pareto_front(rows, objectives, space=space)
        save("pareto", front)
        save("pareto_png", figures.pareto_figure(front, objectives))
        lines += ["## Pareto front", "", f"{int(front['on_front'].sum())} of {len(front)} trials with finite "
                  f"{' and '.join(objectives)} are non-dominated (both lower is better).", ""]

    summary = "\n".join(lines)
    save("summary_md", summary)
    return dict(paths=written, top=top, saved=saved, summary=summary,
                best=None if best is None else dict(config=best["config"], log_fd=float(best["log_fd"])))


def _divergence_markdown(div):
    lines = ["| BN | lr | beta1 | trials | diverged | share [95 % Wilson] |", "|---|---|---|---|---|---|"]
    for _, r in div.iterrows():
        share = "" if not r["trials"] else f"{r['share']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]"
        lines.append(f"| {r['bn_placement']} | {r['lr_range']} | {r['beta1_range']} | {r['trials']} | "
                     f"{r['diverged']} | {share} |")
    return "\n".join(lines)
