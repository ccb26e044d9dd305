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
import logging

SETUP_HOOK = "trainables.ray_fixes.setup_worker"


def setup_worker():
    """Ray's worker_process_setup_hook: patch the controller's cleaner stop to send, not wait."""
    try:
        from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    except ImportError:   # another Ray: nothing to fix
        return

    def stop_without_waiting(self):
        if getattr(self, "_cleaner", None) is None:
            return
        try:
            self._cleaner.stop.remote()
        except Exception as err:  # noqa: BLE001 - as Ray's own stop: a failed stop is logged, not raised
            logging.getLogger(__name__).warning("PlacementGroupCleaner stop not sent: %s", err)

    if hasattr(PlacementGroupCleanerCallback, "_stop_cleaner"):
        PlacementGroupCleanerCallback._stop_cleaner = stop_without_waiting
