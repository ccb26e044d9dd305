"""A run's description in the MLflow UI (MLflow's run note, Markdown): one line, written when the
run ends: its cell (the searched values), seed, status and final FD."""
import math

from trainables import store

NOTE_TAG = "mlflow.note.content"   # MLflow's run description
SWEEP_TAG = "sweep"                # the sweep's parent run id, on the parent and on every trial
CELL_KEYS = ("lr", "beta1", "bn_placement")   # a run's cell when no search space names it


def describe_run(uri, run_id, cfg, status, cell=CELL_KEYS):
    """A trial's (or a training run's) one-line description, once its status is known."""
    c = store.client(uri)
    fd = c.get_run(run_id).data.metrics.get("fd_final", math.nan)
    c.set_tag(run_id, NOTE_TAG, run_line(cfg.to_dict(), status, fd, cell))


def run_line(params, status, fd_final, cell=CELL_KEYS):
    values = ", ".join(f"{k}={params[k]}" for k in cell if k in params and k != "seed")
    fd = f"final FD {fd_final:.4g}" if math.isfinite(fd_final) else "no final FD"
    return f"cell {values or '(base config)'} · seed {params.get('seed', '?')} · {status} · {fd}"
