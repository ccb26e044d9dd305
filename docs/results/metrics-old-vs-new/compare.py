"""Old (before issue #14) and new stability metrics of the same finished runs, side by side.

    python docs/results/metrics-old-vs-new/compare.py RAY_RESULTS_DIR > table.md

Reads each trial's last checkpoint (``state.pt``: the config and the run's histories). The new
definitions are ``trainables.metrics.stability`` as shipped. The old ones are re-implemented
below from their text at commit e63caa8 (docs/metrics.md of that commit), on the histories the
old schedule had: one point per FD evaluation every 300 steps (steps 300, 600, 900, 1,200), the
fixed-noise grid and the losses at those steps. Old grids were floats in [-1, 1]; the checkpoint
keeps them as uint8 pixels, mapped back as p / 127.5 - 1 (a rounding error of at most 1/255).
"""
import math
import sys
from pathlib import Path

import torch

from trainables.checkpoints import CHECKPOINT_FILE, load_safe
from trainables.metrics.coverage import N_COMBOS
from trainables.metrics.stability import stability_metrics

OLD_EVERY = 300
CELL = ("lr", "beta1", "bn_placement", "seed")


def old_metrics(h, every=OLD_EVERY):
    """The five old metrics, each on the old schedule's points (definitions of commit e63caa8)."""
    ev, lo, sa = h["evals"], h["losses"], h["samples"]
    at = [i for i, s in enumerate(ev["step"]) if s % every == 0]
    fd = [ev["fd"][i] for i in at]
    steps = [ev["step"][i] for i in at]
    loss_at = {s: i for i, s in enumerate(lo["step"])}
    loss_g = [lo["loss_g"][loss_at[s]] for s in steps]
    loss_d = [lo["loss_d"][loss_at[s]] for s in steps]
    d_fake = [lo["d_fake"][loss_at[s]] for s in steps]
    sample_at = {s: i for i, s in enumerate(sa["step"])}
    grids = [sa["pixels"][sample_at[s]].to(torch.float32) / 127.5 - 1 for s in steps]
    late = grids[len(grids) // 2:]
    osc = float(torch.stack([(b - a).abs().mean() for a, b in zip(late, late[1:])]).mean()) if len(late) > 1 else math.nan
    tail = torch.tensor(fd[-5:], dtype=torch.float64)
    vol = float(tail.std(unbiased=False) / tail.mean())
    lg = torch.tensor(loss_g, dtype=torch.float64)
    loss_osc = float(lg.unfold(0, min(10, len(lg)), 1).std(dim=1, unbiased=False).mean())
    finite = all(math.isfinite(v) for v in loss_g + loss_d)
    d_wins = len(d_fake) >= 5 and all(v < 0.01 for v in d_fake[-5:]) and loss_g[-1] > loss_g[-5]
    vr, cov = ev["variance_ratio"][at[-1]], ev["coverage_modes"][at[-1]]
    return {"points": len(steps), "sample_oscillation": osc, "fd_volatility": vol, "loss_oscillation": loss_osc,
            "diverged": float(not finite or d_wins),
            "collapsed": float(vr < 0.1 or (not math.isnan(cov) and cov < 0.5 * N_COMBOS))}


def new_metrics(h, end):
    ev = dict(h["evals"])
    if all(math.isnan(v) for v in ev["coverage_modes"]):
        ev["coverage_modes"] = None
    samples = {k: list(v) for k, v in h["samples"].items()}
    metrics, _ = stability_metrics(h["losses"], samples, ev, end)
    return metrics


def last_checkpoints(root):
    """{cell: state} for each trial's highest-step checkpoint under ``root``."""
    best = {}
    for path in Path(root).rglob(CHECKPOINT_FILE):
        state = load_safe(path)
        if "run_history" not in state:
            continue
        cell = tuple(state["config"][k] for k in CELL)
        if cell not in best or state["step"] > best[cell]["step"]:
            best[cell] = state
    return dict(sorted(best.items()))


def table(root):
    rows = ["| lr | beta1 | BN | seed | sample osc. old | per-sample new | global new | pixels new | "
            "FD vol. old | FD vol. new | loss osc. old | loss osc. new | diverged old / new | "
            "collapsed old / mode collapse new / attribute skew new |",
            "|" + " --- |" * 14]
    runs = last_checkpoints(root)
    for cell, state in runs.items():
        h = state["run_history"]
        o, n = old_metrics(h), new_metrics(h, state["step"])
        f = lambda v: "NaN" if math.isnan(v) else f"{v:.3g}"   # noqa: E731
        rows.append(f"| {cell[0]:g} | {cell[1]:g} | {cell[2]} | {cell[3]} | {f(o['sample_oscillation'])} | "
                    f"{f(n['sample_oscillation'])} | {f(n['sample_oscillation_global'])} | "
                    f"{f(n['sample_oscillation_pixels'])} | {f(o['fd_volatility'])} | {f(n['fd_volatility'])} | "
                    f"{f(o['loss_oscillation'])} | {f(n['loss_oscillation'])} | {o['diverged']:g} / {n['diverged']:g} | "
                    f"{o['collapsed']:g} / {n['mode_collapse']:g} / {f(n['attribute_skew'])} |")
    first = next(iter(runs.values()))["run_history"]
    rows.append("")
    rows.append(f"Points per run: old {old_metrics(first)['points']} (one per FD evaluation every {OLD_EVERY} steps); "
                f"new: {len(first['losses']['step'])} log points, {len(first['samples']['step'])} fixed-noise grids, "
                f"{len(first['evals']['step'])} FD evaluations.")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(sys.argv[1]))
