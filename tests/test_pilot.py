"""The horizon pilot: the plateau at a ladder of horizons. A plateau step is found where FD
flattens (not at the first testable horizon, where the report's test passes for lack of power),
none for runs still falling at their end; the files it writes, pilot.json strict JSON."""
import json
import math

import numpy as np
import pytest

from orchestrator.report.pilot import flat, ladder, plateau_ladder, plateau_step, study_horizon, write_pilot

STEPS = tuple(range(200, 8001, 200))


def _record(seed, fd_of, cell="0.0002"):
    rng = np.random.default_rng(seed)
    fd = [(s, fd_of(s) * math.exp(rng.normal(0, 0.08))) for s in STEPS]
    return {"run_id": f"{cell}-{seed}", "levels": {"lr": cell}, "seed": str(seed), "status": "finished",
            "final_step": float(STEPS[-1]), "fd_key": "fd_faces", "history": {"fd_faces": fd},
            "values": {"fd_final": fd[-1][1], "diverged": 0.0}}


def _flattening(s):
    return 50 + 400 * math.exp(-s / 500)     # log FD falls 0.26 per 1,000 steps at step 2,000, 0.04 at 3,000


def _falling(s):
    return 400 * math.exp(-s / 4000)         # still halving every ~2,800 steps at step 8,000


@pytest.mark.parametrize("seed", range(4))
def test_plateau_found_where_fd_flattens_and_not_for_a_run_still_falling(seed):
    flat = [_record(seed * 2 + k, _flattening) for k in range(2)]
    rows = plateau_ladder(flat, ladder(flat, 400))
    step = plateau_step(rows)
    assert step is not None and 2400 <= step <= 6400, (step, [(h, flat(pl)) for h, pl in rows])
    falling = [_record(seed * 2 + k, _falling) for k in range(2)]
    rows = plateau_ladder(falling, ladder(falling, 400))
    assert plateau_step(rows) is None
    assert rows[-1][1]["testable"] and rows[-1][1]["slope"] < 0


def test_a_cell_is_flat_only_from_a_horizon_on_which_every_later_one_is_flat():
    def pl(slope, se, df=8):   # a plateau() result with that slope and standard error
        return {"testable": True, "slope": slope, "se": se, "df": df}
    wide, narrow, drifting = pl(0.0, 1.0), pl(0.01, 0.05), pl(0.3, 0.025)
    assert not flat(wide) and flat(narrow) and not flat(drifting)   # a wide interval is never flat
    assert plateau_step([(1, wide), (2, narrow), (3, drifting), (4, narrow), (5, narrow)]) == 4
    assert plateau_step([(1, narrow), (2, narrow), (3, wide)]) is None   # not shown flat at the end
    assert plateau_step([(1, {"testable": False, "df": 0}), (2, narrow)]) == 2
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
    cells = json.loads((tmp_path / "pilot.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))["cells"]
    by_lr = {c["levels"]["lr"]: c for c in cells}
    assert by_lr["0.001"]["plateau_step"] is None and by_lr["0.0002"]["plateau_step"] is not None
    assert "Plateau step: **none" in result["md"] and result["horizon"] is None
    assert (tmp_path / "fd_curves.png").read_bytes()[:4] == b"\x89PNG"
