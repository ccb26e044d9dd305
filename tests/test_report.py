"""The report on a real temp MLflow store holding runs with known values: every table number,
the CIs against a direct computation, the claim verdicts, NaN and diverged runs, the HTML."""
import itertools
import math
import re

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from PIL import Image

from conftest import run_cli
from orchestrator import report_stats as stats
from orchestrator.report import build_report

FACTORS = ("lr", "beta1", "bn_placement")


def _log_run(c, exp, parent, params, finals, fd_history=(), status="finished", grid=True):
    run = c.create_run(exp, tags={"mlflow.parentRunId": parent, "kind": "trial", "status": status,
                                  "final_step": "300"})
    rid = run.info.run_id
    base = {"dataset": "synthetic-faces", "image_size": "32", "max_steps": "300", "batch_size": "64",
            "eval_n": "500", "ngf": "16", "ndf": "16", "d_head": "conv"}
    c.log_batch(rid, params=[Param(k, str(v)) for k, v in {**base, **params}.items()])
    metrics = [Metric(k, v, 0, 300) for k, v in finals.items()]
    metrics += [Metric("fd_faces", v, 0, s) for s, v in fd_history]
    for s in (100, 200, 300):
        metrics += [Metric("loss_d", 1.0 + s / 1000, 0, s), Metric("loss_g", 2.0 - s / 1000, 0, s),
                    Metric("d_real", 0.6, 0, s), Metric("d_fake", 0.3, 0, s)]
    c.log_batch(rid, metrics=metrics)
    if grid:
        c.log_image(rid, Image.new("RGB", (34, 34), (200, 30, 30)), key="samples", step=300)
    c.set_terminated(rid, "FINISHED")
    return rid


def _store(tmp_path, cells):
    """``cells``: {(lr, beta1, bn): [(fd_final, extra finals, fd history, status), ...]} -> (uri, parent id)."""
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    c = MlflowClient(uri)
    exp = c.create_experiment("report-test", artifact_location=(tmp_path / "mlartifacts").as_uri())
    parent = c.create_run(exp, tags={"kind": "sweep"}).info.run_id
    for (lr, beta1, bn), runs in cells.items():
        for seed, (fd, extra, hist, status) in enumerate(runs):
            finals = dict(extra)
            if fd is not None:  # a run that diverged before its first evaluation logs no FD at all
                finals.update(fd_final=fd, fd_best=min([fd] + [v for _, v in hist]))
            _log_run(c, exp, parent, {"lr": lr, "beta1": beta1, "bn_placement": bn, "seed": seed}, finals, hist, status)
    return uri, parent


def _run(fd, osc=0.1, vol=0.05, diverged=0.0, collapsed=0.0, hist=None, status="finished"):
    extra = {"sample_oscillation": osc, "fd_volatility": vol, "diverged": diverged, "collapsed": collapsed}
    return fd, extra, hist if hist is not None else [(100, fd * 2 if fd else 500.0), (300, fd or 500.0)], status


@pytest.fixture(scope="module")
def factorial(tmp_path_factory):
    """2x2x2 with 3 seeds: lr 1e-3 adds 100 FD (a clear effect), beta1 nothing, bn 'all' lowers FD by 30
    (an effect against the paper); one run of the worst cell diverged before its first FD."""
    tmp = tmp_path_factory.mktemp("factorial")
    cells = {}
    for lr, beta1, bn in itertools.product(("0.0002", "0.001"), ("0.5", "0.9"), ("paper", "all")):
        base = 100.0 + (100.0 if lr == "0.001" else 0.0) - (30.0 if bn == "all" else 0.0)
        noise = (-4.0, 0.0, 4.0) if beta1 == "0.5" else (4.0, -4.0, 0.0)  # same spread, no beta1 effect
        cells[(lr, beta1, bn)] = [_run(base + e, osc=0.1 + 0.01 * i) for i, e in enumerate(noise)]
    cells[("0.001", "0.9", "all")][2] = _run(None, osc=float("nan"), vol=float("nan"), diverged=1.0,
                                             hist=[], status="diverged")
    uri, parent = _store(tmp, cells)
    result = build_report(uri, tmp / "out", sweep=parent)
    return uri, parent, tmp, result


def _row(rows, **levels):
    (row,) = [r for r in rows if all(r.levels[k] == v for k, v in levels.items())]
    return row


def test_every_table_number(factorial):
    _uri, _parent, _tmp, result = factorial
    name, factors, rows = result["tables"][0]
    assert name == "cells" and factors == list(FACTORS) and len(rows) == 8
    r = _row(rows, lr="0.0002", beta1="0.5", bn_placement="paper")
    assert r.paper and r.stats["n"] == 3 and r.stats["n_fd"] == 3
    assert r.stats["fd_mean"] == pytest.approx(100.0)
    assert r.stats["fd_std"] == pytest.approx(4.0)                       # sample std of 96, 100, 104
    assert r.stats["fd_best"] == pytest.approx(96.0)
    assert r.stats["sample_oscillation"] == pytest.approx(0.11)
    assert r.stats["fd_volatility"] == pytest.approx(0.05)
    assert r.stats["diverged"] == 0.0 and r.stats["collapsed"] == 0.0
    best = _row(rows, lr="0.0002", beta1="0.5", bn_placement="all")
    assert best.stats["fd_mean"] == pytest.approx(70.0) and "fd_mean" in best.best and "fd_best" in best.best
    assert not r.best & {"fd_mean", "fd_best"} and sum(x.paper for x in rows) == 1
    # The threshold is the median final FD of the 23 runs with one; steps to reach it, per run.
    finals = sorted(rec["values"]["fd_final"] for rec in result["records"] if math.isfinite(rec["values"]["fd_final"]))
    assert len(finals) == 23 and result["threshold"] == pytest.approx(float(np.median(finals)))
    assert r.stats["steps_to_fd"] == 300.0 and r.stats["n_reached"] == 3
    worst = _row(rows, lr="0.001", beta1="0.9", bn_placement="paper")
    assert worst.stats["n_reached"] == 0 and math.isnan(worst.stats["steps_to_fd"])
    # Marginal tables: one per factor, over every run.
    by_lr = dict((n, rs) for n, _f, rs in result["tables"])["by lr"]
    lo = _row(by_lr, lr="0.0002")
    assert lo.stats["n"] == 12 and lo.stats["fd_mean"] == pytest.approx(85.0) and lo.paper


def test_nan_and_diverged_runs_are_counted(factorial):
    _uri, _parent, _tmp, result = factorial
    r = _row(result["tables"][0][2], lr="0.001", beta1="0.9", bn_placement="all")
    assert r.stats["n"] == 3 and r.stats["n_fd"] == 2            # kept in n, out of the FD mean
    assert r.stats["fd_mean"] == pytest.approx(170.0)
    assert r.stats["diverged"] == pytest.approx(1 / 3)
    assert r.stats["sample_oscillation"] == pytest.approx((0.10 + 0.11) / 2)   # NaN left out
    md = (factorial[2] / "out" / "report.md").read_text()
    assert "| 0.001 | 0.9 | all | 3 (2 with FD) |" in md and "33%" in md
    assert "1 diverged, 1 without a final FD" in md


def test_ci_matches_direct_computation():
    """The percentile bootstrap CI against the exact bootstrap distribution, enumerated."""
    values = [96.0, 100.0, 104.0, 130.0]
    lo, hi = stats.bootstrap_ci(values, seed=0, resamples=20000)
    means = np.array([np.mean(c) for c in itertools.product(values, repeat=len(values))])
    assert lo == pytest.approx(np.quantile(means, 0.025), abs=1.0)
    assert hi == pytest.approx(np.quantile(means, 0.975), abs=1.0)
    assert stats.bootstrap_ci([5.0, float("nan"), 5.0]) == (5.0, 5.0)
    assert all(math.isnan(x) for x in stats.bootstrap_ci([7.0, float("nan")]))   # one value: no interval


def test_table_ci_is_the_bootstrap_of_the_cells_runs(factorial):
    r = _row(factorial[3]["tables"][0][2], lr="0.0002", beta1="0.5", bn_placement="paper")
    assert r.stats["fd_ci"] == stats.bootstrap_ci([96.0, 100.0, 104.0], seed=0)


def test_claim_verdicts(factorial):
    claims = {c["claim"].key: c for c in factorial[3]["claims"]}
    assert set(claims) == {"lr", "beta1", "bn"}
    lr = claims["lr"]
    fd = lr["effects"][0]
    assert fd["metric"] == "fd_final" and fd["n_cells"] == 4
    assert fd["effect"] == pytest.approx(100.0, abs=1.0) and fd["lo"] > 0
    assert fd["verdict"] == "supported" and lr["verdict"] == "supported"             # a clear effect
    assert claims["beta1"]["effects"][0]["verdict"] == "inconclusive"               # no effect
    assert claims["beta1"]["effects"][0]["lo"] < 0 < claims["beta1"]["effects"][0]["hi"]
    bn = claims["bn"]["effects"][0]
    assert bn["effect"] == pytest.approx(-30.0, abs=1.0) and bn["hi"] < 0
    assert bn["verdict"] == "contradicted" and claims["bn"]["verdict"] == "contradicted"  # the other way
    assert {c.key for c in factorial[3]["untested"]} >= {"d_downsample", "g_upsample", "d_head_gap"}


def test_claim_uses_only_runs_differing_in_that_factor():
    def rec(lr, bn, fd):
        return {"levels": {"lr": lr, "bn_placement": bn}, "values": {"fd_final": fd}}
    # lr 1e-3 only ever ran with bn=all: no run differs from the paper's in lr alone.
    recs = [rec("0.0002", "paper", 100.0), rec("0.0002", "paper", 101.0), rec("0.001", "all", 300.0),
            rec("0.001", "all", 301.0)]
    claim = stats.CLAIMS[0]
    assert stats.evaluate_claim(claim, recs, ["lr", "bn_placement"]) is None
    recs += [rec("0.001", "paper", 150.0), rec("0.001", "paper", 152.0)]
    res = stats.evaluate_claim(claim, recs, ["lr", "bn_placement"])
    assert res["cells"] == 1 and res["effects"][0]["effect"] == pytest.approx(50.5)


def test_verdict_rules():
    assert stats.metric_verdict(1.0, 3.0, +1) == "supported"
    assert stats.metric_verdict(-3.0, -1.0, +1) == "contradicted"
    assert stats.metric_verdict(-1.0, 3.0, +1) == "inconclusive"
    assert stats.metric_verdict(-3.0, -1.0, -1) == "supported"
    assert stats.metric_verdict(float("nan"), float("nan"), +1) == "inconclusive"
    assert stats.overall_verdict(["supported", "inconclusive"]) == "supported"
    assert stats.overall_verdict(["supported", "contradicted"]) == "inconclusive"
    assert stats.overall_verdict(["inconclusive", "contradicted"]) == "contradicted"
    # One run against one run: an effect, but no interval and so no verdict.
    one = {(): ([{"values": {"fd_final": 1.0}}], [{"values": {"fd_final": 9.0}}])}
    effect, lo, hi, *_ = stats.claim_effect(one, "fd_final")
    assert effect == 8.0 and math.isnan(lo) and math.isnan(hi)
    two = {**one, ("x",): ([{"values": {"fd_final": 2.0}}], [{"values": {"fd_final": 5.0}}])}
    assert math.isnan(stats.claim_effect(two, "fd_final")[1])                     # two cells: still none
    three = {**two, ("y",): ([{"values": {"fd_final": 2.0}}], [{"values": {"fd_final": 6.0}}])}
    effect, lo, hi, n_cells, *_ = stats.claim_effect(three, "fd_final")
    assert n_cells == 3 and effect == pytest.approx(5.0) and 3.0 <= lo <= hi <= 8.0


def test_every_format_and_the_parent_run(factorial):
    uri, parent, tmp, _result = factorial
    out = tmp / "out"
    csv = (out / "tables.csv").read_text().splitlines()
    assert len(csv) == 1 + 8 + 2 + 2 + 2   # header, cells, and each factor's two levels
    tex = (out / "tables.tex").read_text()
    assert tex.count(r"\toprule") == 4 and r"\textbf{70}" in tex and r"$^\dagger$" in tex
    html = (out / "report.html").read_text()
    plots = re.findall(r"<figure class='plot'><img alt='([^']*)' src='data:image/png;base64,", html)
    assert [p.split(" (")[0].replace(" per cell", "") for p in plots] == ["FD against step", "D loss", "G loss", "D(x)", "D(G(z))"]
    assert html.count("<img class='grid'") == 8                                  # every cell's final grid
    assert "supported" in html and "contradicted" in html
    arts = {f.path for f in MlflowClient(uri).list_artifacts(parent, "report")}
    assert arts == {f"report/{n}" for n in ("report.md", "tables.csv", "tables.tex", "report.html", "report.json")}


def test_tpe_runs_are_binned_and_scattered(tmp_path):
    rng = np.random.default_rng(0)
    cells = {}
    for i in range(12):
        lr, beta1 = f"{10 ** rng.uniform(-5, -2):.6g}", f"{rng.uniform(0, 0.95):.4g}"
        cells[(lr, beta1, ("paper", "all")[i % 2])] = [_run(100.0 + i)]
    uri, parent = _store(tmp_path, cells)
    result = build_report(uri, tmp_path / "out", sweep=parent)
    levels = {r.levels["lr"] for r in result["tables"][0][2]}
    assert levels <= {"[-inf, 0.0001)", "[0.0001, 0.0003)", "[0.0003, 0.001)", "[0.001, 0.003)", "[0.003, inf)"}
    html = (tmp_path / "out" / "report.html").read_text()
    assert "final FD against lr, coloured by bn_placement" in html
    assert "final FD against beta1, coloured by bn_placement" in html


def test_report_cli_and_bad_input(factorial, tmp_path):
    uri, parent, _tmp, _result = factorial
    env = {"MLFLOW_TRACKING_URI": uri}
    r = run_cli("report", "--sweep", parent, "--out", str(tmp_path / "rep"), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| lr | beta1 | bn_placement | n |" in r.stdout and "**lr** (lr 0.0002 vs 0.001): supported" in r.stdout
    cases = [
        (["--sweep", "0" * 32], "was not found"),
        (["--experiment", "nope"], "experiment='nope' does not exist"),
        (["--sweep", parent, "--factors", "lr,not_a_param"], "factors='not_a_param'"),
        (["--sweep", parent, "--fd-threshold", "-1"], "fd-threshold=-1.0"),
    ]
    for args, msg in cases:
        r = run_cli("report", *args, "--out", str(tmp_path / "bad"), env=env)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert not (tmp_path / "bad").exists()
    empty = MlflowClient(uri).create_experiment("empty")
    r = run_cli("report", "--experiment", "empty", env=env)
    assert r.returncode == 2 and "no runs match" in r.stderr, r.stderr
    assert empty
