"""The domain evaluators' networks: a small CNN with one head per label, and a small U-Net.

Both expose ``features(x) -> (N, FEATURE_DIM)``: the representation FD is measured in.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

FEATURE_DIM = 256


def _conv(c_in, c_out, stride=1):
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]


class HeadNet(nn.Module):
    """Strided conv trunk down to 4x4, a FEATURE_DIM penultimate layer, one linear head per label.

    ``heads`` maps a label key to its number of outputs.
    """

    def __init__(self, nc, image_size, heads, width=32):
        super().__init__()
        layers, ch_in, ch = [], nc, width
        for _ in range(int(math.log2(image_size // 4))):
            # state size. (ch) x (side/2) x (side/2)
            layers += _conv(ch_in, ch, stride=2) + _conv(ch, ch)
            ch_in, ch = ch, min(2 * ch, 128)
        self.trunk = nn.Sequential(*layers)
        # state size. (ch_in) x 4 x 4 -> FEATURE_DIM
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(ch_in * 16, FEATURE_DIM), nn.ReLU(True))
        self.heads = nn.ModuleDict({key: nn.Linear(FEATURE_DIM, n_out) for key, n_out in heads.items()})

    def features(self, x):
        return self.embed(self.trunk(x))

    def forward(self, x):
        h = self.features(x)
        return {key: head(h) for key, head in self.heads.items()}


class SegNet(nn.Module):
    """A three-level U-Net giving per-pixel logits over ``n_classes`` (background included).

    Features: the bottleneck (1/8 resolution) average-pooled to 2x2, so FD sees the layout.
    """

    def __init__(self, nc, n_classes, width=16):
        super().__init__()
        c = width
        self.enc0 = nn.Sequential(*_conv(nc, c))                               # c x s x s
        self.enc1 = nn.Sequential(*_conv(c, 2 * c, stride=2), *_conv(2 * c, 2 * c))  # 2c x s/2
        self.enc2 = nn.Sequential(*_conv(2 * c, 4 * c, stride=2), *_conv(4 * c, 4 * c))  # 4c x s/4
        self.enc3 = nn.Sequential(*_conv(4 * c, 4 * c, stride=2), *_conv(4 * c, 4 * c))  # 4c x s/8
        self.dec2 = nn.Sequential(*_conv(8 * c, 2 * c))                        # 2c x s/4
        self.dec1 = nn.Sequential(*_conv(4 * c, c))                            # c x s/2
        self.dec0 = nn.Sequential(*_conv(2 * c, c), nn.Conv2d(c, n_classes, 1))  # n_classes x s
        self.feature_dim = 16 * c

    def _encode(self, x):
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        return e0, e1, e2, self.enc3(e2)

    def features(self, x):
        return F.adaptive_avg_pool2d(self._encode(x)[-1], 2).flatten(1)

    def forward(self, x):
        e0, e1, e2, e3 = self._encode(x)
        d2 = self.dec2(torch.cat([_up(e3), e2], 1))
        d1 = self.dec1(torch.cat([_up(d2), e1], 1))
        return self.dec0(torch.cat([_up(d1), e0], 1))


def _up(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")
