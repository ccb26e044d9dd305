"""Real images for the experiments that compare with data: a fixed set per split."""
import torch

from trainables.data import DataRequest, build_dataset, get_entry
from trainables.errors import UserError

LOAD_BATCH = 500


def load_images(dataset, image_size, nc, split, n, data_root="./data", data_seed=0, train_length=None):
    """``(images in [-1, 1], labels)`` of ``n`` images of a split. Synthetic sets: the first ``n``
    (of the ``train_length`` a run trained on, for the train split); real sets: a seeded random
    subset, so the set does not depend on the files' order."""
    synthetic = get_entry(dataset).synthetic
    length = (train_length or n) if split == "train" else n
    request = DataRequest(dataset, image_size=image_size, nc=nc, data_root=data_root, split=split,
                          dataset_size=length if synthetic else 60000, data_seed=data_seed)
    data = build_dataset(request)
    n = min(n, len(data))
    if n < 2:
        raise UserError(f"dataset={dataset!r} has {len(data)} {split} image(s) under data_root={data_root!r}; need more")
    order = torch.arange(n) if synthetic else torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, order.tolist()), batch_size=LOAD_BATCH)
    images, labels = [], []
    for x, y in loader:
        images.append(x)
        labels.append(y)
    return torch.cat(images), {key: torch.cat([y[key] for y in labels]) for key in labels[0]}
