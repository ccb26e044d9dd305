"""The DCGAN generator and discriminator (paper section 3), with a choice of BatchNorm placement.

Layer counts follow ``image_size``: a 4x4 map is doubled ``log2(image_size / 4)`` times. No conv
has a bias, as in the reference nets; D ends in a logit (the loss takes logits).
"""
import math

import torch
from torch import nn

# Which net gets BatchNorm on its hidden layers, and whether the paper's two exceptions
# (G's output layer, D's input layer) get it too.
BN_RULES = {
    #          G hidden, D hidden, G output + D input
    "paper": (True, True, False),
    "all": (True, True, True),
    "none": (False, False, False),
    "g_only": (True, False, False),
    "d_only": (False, True, False),
}


def n_upsamplings(image_size):
    return int(math.log2(image_size // 4))


class Generator(nn.Module):
    def __init__(self, nz=100, ngf=64, nc=3, image_size=64, bn_placement="paper"):
        super().__init__()
        bn_hidden, _, bn_edges = BN_RULES[bn_placement]
        n_up = n_upsamplings(image_size)
        ch = ngf * 2 ** (n_up - 1)
        # input is Z, going into a convolution; state size. (ngf*2^(n_up-1)) x 4 x 4
        layers = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), *_norm(ch, bn_hidden), nn.ReLU(True)]
        for _ in range(n_up - 1):
            # state size. (ch/2) x (2*side) x (2*side)
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), *_norm(ch // 2, bn_hidden), nn.ReLU(True)]
            ch //= 2
        # state size. (nc) x image_size x image_size
        layers += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), *_norm(nc, bn_edges), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.nz = nz

    def forward(self, z):
        return self.main(z.view(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    def __init__(self, ndf=64, nc=3, image_size=64, bn_placement="paper"):
        super().__init__()
        _, bn_hidden, bn_edges = BN_RULES[bn_placement]
        n_down = n_upsamplings(image_size)
        # input is (nc) x image_size x image_size; state size. (ndf) x (image_size/2) x (image_size/2)
        layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), *_norm(ndf, bn_edges), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for _ in range(n_down - 1):
            # state size. (2*ch) x (side/2) x (side/2)
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), *_norm(ch * 2, bn_hidden), nn.LeakyReLU(0.2, True)]
            ch *= 2
        # state size. (ndf*2^(n_down-1)) x 4 x 4 -> one logit
        layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x).view(-1)

    def hidden_layers(self):
        """The activation modules that end each hidden layer (D's feature taps)."""
        return [m for m in self.main if isinstance(m, nn.LeakyReLU)]


def _norm(ch, on):
    return [nn.BatchNorm2d(ch)] if on else []


def weights_init(m):
    """The paper's init: conv weights N(0, 0.02); BN weight N(1, 0.02), bias 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build_models(cfg):
    """G and D for a config, initialised the paper's way (callers seed the RNG first)."""
    netG = Generator(cfg.nz, cfg.ngf, cfg.nc, cfg.image_size, cfg.bn_placement)
    netD = Discriminator(cfg.ndf, cfg.nc, cfg.image_size, cfg.bn_placement)
    netG.apply(weights_init)
    netD.apply(weights_init)
    return netG, netD


def count_params(net):
    """Trainable parameters (BN running buffers are buffers, not counted)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def sample_z(n, nz, z_dist, generator=None, device="cpu"):
    if z_dist == "uniform":
        return torch.rand(n, nz, generator=generator, device=device) * 2 - 1
    return torch.randn(n, nz, generator=generator, device=device)
