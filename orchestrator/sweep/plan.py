"""A sweep's plan and local state: how many trials run at once on the cluster (``plan_trials``), the
sweep's folder (``sweeps/<preset>-<space>-<search>``), Tune's storage in it, and ``sweep.json``
(the parent run id, for ``--resume``).
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path

from trainables.atomic import write_atomic
from trainables.errors import UserError, bad_value

SWEEP_FILE = "sweep.json"   # beside Tune's state: the parent run id, for --resume


@dataclass(frozen=True)
class TrialPlan:
    resources: dict    # Tune's resource request for one trial
    concurrency: int   # trials at once: what the cluster's CPUs and GPUs hold


def plan_trials(base, space, in_trial, nodes):
    """One trial's resources and how many run at once on the Ray cluster's ``nodes``
    (``ray.nodes()``); a request no node can hold is refused here, before the sweep starts.

    A trial that trains in its own process holds ``cpus_per_worker`` CPUs and, with use_gpu,
    ``gpus_per_trial`` of a GPU (Ray's fractional GPUs: 0.25 packs four trials onto each GPU);
    both must be free on one node. A Train-driver trial only waits on its workers, which hold them:
    it asks Tune for a token (``memory: 1``; even 0.01 CPU would keep a worker that needs every CPU
    from ever fitting), and the trials at once are the cluster's CPUs and GPUs over its workers'."""
    if "gpus_per_trial" in space.params:
        raise UserError(f"search space {space.path}: params.gpus_per_trial cannot be searched: a trial's resources "
                        "are fixed before it starts (set gpus_per_trial with --set)")
    if base.gpus_per_trial < 1 and not in_trial:
        raise bad_value("gpus_per_trial", base.gpus_per_trial,
                        "1 when the space searches num_workers, cpus_per_worker or use_gpu "
                        "(a GPU share is for single-worker trials)")
    alive = [n["Resources"] for n in nodes if n.get("Alive")]
    gpus = base.gpus_per_trial if base.use_gpu else 0
    if in_trial:
        fits = sum(min(_times(n.get("CPU", 0), base.cpus_per_worker), _times(n.get("GPU", 0), gpus)) for n in alive)
        if fits == 0:
            key, value = ("gpus_per_trial", gpus) if gpus else ("cpus_per_worker", base.cpus_per_worker)
            need = f"{base.cpus_per_worker} CPU(s)" + (f" and {gpus:g} GPU" if gpus else "")
            raise bad_value(key, value, f"a trial that fits one node: no node of the Ray cluster has {need} "
                                        f"(nodes: {_describe(alive)})")
        return TrialPlan({"cpu": base.cpus_per_worker, "gpu": gpus}, fits)
    cpus = sum(n.get("CPU", 0) for n in alive)
    by_gpus = _times(sum(n.get("GPU", 0) for n in alive), base.num_workers) if base.use_gpu else math.inf
    return TrialPlan({"memory": 1}, max(1, min(_times(cpus, base.num_workers * base.cpus_per_worker), by_gpus)))


def _times(have, need):
    """Whole ``need``s in ``have`` (inf when nothing is needed); the epsilon absorbs 1 / 0.1 style rounding."""
    return math.inf if not need else math.floor(have / need + 1e-9)


def _describe(nodes):
    return ", ".join(f"{n.get('CPU', 0):g} CPU/{n.get('GPU', 0):g} GPU" for n in nodes) or "none alive"


SWEEPS_DIR = "sweeps"   # local state of each sweep: sweep.json, the Optuna study, the server log


def sweep_dir(preset, space_name, search, resume):
    """``./sweeps/<preset>-<space>-<search>-<n>``: a new n per sweep, the last one on --resume."""
    root = Path(SWEEPS_DIR).absolute()
    stem = f"{preset}-{space_name}-{search}"
    taken = sorted((int(p.name.rsplit("-", 1)[1]), p) for p in root.glob(f"{stem}-*")
                   if p.name.rsplit("-", 1)[1].isdigit() and (p / SWEEP_FILE).is_file())
    if resume:
        if not taken:
            raise UserError(f"--resume: no sweep {stem} to resume under {root}")
        return taken[-1][1]
    return root / f"{stem}-{taken[-1][0] + 1 if taken else 1}"


def tune_storage(storage_path):
    """Where Tune keeps its sweeps' state (``<storage_path>/sweeps/<sweep name>``)."""
    return storage_path + "/sweeps"


def check_resumable(d, base, sequential=False):
    """--resume, before Ray starts: this storage_path must hold Tune's state of sweep ``d`` (of its
    first block for a sequential one); if not, say where the sweep ran (its sweep.json) instead of
    failing inside Tune's restore."""
    from ray.tune import Tuner

    from orchestrator.ray_run import with_absolute_paths

    ran_as = read_sweep_file(d)
    if bool(ran_as.get("sequential")) != bool(sequential):
        want = "with" if ran_as.get("sequential") else "without"
        raise UserError(f"--resume: sweep {d.name} ran {want} --sequential; resume it the same way")
    looked_in = f"{tune_storage(with_absolute_paths(base).storage_path)}/{d.name}" + ("-look1" if sequential else "")
    if Tuner.can_restore(looked_in):
        return
    ran = ran_as.get("storage_path")
    where = f"the sweep ran with storage_path={ran!r}" if ran else f"{d / SWEEP_FILE} does not say where it ran"
    raise UserError(f"--resume: storage_path={base.storage_path!r} holds no Tune state of sweep {d.name} "
                    f"(looked in {looked_in}); {where}")


def read_sweep_file(d):
    return json.loads((Path(d) / SWEEP_FILE).read_text())


def write_sweep_file(d, data):
    write_atomic(Path(d) / SWEEP_FILE, json.dumps(data, indent=2))
