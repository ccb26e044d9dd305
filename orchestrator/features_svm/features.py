"""D's features (paper section 5.1): every conv hidden layer's activations max-pooled to a 4x4 grid,
flattened and concatenated (32 px, ndf 32: 32x16 + 64x16 + 128x16 = 3,584 features an image).

Images come from the data cache (the uint8 copy training reads, scaled the data set's way), labels
from the data set itself (IDX data sets hold them as one array). D runs in eval mode: BatchNorm
normalises with the running statistics training left, so an image's features do not depend on the
batch it is in.
"""
import numpy as np
import torch
import torch.nn.functional as F

from trainables.data import DataRequest, build_dataset
from trainables.data.cache import open_cache

GRID = 4      # each layer max-pooled to GRID x GRID (the paper's 4x4)
BATCH = 500   # images per forward pass


def labelled_split(cfg, split):
    """``(images, labels)`` of a split of the run's data set: the data cache's entry (``images.batch``)
    and an int64 array of class labels."""
    request = DataRequest(cfg.dataset, image_size=cfg.image_size, nc=cfg.nc, data_root=cfg.data_root, split=split)
    labels = np.asarray(build_dataset(request).labels, dtype=np.int64)
    return open_cache(request), labels


@torch.no_grad()
def d_features(netD, images, indices):
    """``(len(indices), n_features)`` float32: ``netD``'s hidden layers on the images at ``indices``,
    each max-pooled to GRID x GRID, flattened, input side first."""
    netD.eval()
    pooled = []

    def tap(_module, _inputs, out):
        pooled.append(F.adaptive_max_pool2d(out, GRID).flatten(1))

    hooks = [layer.register_forward_hook(tap) for layer in netD.hidden_layers()]
    rows = []
    try:
        for start in range(0, len(indices), BATCH):
            pooled.clear()
            netD(images.batch(indices[start:start + BATCH], "cpu"))
            rows.append(torch.cat(pooled, 1).numpy())
    finally:
        for hook in hooks:
            hook.remove()
    return np.concatenate(rows)
