"""Workarounds for Ray Train 2.60, applied in every Ray worker process of our jobs (the Train
controller's and its placement-group cleaner's among them) by
``ray.init(runtime_env={"worker_process_setup_hook": ...})``. Each patches one Ray module when a
process imports it.

1. The cleaner's liveness check. Ray Train's PlacementGroupCleaner (a detached actor that removes
   a run's placement group if its controller dies) asks every second whether the controller is
   alive through the State API, with no address. In a worker that API does not use the cluster the
   worker is connected to: it reads ``$RAY_ADDRESS``, else ``<ray temp dir>/ray_current_cluster``
   (written by the last ``ray start``, left behind when one is ended by a signal), else the GCS
   processes on the machine, and it then needs that cluster's dashboard HTTP server. A stale file:
   its GCS client waits 35 s and raises ``RpcError``; several Rays on the machine and no file: it
   raises ``ConnectionError`` at once; a cluster without a dashboard: it fails on every call. The
   monitor catches only ``RayStateApiException``, so its thread died with a traceback on the
   console, or lived on blind; either way nothing freed the run's CPUs if its controller died
   while its driver and the cluster lived on. Upstream defaulted the address to the connected
   cluster in https://github.com/ray-project/ray/pull/54468, reverted in
   https://github.com/ray-project/ray/pull/54549. Here the check asks the GCS this process is
   connected to (as the cleaner's own placement-group check does), and a failed read raises the
   exception the monitor catches, so it logs and asks again. Ray Train's state actor uses the
   same check (for runs whose controller died) and gets the same fix.
2. The cleaner's stop. At the end of every Train run the controller asks the cleaner to stop and
   waits up to 12 s for the monitor thread to exit; with the check above stuck in the State API it
   never did in time, and every run ended 12 s after its last step ("Failed to stop
   PlacementGroupCleaner gracefully"). Here the controller sends the stop and goes on. The cleaner
   still stops itself; were it to outlive the controller first, it finds the placement group
   already removed (the controller removes it on a clean shutdown) and exits.
"""
import importlib.util
import logging
import sys

SETUP_HOOK = "trainables.ray_fixes.setup_worker"
CALLBACKS = "ray.train.v2._internal.callbacks.placement_group_callback"
STATE_UTIL = "ray.train.v2._internal.state.util"


def setup_worker():
    """Ray's worker_process_setup_hook: patch each module of PATCHES now if this process has it,
    else when it imports it. Importing them here in every worker instead cost each one 0.7 s of
    CPU (they pull in pandas and pyarrow): a Train run starts six worker processes and a sweep one
    per trial, most of which never use them."""
    waiting = set()
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
        else:
            waiting.add(name)
    if waiting and not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport(waiting))


class _PatchOnImport:
    """A meta-path finder that finds nothing itself: when one of ``names`` is imported, it lets
    the other finders find it and patches the module once it has run."""

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, name, path, target=None):
        if name not in self.names:
            return None
        self.names.discard(name)   # each module once; found below as without this finder
        if not self.names:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return None
        run_module = spec.loader.exec_module

        def run_and_patch(module):
            run_module(module)
            PATCHES[name](module)

        spec.loader.exec_module = run_and_patch
        return spec


def actor_alive_in_gcs(actor_id, timeout=None):
    """Ray Train's ``is_actor_alive``, read from the GCS this process is connected to: False once
    the actor is DEAD or unknown there. A failed read raises ``RayStateApiException``, which Ray
    Train's callers catch and retry. ``timeout`` is the State API's; the GCS call has its own."""
    from ray._private.state import state
    from ray.util.state.exception import RayStateApiException

    try:
        info = state.actor_table(actor_id)
    except Exception as err:  # noqa: BLE001 - any failed read is "unknown, ask again", as Ray's callers expect
        raise RayStateApiException(f"actor {actor_id} not read from the GCS: {err}") from err
    return bool(info) and info["State"] != "DEAD"


def _check_in_gcs(module):
    if callable(getattr(module, "is_actor_alive", None)):   # another Ray: nothing to fix
        module.is_actor_alive = actor_alive_in_gcs


def _stop_without_waiting(module):
    callback = getattr(module, "PlacementGroupCleanerCallback", None)
    if callback is None or not hasattr(callback, "_stop_cleaner"):   # another Ray: nothing to fix
        return

    def stop_without_waiting(self):
        if getattr(self, "_cleaner", None) is None:
            return
        try:
            self._cleaner.stop.remote()
        except Exception as err:  # noqa: BLE001 - as Ray's own stop: a failed stop is logged, not raised
            logging.getLogger(__name__).warning("PlacementGroupCleaner stop not sent: %s", err)

    callback._stop_cleaner = stop_without_waiting


PATCHES = {STATE_UTIL: _check_in_gcs, CALLBACKS: _stop_without_waiting}
