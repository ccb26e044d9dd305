"""A workaround for a Ray Train 2.60 delay, applied in every Ray worker process (the Train
controller's among them) by ``ray.init(runtime_env={"worker_process_setup_hook": ...})``.

At the end of every Train run the controller asks its PlacementGroupCleaner (a detached actor
that removes the run's placement group if the controller dies) to stop, and waits for the answer
with a 12 s timeout; on this machine the cleaner's monitor thread never exits in time, so every
run ended 12 s after its last step ("Failed to stop PlacementGroupCleaner gracefully", measured on
every smoke run, with or without the dashboard). Here the controller sends the stop and goes on.
The cleaner still stops itself; were it to outlive the controller first, it finds the placement
group already removed (the controller removes it on a clean shutdown) and exits.
"""
import importlib.util
import logging
import sys

SETUP_HOOK = "trainables.ray_fixes.setup_worker"
CALLBACKS = "ray.train.v2._internal.callbacks.placement_group_callback"


def setup_worker():
    """Ray's worker_process_setup_hook: patch the controller's cleaner stop to send, not wait, in
    the processes that import Ray Train's callbacks (the Train controllers), when they do. Importing
    them here in every worker instead cost each one 0.7 s of CPU (they pull in pandas and pyarrow):
    a Train run starts six worker processes and a sweep one per trial, most of which never use them."""
    if CALLBACKS in sys.modules:
        _patch(sys.modules[CALLBACKS])
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


class _PatchOnImport:
    """A meta-path finder that finds nothing itself: when Ray Train's callbacks module is imported,
    it lets the other finders find it and patches the module once it has run."""

    def find_spec(self, name, path, target=None):
        if name != CALLBACKS:
            return None
        sys.meta_path.remove(self)   # one module, once; found as without this finder
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return None
        run_module = spec.loader.exec_module

        def run_and_patch(module):
            run_module(module)
            _patch(module)

        spec.loader.exec_module = run_and_patch
        return spec


def _patch(module):
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
