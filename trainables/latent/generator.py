"""G as a fixed function of z, and G cut where the paper cuts it (its second-highest conv layer).

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


def split_at_last_hidden(netG):
    """(trunk, head): the trunk ends with G's last hidden layer (the input of its output
    layer), the paper's "second highest convolution layer"; head(trunk(z)) == G(z)."""
    layers = list(netG.main)
    last_act = max(i for i, m in enumerate(layers) if isinstance(m, (nn.ReLU, nn.LeakyReLU)))
    return nn.Sequential(*layers[:last_act + 1]), nn.Sequential(*layers[last_act + 1:])


@torch.no_grad()
def hidden_features(netG, z, batch_size=256):
    """The last hidden layer's maps: (N, C, h, w)."""
    trunk, _ = split_at_last_hidden(netG)
    return torch.cat([trunk(z[i:i + batch_size].view(-1, z.shape[1], 1, 1)) for i in range(0, len(z), batch_size)])


@torch.no_grad()
def render_dropped(netG, z, channels, batch_size=256):
    """G(z) with the last hidden layer's ``channels`` set to zero at every position; also
    returns the zeroed maps themselves, so callers can check they are all zero."""
    trunk, head = split_at_last_hidden(netG)
    images, dropped = [], []
    for i in range(0, len(z), batch_size):
        h = trunk(z[i:i + batch_size].view(-1, z.shape[1], 1, 1))
        h[:, channels] = 0
        dropped.append(h[:, channels])
        images.append(head(h))
    return torch.cat(images), torch.cat(dropped)
