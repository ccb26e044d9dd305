"""Training batches from a uint8 image array held on the device: no DataLoader, no host work per step.

The array (N x C x H x W uint8, e.g. the data cache's) moves to the device once per trial; each
epoch's indices, the resumable sampler's, once per epoch, so a resumed run sees the images an
uninterrupted one would. A batch is then an ``index_select`` and a table lookup on the device.

The table holds the float value of each of the 256 pixel values as the data set's own CPU
conversion (``scale``) computes it, so a batch equals the CPU path's bit for bit on any device.
Running ``scale`` itself on CUDA would not promise that: CUDA divides by a scalar as a
multiplication by its reciprocal, which can differ from the CPU's division in the last bit.
"""
import numpy as np
import torch

CHUNK = 4096   # images copied to the device at once: the host holds one chunk, not the data set


def pixel_table(scale, device):
    """(256,) float32: ``scale`` (uint8 -> float, elementwise) of every uint8 value, computed on the CPU."""
    return scale(torch.arange(256, dtype=torch.uint8)).to(device)


def device_batches(pixels, sampler, device, scale):
    """Float batches in [-1, 1] on ``device``, one per step from the sampler's ``start_step`` on, forever.

    ``pixels``: uint8 N x C x H x W, a numpy array (a memory map is read once) or a tensor; ``sampler``: a
    ``ResumableBatchSampler`` over the N items; ``scale``: the data set's uint8 -> float conversion.
    The array moves to the device now (an out-of-memory error is raised here, not at the first batch).
    """
    resident = torch.empty(tuple(pixels.shape), dtype=torch.uint8, device=device)
    for i in range(0, len(pixels), CHUNK):   # read once, off the memory map, a chunk at a time
        chunk = pixels[i:i + CHUNK]
        resident[i:i + CHUNK] = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.array(chunk))
    table = pixel_table(scale, device)
    return _batches(resident, table, sampler, device)


def _batches(resident, table, sampler, device):
    for index, skip in sampler.epochs():
        index = index.to(device)
        for row in index[skip:]:
            yield table[resident.index_select(0, row).long()]
