"""The DCGAN generator and discriminator (paper section 3), with a choice of BatchNorm placement and
of the alternatives to each architecture guideline (for the ablations).

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


# The paper's section 3 guidelines, each with the alternative it argues against (architecture ablations).
G_UPSAMPLES = ("transposed", "resize_conv")    # fractionally-strided convs | nearest resize + 3x3 conv
D_DOWNSAMPLES = ("strided", "maxpool")         # strided convs | 3x3 conv + 2x2 max-pooling
D_HEADS = ("conv", "gap", "fc")                # 4x4 conv to one logit | global average pooling | FC hidden layer
ACTIVATIONS = ("relu", "leaky_relu")
FC_HIDDEN = 1024                               # width of D's fully connected hidden layer (d_head=fc)


def _act(name):
    return nn.LeakyReLU(0.2, True) if name == "leaky_relu" else nn.ReLU(True)


class Generator(nn.Module):
    def __init__(self, nz=100, ngf=64, nc=3, image_size=64, bn_placement="paper",
                 upsample="transposed", activation="relu"):
        super().__init__()
        bn_hidden, _, bn_edges = BN_RULES[bn_placement]
        n_up = n_upsamplings(image_size)
        ch = ngf * 2 ** (n_up - 1)
        # input is Z, going into a convolution (the paper's projection); state size. (ngf*2^(n_up-1)) x 4 x 4
        layers = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), *_norm(ch, bn_hidden), _act(activation)]
        for _ in range(n_up - 1):
            # state size. (ch/2) x (2*side) x (2*side)
            layers += [*_upsample(ch, ch // 2, upsample), *_norm(ch // 2, bn_hidden), _act(activation)]
            ch //= 2
        # state size. (nc) x image_size x image_size
        layers += [*_upsample(ch, nc, upsample), *_norm(nc, bn_edges), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.nz = nz

    def forward(self, z):
        return self.main(z.view(z.shape[0], -1, 1, 1))


def _upsample(c_in, c_out, how):
    if how == "resize_conv":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)]
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)]


def _downsample(c_in, c_out, how):
    if how == "maxpool":
        return [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)], [nn.MaxPool2d(2)]
    return [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)], []


class Discriminator(nn.Module):
    def __init__(self, ndf=64, nc=3, image_size=64, bn_placement="paper",
                 downsample="strided", head="conv", activation="leaky_relu"):
        super().__init__()
        _, bn_hidden, bn_edges = BN_RULES[bn_placement]
        n_down = n_upsamplings(image_size)
        self._taps = []  # the module that ends each hidden layer (D's feature taps)
        layers, ch = [], nc
        for i in range(n_down):
            # state size. (ndf*2^i) x (side/2) x (side/2)
            out = ndf * 2 ** i
            conv, pool = _downsample(ch, out, downsample)
            layers += [*conv, *_norm(out, bn_edges if i == 0 else bn_hidden), _act(activation), *pool]
            self._taps.append(layers[-1])
            ch = out
        # state size. (ndf*2^(n_down-1)) x 4 x 4 -> one logit
        if head == "gap":
            layers += [nn.Conv2d(ch, 1, 1, 1, 0, bias=False), nn.AdaptiveAvgPool2d(1)]
        elif head == "fc":
            layers += [nn.Flatten(), nn.Linear(ch * 16, FC_HIDDEN), _act(activation), nn.Linear(FC_HIDDEN, 1)]
        else:
            layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)

    def forward(self, x):
        return self.main(x).view(-1)

    def hidden_layers(self):
        """The modules that end each conv hidden layer (D's feature taps), input side first."""
        return list(self._taps)


def _norm(ch, on):
    return [nn.BatchNorm2d(ch)] if on else []


def weights_init(m):
    """The paper's init: conv weights N(0, 0.02); BN weight N(1, 0.02), bias 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build_models(cfg):
    """G and D for a config, initialised the paper's way (callers seed the RNG first)."""
    netG, netD = build_generator(cfg), build_discriminator(cfg)
    netG.apply(weights_init)
    netD.apply(weights_init)
    return netG, netD


def build_generator(cfg):
    """G for a config, uninitialised (for loading weights)."""
    return Generator(cfg.nz, cfg.ngf, cfg.nc, cfg.image_size, cfg.bn_placement, cfg.g_upsample, cfg.g_activation)


def build_discriminator(cfg):
    """D for a config, uninitialised (for loading weights)."""
    return Discriminator(cfg.ndf, cfg.nc, cfg.image_size, cfg.bn_placement, cfg.d_downsample, cfg.d_head,
                         cfg.d_activation)


def count_params(net):
    """Trainable parameters (BN running buffers are buffers, not counted)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def sample_z(n, nz, z_dist, generator=None, device="cpu"):
    if z_dist == "uniform":
        return torch.rand(n, nz, generator=generator, device=device) * 2 - 1
    return torch.randn(n, nz, generator=generator, device=device)
