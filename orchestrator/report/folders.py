"""Runs read back from report folders, so that a study tracked in several MLflow stores is reported as
one: ``dcgan-lab report --from DIR [DIR ...]``.

A report folder holds ``runs.csv`` (one row per run: id, seed, status, final step, params, final
values), ``histories.csv`` (each run's FD, loss and D-output histories) and ``grids/``. Each run
becomes an object with the attributes of an MLflow ``Run`` that the report reads (``info``,
``data.params``, ``data.metrics``, ``data.tags``), so every rule of the report applies to it
unchanged. A folder written before ``histories.csv`` existed gives final values only: its runs
count in the tables and the final-step claims, not in the plateau test nor at the earlier
horizons (their FD there is unknown), and the report says how many runs that is.
"""
import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

from trainables.errors import UserError

FIXED = ("run_id", "seed", "status", "final_step")   # runs.csv's first columns; params follow, up to fd_key
HISTORY_COLUMNS = ("run_id", "key", "step", "value")
# Params that runs.csv files written before they were its columns lack: taken from the folder's
# report.json scale when it names one value for the whole folder.
SCALE_FILLED = ("batch_size", "ngf", "ndf")


def _number(text):
    return float(text) if text not in ("", None) else None


def _rows(path, folder, required):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or ())]
        if missing:
            raise UserError(f"from={str(folder)!r}: {path.name} has no column {', '.join(missing)}; "
                            f"allowed: a folder written by dcgan-lab report")
        return list(reader), list(reader.fieldnames)


class FolderRuns:
    """The runs of one or more report folders, in folder order (a run is in exactly one)."""

    def __init__(self, folders):
        self.folders = [Path(f) for f in folders]
        self.runs, self.folder_of, self._history = [], {}, {}
        seen = {}   # a run's params, seed included -> its folder
        for folder in self.folders:
            for run in self._read(folder):
                key = tuple(sorted(run.data.params.items()))
                if key in seen or run.info.run_id in self.folder_of:
                    where = seen.get(key, self.folder_of.get(run.info.run_id))
                    raise UserError(f"from={str(folder)!r}: run {run.info.run_id[:8]} (seed "
                                    f"{run.data.params['seed']}) repeats a run of {str(where)!r}; allowed: folders "
                                    "with different seeds or settings (a seed counts once)")
                seen[key] = folder
                self.folder_of[run.info.run_id] = folder
                self.runs.append(run)
        for hist in self._history.values():
            hist.sort()
        if not self.runs:
            raise UserError(f"from={' '.join(map(str, self.folders))!r}: no runs in their runs.csv")
        for key in SCALE_FILLED:   # known for some runs only: not known (never a factor with an "(unset)" level)
            if len({key in run.data.params for run in self.runs}) > 1:
                for run in self.runs:
                    run.data.params.pop(key, None)

    def _read(self, folder):
        if not (folder / "runs.csv").is_file():
            raise UserError(f"from={str(folder)!r}: no runs.csv there; allowed: a folder written by dcgan-lab report")
        rows, columns = _rows(folder / "runs.csv", folder, FIXED + ("fd_key",))
        params = columns[len(FIXED):columns.index("fd_key")]
        metrics = columns[columns.index("fd_key") + 1:]
        histories, with_history = folder / "histories.csv", set()
        if histories.is_file():
            for h in _rows(histories, folder, HISTORY_COLUMNS)[0]:
                self._history.setdefault((h["run_id"], h["key"]), []).append((int(float(h["step"])), float(h["value"])))
                with_history.add(h["run_id"])
        scale = {}
        if (folder / "report.json").is_file():
            scale = json.loads((folder / "report.json").read_text()).get("scale", {})
        filled = {k: scale[k][0] for k in SCALE_FILLED
                  if k not in params and len(scale.get(k) or []) == 1 and scale[k][0] != "?"}
        runs = []
        for row in rows:
            values = {k: _number(row[k]) for k in metrics}
            run_id = row["run_id"]
            runs.append(SimpleNamespace(
                history_known=run_id in with_history,
                info=SimpleNamespace(run_id=run_id, status="FINISHED", start_time=len(self.runs) + len(runs)),
                data=SimpleNamespace(params={"seed": row["seed"], **filled,
                                             **{k: row[k] for k in params if row[k] != ""}},
                                     metrics={k: v for k, v in values.items() if v is not None},
                                     tags={"status": row["status"], "final_step": row["final_step"]})))
        return runs

    @property
    def label(self):
        parents = {f.parent for f in self.folders}
        names = (f"{parents.pop()}/{{{', '.join(f.name for f in self.folders)}}}" if len(parents) == 1 and
                 len(self.folders) > 1 else ", ".join(str(f) for f in self.folders))
        without = sum(not run.history_known for run in self.runs)
        note = (f" ({without} of {len(self.runs)} runs without FD histories: in the final-step analysis "
                "only)") if without else ""
        return f"report folders {names}{note}"

    def history(self, run_id, key):
        """The run's [(step, value)] of ``key`` from its folder's histories.csv; [] when not there."""
        return list(self._history.get((run_id, key), []))

    def grid(self, run_id, name):
        """The PNG bytes of the grid file ``name`` in the run's folder, None when it has none."""
        path = self.folder_of[run_id] / "grids" / f"{name}.png"
        return path.read_bytes() if path.is_file() else None


def histories_csv(records):
    """Every record's histories, one row per (run, key, step): the file ``FolderRuns`` reads back."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HISTORY_COLUMNS)
    for r in records:
        for key, hist in r["history"].items():
            w.writerows((r["run_id"], key, step, repr(float(value))) for step, value in hist)
    return buf.getvalue()
