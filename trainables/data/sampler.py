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

    def epoch_index(self, epoch):
        """This rank's batches of ``epoch``: a (steps_per_epoch, batch_size) tensor of item indices."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.n_items, generator=g)
        per_step = self.batch_size * self.world_size
        steps = perm[:self.steps_per_epoch * per_step].view(self.steps_per_epoch, self.world_size, self.batch_size)
        return steps[:, self.rank]

    def epochs(self):
        """``(epoch_index, batches to skip)`` from ``start_step`` on, forever."""
        epoch, skip = divmod(self.start_step, self.steps_per_epoch)
        while True:
            yield self.epoch_index(epoch), skip
            epoch, skip = epoch + 1, 0

    def __iter__(self):
        """Batches (lists of indices) forever from ``start_step`` on; the loop decides when to stop."""
        for index, skip in self.epochs():
            for row in index[skip:]:
                yield row.tolist()
