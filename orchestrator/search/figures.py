"""The search study's figures (matplotlib, Agg), each returned as PNG bytes: importances with their
intervals, partial dependence, the landscape of log FD over lr x beta1 per BN placement, best FD against
the number of trials, and the two-objective Pareto front."""
import numpy as np

from orchestrator.report.figures import png_bytes, pyplot
from orchestrator.search.landscape import best_trial

SAMPLER_COLOURS = {"tpe": "C0", "random": "C1"}
BN_COLOURS = {"paper": "C0", "all": "C2", "none": "C3"}
EVALUATOR_NAMES = {"fanova": "fANOVA", "ped_anova": "PED-ANOVA (top 10 % of trials)"}


def importance_figure(table):
    """One panel per evaluator: a bar per parameter and handling, its bootstrap interval as an error bar."""
    plt = pyplot()
    evaluators = list(dict.fromkeys(table["evaluator"]))
    handlings = list(dict.fromkeys(table["handling"]))
    params = list(dict.fromkeys(table["parameter"]))
    fig, axes = plt.subplots(1, len(evaluators), figsize=(4.2 * len(evaluators), 3.4), squeeze=False, sharey=True)
    width = 0.8 / len(handlings)
    for ax, name in zip(axes[0], evaluators):
        for h, handling in enumerate(handlings):
            part = table[(table["evaluator"] == name) & (table["handling"] == handling)].set_index("parameter")
            part = part.reindex(params)
            x = np.arange(len(params)) + (h - (len(handlings) - 1) / 2) * width
            err = np.vstack([part["importance"] - part["lo"], part["hi"] - part["importance"]])
            ax.bar(x, part["importance"], width, label=f"diverged {handling}", color=f"C{h}", alpha=0.8,
                   yerr=None if np.isnan(err).all() else np.clip(err, 0, None), capsize=3)
        ax.set_xticks(np.arange(len(params)), params)
        ax.set_title(EVALUATOR_NAMES.get(name, name), fontsize=10)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("importance for log FD (sums to 1)")
    axes[0][-1].legend(fontsize=8)
    level = table.attrs.get("level", 0.95)
    fig.suptitle(f"Importance for log final FD, {level:.0%} percentile bootstrap intervals over trials",
                 fontsize=10, y=1.02)
    return png_bytes(fig)


def partial_dependence_figure(pd_table):
    """Two panels (lr, beta1): the surrogate's partial dependence of log FD, one line per BN placement,
    with the 10-90 % spread over the forest's trees."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, param in zip(axes, ("lr", "beta1")):
        for bn, part in pd_table[pd_table["parameter"] == param].groupby("bn_placement", sort=False):
            colour = BN_COLOURS.get(bn)
            ax.plot(part["value"], part["log_fd"], color=colour, label=f"BN {bn}")
            ax.fill_between(part["value"], part["lo"], part["hi"], color=colour, alpha=0.15)
        ax.set_xlabel(param)
        if param == "lr":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("log FD (partial dependence)")
    axes[1].legend(fontsize=8)
    r2 = pd_table["surrogate_oob_r2"].iloc[0]
    fig.suptitle(f"Random-forest surrogate (out-of-bag R$^2$ {r2:.2f}), diverged "
                 f"{pd_table['handling'].iloc[0]}; band: 10-90 % over trees", fontsize=10)
    return png_bytes(fig)


def landscape_figure(trials, paper, choices=("paper", "all", "none"), lr_range=(1e-5, 1e-2), beta1_range=(0, 0.95)):
    """One panel per BN placement: each trial at (lr, beta1) coloured by its log FD (one colour scale for
    all panels), a diverged trial as a black x, the paper's point as a star (filled in its own BN panel,
    hollow at the same lr and beta1 in the others) and the best trial ringed."""
    plt = pyplot()
    finished = np.isfinite(trials["log_fd"].astype(float)) & ~trials["diverged"].astype(bool)
    log_fd = trials.loc[finished, "log_fd"].astype(float)
    vmin, vmax = (log_fd.min(), log_fd.max()) if len(log_fd) else (0.0, 1.0)
    best = best_trial(trials)
    fig, axes = plt.subplots(1, len(choices), figsize=(4.2 * len(choices) + 1, 3.8), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, bn in zip(axes, choices):
        in_panel = (trials["bn_placement"] == bn).to_numpy()
        ok, bad = trials[in_panel & finished.to_numpy()], trials[in_panel & trials["diverged"].astype(bool).to_numpy()]
        points = ax.scatter(ok["lr"], ok["beta1"], c=ok["log_fd"], cmap="viridis", vmin=vmin, vmax=vmax, s=30,
                            edgecolors="k", linewidths=0.3)
        ax.scatter(bad["lr"], bad["beta1"], marker="x", color="k", s=40)
        own = bn == paper["bn_placement"]
        ax.scatter([paper["lr"]], [paper["beta1"]], marker="*", s=260, zorder=4, edgecolors="red", linewidths=1.2,
                   facecolors="red" if own else "none")
        if best is not None and best["bn_placement"] == bn:
            ax.scatter([best["lr"]], [best["beta1"]], marker="o", s=260, facecolors="none", edgecolors="magenta",
                       linewidths=2, zorder=5)
        ax.set_xscale("log")
        ax.set_xlim(lr_range[0] / 1.3, lr_range[1] * 1.3)
        ax.set_ylim(beta1_range[0] - 0.03, beta1_range[1] + 0.03)
        failed = int(in_panel.sum()) - len(ok) - len(bad)
        ax.set_title(f"BN {bn}: {len(ok)} finished, {len(bad)} diverged" + f", {failed} failed" * (failed > 0),
                     fontsize=10)
        ax.set_xlabel("lr")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("beta1")
    fig.legend(handles=_landscape_legend(plt, paper, best), loc="lower center", ncol=5, fontsize=8,
               bbox_to_anchor=(0.45, -0.08), frameon=False)
    fig.colorbar(points, ax=list(axes), label="log FD", fraction=0.03, pad=0.01)
    return png_bytes(fig)


def _landscape_legend(plt, paper, best):
    """Proxy markers for the landscape's shared legend (one legend, below the panels, covering no trial)."""
    from matplotlib.lines import Line2D

    def marker(label, **kw):
        return Line2D([], [], linestyle="none", label=label, **kw)

    handles = [marker("trial (colour: log FD)", marker="o", color="C0", markeredgecolor="k", markersize=6),
               marker("diverged", marker="x", color="k", markersize=7),
               marker(f"paper's point (lr {paper['lr']:g}, beta1 {paper['beta1']:g}, BN {paper['bn_placement']})",
                      marker="*", color="red", markersize=13),
               marker("paper's lr and beta1 under another BN", marker="*", markerfacecolor="none",
                      markeredgecolor="red", markersize=13)]
    if best is not None:
        handles.append(marker(f"best trial (log FD {best['log_fd']:.2f})", marker="o", markerfacecolor="none",
                              markeredgecolor="magenta", markeredgewidth=2, markersize=13))
    return handles


def budget_figure(expected, so_far, saved=()):
    """Two panels: Dodge et al.'s expected best FD against n (pooled over search seeds; band: the
    percentile bootstrap over the pool) and the best so far, the mean over search seeds with its t
    interval; one colour per sampler. ``saved`` (from budget.trials_saved) goes under the title."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    pooled = expected[expected["search_seed"] == -1] if "search_seed" in expected else expected
    for sampler, part in pooled.groupby("sampler"):
        colour = SAMPLER_COLOURS.get(sampler)
        axes[0].plot(part["n"], part["expected_best"], color=colour, label=f"{sampler} (pool {part['pool_size'].iloc[0]})")
        axes[0].fill_between(part["n"], part["lo"], part["hi"], color=colour, alpha=0.2)
    for sampler, part in so_far.groupby("sampler"):
        colour = SAMPLER_COLOURS.get(sampler)
        axes[1].plot(part["n"], part["mean"], color=colour, label=f"{sampler} ({part['n_seeds'].max()} search seeds)")
        axes[1].fill_between(part["n"], part["lo"], part["hi"], color=colour, alpha=0.2)
    axes[0].set_title("expected best of n draws from the pool (Dodge et al. 2019)\n"
                      "band: percentile bootstrap over the pool's trials", fontsize=9)
    axes[1].set_title("best so far, trials in completion order\nmean over search seeds; band: t interval over seeds",
                      fontsize=9)
    axes[0].set_ylabel("FD (lower is better)")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trials n")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if saved:
        fig.suptitle("\n".join(s["sentence"] for s in saved), fontsize=9, y=1.08)
    return png_bytes(fig)


def pareto_figure(front, objectives):
    """The trials on the two objectives (colour: BN placement), the non-dominated ones ringed and joined
    by the front's staircase; the paper's configuration (rows with is_paper) as a red star."""
    plt = pyplot()
    x, y = objectives
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for bn, part in front.groupby("bn_placement", sort=False):
        ax.scatter(part[x], part[y], s=22, color=BN_COLOURS.get(bn), alpha=0.7, label=f"BN {bn}")
    on = front[front["on_front"]].sort_values(x)
    ax.step(on[x], on[y], where="post", color="k", lw=1, alpha=0.7)
    ax.scatter(on[x], on[y], s=90, facecolors="none", edgecolors="k", linewidths=1.3, zorder=3,
               label=f"Pareto front ({len(on)} of {len(front)})")
    if "is_paper" in front and front["is_paper"].astype(bool).any():
        p = front[front["is_paper"].astype(bool)]
        ax.scatter(p[x], p[y], marker="*", s=90, color="red", edgecolors="darkred", linewidths=0.5, zorder=2,
                   label=f"paper's point ({len(p)} trials)")
    ax.set_xlabel(f"{x} (lower is better)")
    ax.set_ylabel(f"{y} (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)

