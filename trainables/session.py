"""Where the training loop runs, and whom it reports to: the only Ray calls the loop makes.

``TrainSession``: a Ray Train worker (one DDP rank of a TorchTrainer). ``TrialSession``: a
single-worker Tune trial training in the trial's own process, with no Train controller and no
worker group to start (seconds per trial on a small machine); Tune keeps its checkpoints and
restarts it from them.
"""
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from trainables.atomic import save_atomic
from trainables.checkpoints import CHECKPOINT_FILE, load_safe


class TrainSession:
    def __init__(self):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self._train = ray.train

    def prepare_model(self, net):
        import ray.train.torch

        return ray.train.torch.prepare_model(net)

    def load_checkpoint(self):
        return _load(self._train.get_checkpoint())

    def report(self, metrics, state=None):
        """Every rank reports (a barrier); rank 0 attaches the checkpoint when ``state`` is given."""
        with _saved(state) as d:
            self._train.report(metrics, checkpoint=self._train.Checkpoint.from_directory(d) if d else None)


class TrialSession:
    rank, world = 0, 1

    def __init__(self, use_gpu, gpu_share=1.0):
        self.device = torch.device("cuda" if use_gpu else "cpu")
        if use_gpu and gpu_share < 1:
            # Ray's fractional GPUs are a count, not a limit: cap this trial's allocator at its
            # share, so a trial too big for it fails alone instead of starving its neighbours.
            torch.cuda.set_per_process_memory_fraction(gpu_share, self.device)

    def prepare_model(self, net):
        return net.to(self.device)

    def load_checkpoint(self):
        import ray.tune

        return _load(ray.tune.get_checkpoint())

    def report(self, metrics, state=None):
        import ray.tune

        with _saved(state) as d:
            ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(d) if d else None)


def _load(checkpoint):
    """The training state in a Ray checkpoint, or None."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return load_safe(Path(d) / CHECKPOINT_FILE)


@contextmanager
def _saved(state):
    """A temporary directory holding ``state`` (None: no directory)."""
    if state is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        save_atomic(state, Path(tmp) / CHECKPOINT_FILE)
        yield tmp
