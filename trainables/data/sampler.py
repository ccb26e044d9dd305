"""A distributed batch sampler that can start in the middle of an epoch.

Each epoch is a fresh permutation seeded by ``(seed, epoch)``; rank ``r`` of ``w`` takes every
``w``-th batch slot. Resuming at ``start_step`` skips the consumed batches without loading them,
so a resumed run sees exactly the images an uninterrupted one would.
"""
import torch


class ResumableBatchSampler:
    def __init__(self, n_items, batch_size, rank=0, world_size=1, seed=0, start_step=0):
        self.n_items, self.batch_size = n_items, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        # Every rank takes batch_size items per step; incomplete steps are dropped.
        self.steps_per_epoch = n_items // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{n_items} items cannot fill one step of {batch_size} x {world_size} workers")
        self.start_step = start_step

    def epoch_batches(self, epoch):
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.n_items, generator=g)
        per_step = self.batch_size * self.world_size
        for i in range(self.steps_per_epoch):
            chunk = perm[i * per_step:(i + 1) * per_step]
            yield chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size].tolist()

    def __iter__(self):
        """Batches forever from ``start_step`` on; the loop decides when to stop."""
        epoch, skip = divmod(self.start_step, self.steps_per_epoch)
        while True:
            for i, batch in enumerate(self.epoch_batches(epoch)):
                if i >= skip:
                    yield batch
            epoch, skip = epoch + 1, 0
