"""The horizon pilot: the report's plateau test at a ladder of horizons. A plateau step is found
where FD flattens (and not before it), none for runs still falling at their end, and a single pass
followed by "still moving" does not count. Also the command on a real tracked sweep's layout: the
files it writes."""
import json
import math

import numpy as np
import pytest

from orchestrator.pilot import ladder, plateau_ladder, plateau_step, study_horizon, write_pilot

STEPS = tuple(range(200, 8001, 200))


def _record(seed, fd_of, cell="0.0002"):
    rng = np.random.default_rng(seed)
    fd = [(s, fd_of(s) * math.exp(rng.normal(0, 0.08))) for s in STEPS]
    return {"run_id": f"{cell}-{seed}", "levels": {"lr": cell}, "seed": str(seed), "status": "finished",
            "final_step": float(STEPS[-1]), "fd_key": "fd_faces", "history": {"fd_faces": fd},
            "values": {"fd_final": fd[-1][1], "diverged": 0.0}}


def _flattening(s):
    return 50 + 400 * math.exp(-s / 500)     # within 1 % of its floor from step ~3,500


def _falling(s):
    return 400 * math.exp(-s / 4000)         # still halving every ~2,800 steps at step 8,000


@pytest.mark.parametrize("seed", range(4))
def test_plateau_found_where_fd_flattens_and_not_for_a_run_still_falling(seed):
    flat = [_record(seed * 2 + k, _flattening) for k in range(2)]
    rows = plateau_ladder(flat, ladder(flat, 400))
    step = plateau_step(rows)
    assert step is not None and 1600 <= step <= 5200, (step, [(h, pl["reached"]) for h, pl in rows])
    falling = [_record(seed * 2 + k, _falling) for k in range(2)]
    rows = plateau_ladder(falling, ladder(falling, 400))
    assert plateau_step(rows) is None
    assert rows[-1][1]["testable"] and rows[-1][1]["slope"] < 0


def test_one_chance_rejection_does_not_undo_a_plateau_but_a_run_of_them_does():
    r, m = {"reached": True}, {"reached": False}
    ladder_ = [(h, f) for h, f in zip(range(1, 12), [m, r, m, m, r, r, r, r, m, r, r])]
    assert plateau_step(ladder_) == 5         # from 5: 6 of 7 reached; from 2: 7 of 10 (< 80 %)
    assert plateau_step([(1, r), (2, m)]) is None          # 1 of 2 from 1; moving at 2
    assert plateau_step([(1, m), (2, r), (3, m), (4, m), (5, r)]) == 5
    assert plateau_step([(h, r) for h in range(1, 10)] + [(10, m)]) == 1   # one late rejection: 9 of 10
    assert plateau_step([]) is None


def test_study_horizon_is_the_latest_plateau_plus_a_quarter_rounded_up():
    assert study_horizon([2400, 3200]) == 4000
    assert study_horizon([4000]) == 5000
    assert study_horizon([2400, None]) is None and study_horizon([]) is None


def test_ladder_ends_at_the_horizon():
    recs = [_record(0, _flattening)]
    assert ladder(recs, 3000) == [3000, 6000, 8000]
    assert ladder(recs, 400)[-1] == 8000


def test_write_pilot_writes_its_files(tmp_path):
    recs = [_record(0, _flattening), _record(1, _falling, cell="0.001")]
    result = write_pilot(recs, ["lr"], "sweep test", 800, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"pilot.md", "pilot.json", "fd_curves.png"}
    cells = json.loads((tmp_path / "pilot.json").read_text())["cells"]
    by_lr = {c["levels"]["lr"]: c for c in cells}
    assert by_lr["0.001"]["plateau_step"] is None and by_lr["0.0002"]["plateau_step"] is not None
    assert "Plateau step: **none" in result["md"] and result["horizon"] is None
    assert (tmp_path / "fd_curves.png").read_bytes()[:4] == b"\x89PNG"
