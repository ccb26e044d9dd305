"""``dcgan-lab bench --smoke``: every part but eval and ray, end to end on real components (the
step, the levers, the data cache, a real sweep through the CLI); what it reports adds up."""
import json
import math

import pytest
from conftest import run_cli

from orchestrator.bench.levers import LEVERS
from orchestrator.bench_cmd import SMOKE
from orchestrator.ray_run import DRIVER_PHASES

pytestmark = pytest.mark.slow   # starts Ray, trains, serves MLflow or drives a browser


def test_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    r = run_cli("bench", "--smoke", "--out", str(out), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["mode"] == "smoke"
    for line in ("CPU levers, smoke size", "data at 32x32", "sweep (as configured)", f"wrote {out}"):
        assert line in r.stdout, r.stdout

    # The step against the plain loop.
    assert d["smoke"]["project_images_per_s"] > 0 and d["smoke"]["plain_images_per_s"] > 0

    # Levers: every one timed; the reference step is what the losses are compared with.
    levers = d["levers"]["smoke"]
    assert list(levers) == SMOKE["levers"].split(",") and set(levers) < set(LEVERS)
    assert all(v["images_per_s"] > 0 and v["steps_timed"] >= 3 for v in levers.values())
    assert levers["reference"]["losses_equal"] and levers["reference"]["last_step_rel_diff"] == 0
    assert not levers["bf16 autocast"]["losses_equal"] and levers["bf16 autocast"]["first_step_rel_diff"] > 1e-4

    # Data: the cache against rendering and decoding, and its build.
    data = d["data"]
    rates = ("cache_images_per_s", "render_images_per_s", "folder_cache_images_per_s", "folder_decode_images_per_s")
    assert all(data[k] > 0 for k in rates) and data["cache_build_s"] > 0

    # The sweep: two smoke trials; the slot time's shares add up to the whole.
    sweep = d["sweep"]
    assert sweep["trials"] == 2 and sweep["slots"] == 2
    assert math.isclose(sum(sweep["fraction"].values()), 1.0)
    assert 0 < sweep["step_fraction"] < 1
    assert set(DRIVER_PHASES) <= set(sweep["driver_s"]) and sweep["driver_s"]["cli_start"] > 0
    # The first trial starts a process; the second reuses the first's when the first ended before
    # Tune launched it (a loaded machine), so only the first is sure to be fresh.
    assert all(t["startup_s"] > 0 for t in sweep["per_trial"]) and not sweep["per_trial"][0]["reused_process"]
    assert sweep["memory"]["peak_total_mb"] > 0
