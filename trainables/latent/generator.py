"""G as a fixed function of z, and G cut at any of its hidden layers (the paper cut its second-highest conv layer).

Training and ``trainables.step.generate`` run G's BatchNorm on each batch's own statistics, so
an image depends on the other z in its batch. The latent experiments feed G batches that are
anything but random (nine near-copies of one vector, one interpolation path), where batch
statistics would distort every image. :func:`fixed_bn` therefore re-estimates each BN layer's
statistics once, on a large batch from the prior, and runs G in eval mode: every z then maps to
one image, whatever it is batched with, and a random batch looks as it did in training.
"""
import copy

import torch
from torch import nn

from trainables.models import sample_z

BN_CALIBRATION_N = 1024   # prior samples behind each BN layer's fixed statistics


def fixed_bn(netG, nz, z_dist, n=BN_CALIBRATION_N, seed=0):
    """A copy of G in eval mode, its BN statistics those of ``n`` prior samples."""
    return calibrate_bn(netG, sample_z(n, nz, z_dist, generator=torch.Generator().manual_seed(seed)))


@torch.no_grad()
def calibrate_bn(net, inputs):
    """A copy of ``net`` in eval mode whose BN layers hold the exact statistics of ``inputs``."""
    net = copy.deepcopy(net)
    for bn in net.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            bn.reset_running_stats()
            bn.momentum = None        # a cumulative average: one batch gives its exact statistics
    net.train()
    net(inputs)
    return net.eval()


@torch.no_grad()
def render(netG, z, batch_size=256):
    """G(z) in batches: (N, nc, H, W) in [-1, 1]."""
    return torch.cat([netG(z[i:i + batch_size]) for i in range(0, len(z), batch_size)])


def hidden_activations(netG):
    """Indices in ``netG.main`` of the modules that end each hidden layer, input side first."""
    return [i for i, m in enumerate(netG.main) if isinstance(m, (nn.ReLU, nn.LeakyReLU))]


def split_at_hidden(netG, layer=1):
    """(trunk, head) with head(trunk(z)) == G(z); the trunk ends with G's ``layer``-th hidden
    layer counted from the output: 1 is the last (the input of the output layer), 2 the one
    before, ... The paper's "second highest convolution layer" is one of the first two."""
    ends = hidden_activations(netG)
    assert 1 <= layer <= len(ends), f"layer={layer}: G has {len(ends)} hidden layers"
    cut = ends[-layer] + 1
    layers = list(netG.main)
    return nn.Sequential(*layers[:cut]), nn.Sequential(*layers[cut:])


@torch.no_grad()
def hidden_features(netG, z, layer=1, batch_size=256):
    """The maps of hidden layer ``layer`` (see :func:`split_at_hidden`): (N, C, h, w)."""
    trunk, _ = split_at_hidden(netG, layer)
    return torch.cat([trunk(z[i:i + batch_size].view(-1, z.shape[1], 1, 1)) for i in range(0, len(z), batch_size)])


@torch.no_grad()
def render_dropped(netG, z, channels, layer=1, batch_size=256):
    """G(z) with hidden layer ``layer``'s ``channels`` set to zero at every position; also
    returns the zeroed maps themselves, so callers can check they are all zero."""
    trunk, head = split_at_hidden(netG, layer)
    images, dropped = [], []
    for i in range(0, len(z), batch_size):
        h = trunk(z[i:i + batch_size].view(-1, z.shape[1], 1, 1))
        h[:, channels] = 0
        dropped.append(h[:, channels])
        images.append(head(h))
    return torch.cat(images), torch.cat(dropped)
