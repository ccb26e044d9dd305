"""The MLflow UI and the report as a researcher sees them: a smoke sweep, ``dcgan-lab ui`` serving
its store on 127.0.0.1, and Debian's Chromium (headless, driven by Playwright) opening what it
prints. Screenshots go to the test's temp folder; their paths are printed as figures."""
import hashlib
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from mlflow import MlflowClient

pytestmark = pytest.mark.slow   # starts Ray, trains, serves MLflow or drives a browser

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags, Chromium's own connections are refused on a closed network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE_S = 180   # the slowest page load seen on a loaded machine was ~45 s
LINKS = ("last sweep", "its trials ranked by final FD", "their FD curves", "their sample grids", "its report")


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    """The smoke sweep (2 trials) with system metrics sampled every second, as a user runs it."""
    d = tmp_path_factory.mktemp("browser")
    r = run_cli("sweep", "--preset", "smoke", "--set", "system_metrics=true", cwd=d,
                env={"MLFLOW_TRACKING_URI": "", "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    client = MlflowClient("sqlite:///" + str(d / "mlflow.db"))
    exp = client.get_experiment_by_name("dcgan-lab")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    return {"dir": d, "client": client, "exp": exp, "parent": parent, "trials": trials}


@pytest.fixture(scope="module")
def ui_links(smoke_sweep):
    """``dcgan-lab ui`` on a free port, as a user starts it; yields the URLs it prints."""
    from orchestrator.sweep.mlflow_server import free_port

    d = smoke_sweep["dir"]
    out = d / "ui.out"
    with open(out, "w") as f_out, open(d / "ui.err", "w") as f_err:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "ui", "--port", str(free_port()),
                                 "--no-browser"], cwd=d, env={**os.environ, "MLFLOW_TRACKING_URI": ""},
                                stdout=f_out, stderr=f_err, start_new_session=True)
    try:
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None and f"{LINKS[-1]}:" not in out.read_text():
            time.sleep(1)
        text = out.read_text()
        assert f"{LINKS[-1]}:" in text, f"dcgan-lab ui printed no links:\n{text}\n{(d / 'ui.err').read_text()[-2000:]}"
        links = {label: re.search(rf"^{re.escape(label)}[^:]*: (\S+)$", text, re.M).group(1) for label in LINKS}
        yield links
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # dcgan-lab ui, mlflow ui and its uvicorn worker
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def browser(smoke_sweep):
    """Headless Chromium with a fresh profile; Playwright downloads no browser of its own."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "tests/test_browser.py needs Debian's chromium (.ci/run installs it)"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(smoke_sweep["dir"] / "chromium-profile"),
                                                   executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True,
                                                   viewport={"width": 1600, "height": 1000})
        ctx.set_default_timeout(PAGE_S * 1000)
        yield ctx
        ctx.close()


def test_runs_carry_kind_notes_dataset_and_system_metrics(smoke_sweep):
    """What the UI shows, in the store: the experiment's kind, each run's description, the trials'
    data set input and system metrics, the parent's sortable outcome."""
    import dataclasses

    from orchestrator.config import resolve_config
    from trainables.loop import data_request
    from trainables.run_inputs import dataset_digest

    client, parent, trials = smoke_sweep["client"], smoke_sweep["parent"], smoke_sweep["trials"]
    assert smoke_sweep["exp"].tags["mlflow.experimentKind"] == "custom_model_development"
    assert len(trials) == 2 and {t.data.tags["sweep"] for t in trials} == {parent.info.run_id} == {parent.data.tags["sweep"]}
    smoke = resolve_config("smoke")
    digest = dataset_digest(data_request(smoke))
    assert digest != dataset_digest(data_request(dataclasses.replace(smoke, data_seed=1)))
    for t in trials:
        assert t.data.tags["mlflow.note.content"] == (f"cell lr={t.data.params['lr']} · seed 0 · finished · "
                                                      f"final FD {t.data.metrics['fd_final']:.4g}")
        (inp,) = t.inputs.dataset_inputs
        assert (inp.dataset.name, inp.dataset.digest, inp.dataset.source_type) == ("synthetic-faces-32px", digest, "code")
        assert [(tag.key, tag.value) for tag in inp.tags] == [("mlflow.data.context", "training")]
        cpu = client.get_metric_history(t.info.run_id, "system/cpu_utilization_percentage")
        assert cpu and all(0 <= m.value <= 100 for m in cpu)
        assert client.get_metric_history(t.info.run_id, "system/system_memory_usage_megabytes")
    m = parent.data.metrics
    assert (m["trials"], m["trials_finished"], m["trials_diverged"], m["trials_failed"]) == (2, 2, 0, 0)
    assert m["best_fd_final"] == min(t.data.metrics["fd_final"] for t in trials)
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith(f"**Sweep {parent.info.run_name}**: 2 trials: 2 finished, 0 diverged, 0 failed")
    assert f"runs/{parent.info.run_id}/artifacts/report/report.html" in note


def test_a_researcher_in_a_real_browser(smoke_sweep, ui_links, browser, figure, tmp_path):
    """The trials page opens in the training view with lr, beta1, bn_placement and the final FD
    in sight, for the parent and every trial; the parent's description is its outcome; a trial's
    fixed-noise grid is in sight at each logged step (MLflow 3.18's image cards caption every run
    param unless told not to), and the FD curves of all trials side by side;
    report.html loads every image, has no console error and fits the page."""
    shots = tmp_path
    page = browser.new_page()
    parent, trials = smoke_sweep["parent"], smoke_sweep["trials"]

    # (1) The sweep's trials, ranked by final FD.
    page.goto(ui_links["its trials ranked by final FD"])
    page.get_by_text(parent.info.run_name).first.wait_for()
    _close_assistant(page)
    assert "workflowType=machine_learning" in page.url and "/runs" in page.url
    assert not page.get_by_text("Token Usage").count()   # MLflow's GenAI overview
    rows = _grid_rows(page, len(trials) + 1)
    page.screenshot(path=shots / "experiment.png")
    by_name = {_name(r): r for r in rows}
    assert set(by_name) == {parent.info.run_name, *(t.info.run_name for t in trials)}
    for run in (parent, *trials):
        row = by_name[run.info.run_name]
        for key in ("lr", "beta1", "bn_placement"):
            assert row[f"params.`{key}`"] == run.data.params[key]
        fd = run.data.metrics.get("fd_final")
        assert row["metrics.`fd_final`"].rstrip(".…") in (f"{fd!r}" if fd is not None else "-"), row
    for t in trials:
        assert f"synthetic-faces-32px ({t.inputs.dataset_inputs[0].dataset.digest})" in by_name[t.info.run_name][
            "attributes.`Dataset`"]
    ranked = [_name(r) for r in sorted(rows, key=lambda r: r["row-index"])]
    assert ranked == [t.info.run_name for t in sorted(trials, key=lambda t: t.data.metrics["fd_final"])] + [
        parent.info.run_name]
    for header in ("lr", "beta1", "bn_placement", "fd_final"):
        box = page.locator(f".ag-header-cell[col-id$='`{header}`']").first.bounding_box()
        assert box and box["x"] + box["width"] <= 1600, f"column {header} is off screen: {box}"

    # (2) The parent run: its description and children.
    page.goto(ui_links["last sweep"])
    page.get_by_text(f"Sweep {parent.info.run_name}").first.wait_for()
    for t in trials:   # "Child runs"
        page.get_by_role("link", name=t.info.run_name, exact=True).first.wait_for()
    more = page.get_by_text("Show more", exact=True)   # a long description is folded after a few lines
    if more.count():
        more.first.click()
    page.screenshot(path=shots / "parent_run.png")

    # (3) Their curves: the FD of every trial against step, without building a chart.
    page.goto(ui_links["their FD curves"])
    fd_card = page.locator("[data-testid='experiment-view-compare-runs-card']").filter(
        has=page.locator("h4[title='fd_faces']"))
    for t in trials:
        fd_card.get_by_text(t.info.run_name).first.wait_for()
    page.screenshot(path=shots / "curves.png")

    # (4) The trials' fixed-noise grids at each logged step: the sample-grid card full screen,
    # stepped through with its slider. Each image shown is the grid the trial logged at that step
    # (the same bytes as its artifact), in sight without scrolling, under no caption of run params.
    client = smoke_sweep["client"]
    logged = {t.info.run_name: {int(re.search(r"step\+(\d+)\+", f.path).group(1)): f.path for f in
                                client.list_artifacts(t.info.run_id, "images") if f.path.endswith("+compressed.webp")}
              for t in trials}
    by_run = {t.info.run_name: t for t in trials}
    steps = sorted({step for grids in logged.values() for step in grids})
    assert steps == [6, 12] and all(sorted(grids) == steps for grids in logged.values())
    page.goto(ui_links["their sample grids"])
    card = page.locator("[data-testid='experiment-view-compare-runs-card']").filter(
        has=page.locator("h4[title='samples']"))
    card.first.wait_for()
    card.first.locator("[data-component-id='fullscreen_button_chartcard']").click()
    dialog = page.get_by_role("dialog")
    slider = dialog.get_by_role("slider")
    assert (slider.get_attribute("aria-valuemin"), slider.get_attribute("aria-valuemax")) == ("6", "12")
    assert slider.get_attribute("aria-valuenow") == "12"   # opened at the last step
    slider.focus()
    for _ in steps[1:]:
        slider.press("ArrowLeft")   # back to the first step with an image
    for step in steps:
        if step != steps[0]:
            slider.press("ArrowRight")   # the next step with an image
        assert slider.get_attribute("aria-valuenow") == str(step)
        page.wait_for_function("d => d.querySelectorAll('img').length >= %d && [...d.querySelectorAll('img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)" % len(trials), arg=dialog.element_handle())
        shown = dialog.evaluate(_SHOWN_IMAGES)
        page.screenshot(path=shots / f"trial_samples_step{step}.png")
        assert "dataset=" not in dialog.inner_text(), "the run params caption is back above the grids"
        assert sorted(shown) == sorted(logged), shown
        for name, (digest, top, bottom) in shown.items():
            local = client.download_artifacts(by_run[name].info.run_id, logged[name][step], str(tmp_path))
            assert digest == hashlib.sha256(Path(local).read_bytes()).hexdigest(), (name, step)
            assert 0 <= top and bottom <= 1000, f"{name}'s grid at step {step} is not in sight: {top}..{bottom}"

    # (5) report.html, self-contained, opened from disk.
    report = Path(smoke_sweep["dir"]) / "sweeps" / parent.info.run_name / "report" / "report.html"
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    images = page.evaluate("[...document.images].map(i => [i.alt || i.src.slice(0, 40), i.complete && i.naturalWidth > 0,"
                           " i.src.startsWith('data:')])")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    page.screenshot(path=shots / "report.png", full_page=True)
    figure("screenshots: " + ", ".join(str(p) for p in sorted(shots.glob("*.png"))))
    assert images and all(loaded and inline for _, loaded, inline in images), images
    assert not errors, errors
    assert overflow <= 0, f"report.html is {overflow} px wider than the page"
    if (report.parent / "forest.png").exists():   # the forest plot of [inference]
        assert any("forest" in alt.lower() for alt, _, _ in images), images


# {run name: [SHA-256 of the image's bytes, its top and bottom in the viewport]} for each image of
# the full-screen card, named by the run-name label of the block that holds it.
_SHOWN_IMAGES = """async d => {
    const out = {};
    for (const img of d.querySelectorAll('img')) {
        let block = img.parentElement;
        while (block && !/trial-/.test(block.innerText)) block = block.parentElement;
        const name = block.innerText.match(/trial-\\S+/)[0];
        const bytes = await (await fetch(img.src)).arrayBuffer();
        const hex = [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]
            .map(b => b.toString(16).padStart(2, '0')).join('');
        const box = img.getBoundingClientRect();
        out[name] = [hex, box.top, box.bottom];
    }
    return out;
}"""


def _name(row):
    return row["attributes.`Run Name`"].splitlines()[-1]   # after the run's colour chip


def _close_assistant(page):
    """MLflow opens its Assistant panel on a first visit; a person closes it to see the table."""
    close = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close.count():
        close.first.click()
        page.wait_for_timeout(500)


def _grid_rows(page, n):
    """The runs table as {col-id: text} per row (AG Grid splits a row across pinned parts)."""
    page.wait_for_function(f"document.querySelectorAll('.ag-center-cols-container [role=row]').length >= {n}")
    return page.evaluate("""() => {
        const rows = {};
        for (const cell of document.querySelectorAll('[row-index] [col-id]')) {
            const i = cell.closest('[row-index]').getAttribute('row-index');
            rows[i] = rows[i] || {'row-index': Number(i)};
            rows[i][cell.getAttribute('col-id')] = cell.innerText.trim();
        }
        return Object.values(rows);
    }""")


def test_parent_note_holds_the_claims_table_within_mlflows_limit():
    """The parent's description from the report's ``claims_summary``: one row per claim, cut (never
    mid-row) to MLflow's 8000 characters; its metrics are the finite effects and bounds only."""
    from orchestrator.run_notes import NOTE_LIMIT, claim_metrics, sweep_note

    row = {"claim": "lr", "factor": "lr", "paper": "0.0002", "alt": "0.001", "metric": "fd_final",
           "verdict": "supported", "ratio": 1.31, "ratio_lo": 1.08, "ratio_hi": 1.6, "effect": 0.27, "lo": 0.077,
           "hi": 0.47, "n_seeds": 3, "n_cells": 4, "test": "paired t over seeds"}
    nan_row = {**row, "claim": "beta1", "verdict": "not tested", "effect": math.nan, "lo": math.nan, "hi": math.nan,
               "ratio": math.nan, "ratio_lo": math.nan, "ratio_hi": math.nan}
    outcome = {"trials": 8, "trials_finished": 7, "trials_diverged": 1, "trials_failed": 0, "best_fd_final": 41.2,
               "best_run": "trial-x_00003"}
    note = sweep_note("quick-paper-claims-grid-1", "1", "abc", outcome, [row, nan_row])
    assert note.startswith("**Sweep quick-paper-claims-grid-1**: 8 trials: 7 finished, 1 diverged, 0 failed; "
                           "best final FD 41.2 (trial-x_00003).")
    assert "| lr | 0.0002 vs 0.001 | fd_final | 0.27 [0.077, 0.47] | 1.31 [1.08, 1.6] | 3 × 4 | paired t over seeds " \
           "| **supported** |" in note
    assert "| beta1 | 0.0002 vs 0.001 | fd_final | – | – |" in note
    assert "(#/experiments/1/runs/abc/artifacts/report/report.html)" in note
    assert claim_metrics([row, nan_row]) == {"claim_lr_effect": 0.27, "claim_lr_lo": 0.077, "claim_lr_hi": 0.47,
                                             "claim_lr_ratio": 1.31, "claim_lr_ratio_lo": 1.08, "claim_lr_ratio_hi": 1.6}
    many = [{**row, "claim": f"claim{i}", "test": "x" * 100} for i in range(100)]
    long = sweep_note("s", "1", "abc", outcome, many)
    shown = len(re.findall(r"^\| claim\d+ \|", long, re.M))
    assert len(long) <= NOTE_LIMIT and 0 < shown < 100 and f"{100 - shown} more claims in the report." in long
    assert long.endswith("in this run's artifacts.")
    assert "No claim verdicts in the report." in sweep_note("s", "1", "abc", outcome, [])


def test_ui_port_in_use_is_one_line(tmp_path):
    """A port another server holds: one line naming it, exit code 2, no MLflow UI started."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("ui", "--port", str(port), "--no-browser", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port={port}" in lines[0] and "in use" in lines[0], r.stderr
    assert not (tmp_path / "mlflow.db").exists()
