"""``dcgan-lab data preview``: a grid of a data set's images, and the balance of its labels.
``dcgan-lab data cache``: build a data set's entry in the data cache ahead of training."""
import itertools
import math
import os

from trainables.data.registry import DEFAULT_DATA_ROOT
from trainables.errors import UserError, bad_value

# Mask tints in the order a data set lists its mask keys (bedrooms: window red, bed blue,
# lamp yellow, picture green).
MASK_TINTS = [("red", (1.0, 0.0, 0.0)), ("blue", (0.0, 0.3, 1.0)), ("yellow", (1.0, 0.9, 0.0)),
              ("green", (0.0, 0.9, 0.2)), ("magenta", (1.0, 0.0, 1.0)), ("cyan", (0.0, 1.0, 1.0))]
TINT_ALPHA = 0.5
DATA_ROOT_HELP = ("real data sets: where they live (default ./data; fashion-mnist there or else Debian's "
                  "/usr/share/datasets/fashion-mnist)")


def add_subparser(subparsers):
    data = subparsers.add_parser("data", help="look at the data sets")
    verbs = data.add_subparsers(dest="data_command", required=True)
    p = verbs.add_parser("preview", help="write a grid of a data set's images and print the balance of its labels")
    # No list of names here: loading the registry imports torchvision, seconds on every command.
    # A wrong name gets the list in its error.
    p.add_argument("--dataset", required=True, help="a registered data set name")
    p.add_argument("--n", type=int, default=64, help="number of images (the first n)")
    p.add_argument("--image-size", "--size", dest="image_size", type=int, default=64,
                   help="synthetic data sets: 16, 32, 64 or 128")
    p.add_argument("--masks", action="store_true", help="tint the pixels of each mask (data sets with masks)")
    p.add_argument("--data-seed", "--seed", dest="data_seed", type=int, default=0,
                   help="synthetic data sets: the data set's seed")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help=DATA_ROOT_HELP)
    p.add_argument("--download", action="store_true", help="real data sets: let torchvision download them")
    p.add_argument("--out", required=True, help="output image, e.g. preview.png")
    p.set_defaults(func=cmd_preview)

    c = verbs.add_parser("cache", help="render or decode a data set into the data cache now (training reads it)")
    c.add_argument("--dataset", required=True, help="a registered data set name")
    c.add_argument("--image-size", "--size", dest="image_size", type=int, default=64, help="image side in pixels")
    c.add_argument("--nc", type=int, default=3, help="image channels (1 or 3)")
    c.add_argument("--dataset-size", "--length", dest="dataset_size", type=int, default=60000,
                   help="synthetic data sets: number of images")
    c.add_argument("--data-seed", "--seed", dest="data_seed", type=int, default=0,
                   help="synthetic data sets: the data set's seed")
    c.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help=DATA_ROOT_HELP)
    c.add_argument("--download", action="store_true", help="real data sets: let torchvision download them")
    c.add_argument("--workers", type=int, help="processes that render or decode (default: one per CPU)")
    c.set_defaults(func=cmd_cache)


def cmd_preview(args):
    import torch
    from torch.utils.data import default_collate

    from trainables.data import DataRequest, build_dataset, get_entry

    # Check every input before drawing anything, so a bad one writes nothing.
    if args.n < 1:
        raise bad_value("n", args.n, "a positive number of images")
    image_format = _image_format(args.out)
    entry = get_entry(args.dataset)
    mask_keys = [key for key in entry.label_keys if key.endswith("_mask")]
    if args.masks and not mask_keys:
        raise UserError(f"--masks: dataset={args.dataset!r} has no masks "
                        f"(label keys: {', '.join(entry.label_keys) or 'none'})")
    dataset = build_dataset(DataRequest(args.dataset, image_size=args.image_size, data_root=args.data_root,
                                        download=args.download, data_seed=args.data_seed))

    # Draw the first n images and batch their labels.
    items = [dataset[i] for i in range(min(args.n, len(dataset)))]
    images = torch.stack([image for image, _ in items])
    labels = default_collate([item_labels for _, item_labels in items])
    if args.masks:
        images = tint_masks(images, [labels[key] for key in mask_keys])

    # Written atomically: a failed write leaves no half-written image.
    save_grid(images, args.out, image_format)
    print(f"wrote {args.out}: {len(items)} images of {args.dataset} at {args.image_size}x{args.image_size}")
    if args.masks:
        print("masks: " + ", ".join(f"{key} {name}" for key, (name, _) in zip(mask_keys, itertools.cycle(MASK_TINTS))))
    for line in label_balance(labels):
        print(line)
    return 0


def cmd_cache(args):
    import os

    from trainables.data import DataRequest
    from trainables.data.cache import ensure_cache
    from trainables.data.registry import resolve_data_root

    if args.workers is not None and args.workers < 0:
        raise bad_value("workers", args.workers, ">= 0 (0: render in this process)")
    root = os.path.abspath(resolve_data_root(args.dataset, args.data_root))   # the cache fingerprints its files
    request = DataRequest(args.dataset, image_size=args.image_size, nc=args.nc, data_root=root,
                          download=args.download, dataset_size=args.dataset_size, data_seed=args.data_seed)
    workers = os.cpu_count() if args.workers is None else args.workers
    path = ensure_cache(request, workers=workers, progress=True)
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MB")
    return 0


def _image_format(path):
    from PIL import Image

    image_format = Image.registered_extensions().get(os.path.splitext(path)[1].lower())
    if image_format not in Image.SAVE:
        raise bad_value("out", path, "an image file PIL can write, e.g. preview.png")
    return image_format


def tint_masks(images, masks):
    """Images in [-1, 1], RGB, with each mask's pixels blended half-way towards its tint."""
    import torch

    rgb = (images.expand(-1, 3, -1, -1) + 1) / 2
    for mask, (_, tint) in zip(masks, itertools.cycle(MASK_TINTS)):
        weight = TINT_ALPHA * mask.unsqueeze(1).float()
        rgb = rgb * (1 - weight) + torch.tensor(tint).view(1, 3, 1, 1) * weight
    return rgb * 2 - 1


def save_grid(images, path, image_format):
    from torchvision.utils import save_image

    from trainables.atomic import atomic_file

    with atomic_file(path) as f:
        save_image(images, f, format=image_format, nrow=math.ceil(math.sqrt(len(images))),
                   normalize=True, value_range=(-1, 1), padding=2)


def label_balance(labels):
    """One line per label: mean of booleans and floats, counts of integer categories."""
    import torch

    lines = []
    for key, values in labels.items():
        if values.dtype == torch.bool:
            if values.dim() == 1:
                lines.append(f"{key}: mean {values.float().mean():.3f}")
            else:   # a mask: how much of the image it covers, and how often it is empty
                present = values.flatten(1).any(1)
                lines.append(f"{key}: mean coverage {values.float().mean():.3f}, "
                             f"non-empty in {int(present.sum())} of {len(values)}")
        elif not values.is_floating_point():
            found, counts = values.flatten().unique(return_counts=True)
            lines.append(f"{key}: counts " + ", ".join(f"{v}: {c}" for v, c in zip(found.tolist(), counts.tolist())))
        elif values.dim() <= 2:
            means = values.float().mean(0).flatten().tolist()
            lines.append(f"{key}: mean " + ", ".join(f"{m:.3f}" for m in means))
        else:
            lines.append(f"{key}: {tuple(values.shape[1:])} per image")
    return lines
