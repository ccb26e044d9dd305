"""A numbered contact sheet: samples with their z kept, so exemplars can be picked by index."""
import torch

from trainables.latent.figures import grid
from trainables.latent.generator import render
from trainables.latent.queries import attribute_values
from trainables.latent.report import Report
from trainables.models import sample_z


def run_sheet(netG, *, nz, z_dist, n=64, seed=0, evaluator=None):
    """``n`` samples from ``seed``; with an evaluator, each sample's attributes as it reads them."""
    z = sample_z(n, nz, z_dist, generator=torch.Generator().manual_seed(seed))
    images = render(netG, z)
    numbers = {"n": n, "seed": seed}
    if evaluator is not None and evaluator.spec.heads:
        values = attribute_values(evaluator, images)
        numbers["attributes"] = {name: v.nonzero().flatten().tolist() for name, v in values.items()}
    return Report(numbers, {"sheet": grid(images, 8, numbers=True)}, {"z": z.numpy()})
