"""A report's figures (matplotlib, Agg), each returned as PNG bytes: curves per cell, final FD per
cell with one point per seed, final FD against a continuous factor, and the claims' forest plot."""
import io
import math


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig):
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def _plain_ticks(axis):
    """A log axis labelled 0.5, 1, 2 rather than 5 x 10^-1."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_tick_params(which="minor", labelsize=6)


def cell_label(levels):
    return ", ".join(f"{k}={v}" for k, v in levels.items()) or "all runs"


def _mean_band(histories):
    """Every step some run's history holds; at each, the mean and min/max over the runs that hold it
    (a run that diverged and stopped leaves the mean after its last point: the curve goes on with
    the runs still training, and ``curve_figure`` marks where it stopped)."""
    import numpy as np

    steps = sorted(set().union(*[{s for s, _ in h} for h in histories])) if histories else []
    if not steps:
        return [], [], [], []
    table = np.array([[dict(h).get(s, np.nan) for s in steps] for h in histories], dtype=float)
    return steps, np.nanmean(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)


def _history(run, key):
    """A run's history of ``key`` ("fd": the run's own FD key), [] when it logged none."""
    return run["history"].get(key if key != "fd" else run["fd_key"]) or []


def curve_histories(members, key):
    """The histories of ``key`` ("fd": each run's FD key) that a cell's curve is drawn from. A failed
    run (an error, or a sweep interrupted while it ran) is left out while the cell has another: its
    short history would cut the cell's curve to the steps it reached. A diverged run stays in."""
    kept = [r for r in members if r.get("status") != "failed"] or members
    hists = [_history(r, key) for r in kept]
    return [h for h in hists if h]


def curve_figure(cells, key, title, ylabel, log=False):
    """One line per cell: the mean over its runs, with a min-max band over seeds; an x marks the last
    point of a run that diverged (after it, the line and band are those of the cell's other runs)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for levels, members in cells:
        hists = curve_histories(members, key)
        steps, mean, lo, hi = _mean_band(hists)
        if not steps:
            continue
        line, = ax.plot(steps, mean, label=cell_label(levels), lw=1.4)
        if len(hists) > 1:
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.15)
        for r in members:
            h = _history(r, key)
            if r.get("values", {}).get("diverged") == 1.0 and h:
                ax.scatter([h[-1][0]], [h[-1][1]], marker="x", color=line.get_color(), s=40, zorder=3)
        drawn += 1
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if drawn:
        ax.legend(fontsize=6, loc="best")
    return png_bytes(fig)


def seed_points_figure(cells):
    """Final FD of every run, one column per cell, one point per seed (log scale); a diverged run
    is drawn as an x at the top: it has no final FD and ranks below every finished run."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(cells) + 2), 4))
    finals = [r["values"]["fd_final"] for _, members in cells for r in members
              if math.isfinite(r["values"].get("fd_final", math.nan))]
    top = max(finals) * 1.5 if finals else 1.0
    for x, (_levels, members) in enumerate(cells):
        for j, r in enumerate(members):
            fd = r["values"].get("fd_final", math.nan)
            dx = (j - (len(members) - 1) / 2) * 0.08
            if r["values"].get("diverged") == 1.0:
                ax.scatter([x + dx], [top], marker="x", color="crimson", s=30)
            elif math.isfinite(fd):
                ax.scatter([x + dx], [fd], color="C0", s=18)
                ax.annotate(str(r.get("seed", "")), (x + dx, fd), fontsize=5, xytext=(2, 2), textcoords="offset points")
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([cell_label(lv) for lv, _ in cells], rotation=35, ha="right", fontsize=6)
    ax.set_yscale("log")
    _plain_ticks(ax.yaxis)
    ax.set_ylabel("final FD (log scale)")
    ax.set_title("final FD per cell, one point per seed (x: diverged)")
    return png_bytes(fig)


def scatter_figure(records, factor, color_by):
    """Final FD against a continuous factor, one colour per level of ``color_by`` (TPE sweeps)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    groups = {}
    for r in records:
        try:
            groups.setdefault(r["params"].get(color_by, "?"), []).append((float(r["params"].get(factor)),
                                                                          r["values"]["fd_final"]))
        except (TypeError, ValueError):
            continue
    for lvl, pts in sorted(groups.items()):
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=f"{color_by}={lvl}", s=18)
    if factor == "lr":
        ax.set_xscale("log")
    ax.set_xlabel(factor)
    ax.set_ylabel("final FD")
    ax.set_title(f"final FD against {factor}")
    ax.legend(fontsize=7)
    return png_bytes(fig)


def forest_figure(summary):
    """One row per claim: its primary effect and 95 % interval, with the null line. Log-scale
    primaries are drawn as ratios alt/paper on a log axis (null at 1)."""
    plt = pyplot()
    rows = list(reversed(summary))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    if not rows:
        ax.text(0.5, 0.5, "no claim is tested by these runs", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return png_bytes(fig)
    ratio = all(math.isfinite(r["ratio"]) or not math.isfinite(r["effect"]) for r in rows) and \
        any(math.isfinite(r["ratio"]) for r in rows)
    for y, r in enumerate(rows):
        x, lo, hi = (r["ratio"], r["ratio_lo"], r["ratio_hi"]) if ratio else (r["effect"], r["lo"], r["hi"])
        if not math.isfinite(x):
            continue
        colour = {"supported": "C2", "contradicted": "C3", "not reproduced at this horizon": "C1"}.get(r["verdict"], "C7")
        if math.isfinite(lo) and math.isfinite(hi):
            ax.plot([lo, hi], [y, y], color=colour, lw=2)
        ax.scatter([x], [y], color=colour, zorder=3, marker="o" if math.isfinite(lo) else "D")
    ax.axvline(1.0 if ratio else 0.0, color="k", lw=0.8, ls="--")
    if ratio:
        ax.set_xscale("log")
        _plain_ticks(ax.xaxis)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['claim']}{' [' + r['stratum'] + ']' if r.get('stratum') else ''}: {r['verdict']}"
                        for r in rows], fontsize=7)
    ax.set_xlabel("FD ratio alt / paper (geometric means; log axis)" if ratio else "effect alt − paper")
    ax.set_title("primary effect per claim, 95 % t interval (diamond: no interval)", fontsize=9)
    return png_bytes(fig)
