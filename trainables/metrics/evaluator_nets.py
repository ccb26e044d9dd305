"""The domain evaluators' networks: a small CNN with one head per label, and a small U-Net.

Both expose ``features(x) -> (N, feature_dim)``, the representation FD, KID and precision /
recall are measured in. Both are kept small on purpose: an evaluator trains in minutes on two
CPU cores, and the synthetic data sets are easy enough that accuracy is not the limit.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

FEATURE_DIM = 256     # HeadNet's penultimate layer
SEG_BASE_SIZE = 32    # SegNet resolves masks at up to 32x32 and upsamples its logits beyond


def _conv(c_in, c_out, stride=1):
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]


class HeadNet(nn.Module):
    """Strided convs down to 4x4, a FEATURE_DIM penultimate layer, one linear head per label.

    ``heads`` maps a label key to its number of outputs.
    """

    def __init__(self, nc, image_size, heads, width=16):
        super().__init__()
        layers, ch_in, ch = [], nc, width
        for _ in range(int(math.log2(image_size // 4))):
            # state size. (ch) x (side/2) x (side/2)
            layers += _conv(ch_in, ch, stride=2)
            ch_in, ch = ch, min(2 * ch, 128)
        self.trunk = nn.Sequential(*layers)
        # state size. (ch_in) x 4 x 4 -> FEATURE_DIM
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(ch_in * 16, FEATURE_DIM), nn.ReLU(True))
        self.heads = nn.ModuleDict({key: nn.Linear(FEATURE_DIM, n_out) for key, n_out in heads.items()})
        self.feature_dim = FEATURE_DIM

    def features(self, x):
        return self.embed(self.trunk(x))

    def forward(self, x):
        h = self.features(x)
        return {key: head(h) for key, head in self.heads.items()}


class SegNet(nn.Module):
    """A three-level U-Net giving per-pixel logits over ``n_classes`` (background included).

    Above SEG_BASE_SIZE a stem of strided convs brings the image down to it first, and the
    logits are upsampled bilinearly: the cost stays that of a 32x32 image. Features: the
    bottleneck (1/8 of the base size) average-pooled to 2x2, so FD sees the room's layout.
    """

    def __init__(self, nc, image_size, n_classes, width=12):
        super().__init__()
        c = width
        stem, ch_in = [], nc
        for _ in range(int(math.log2(max(1, image_size // SEG_BASE_SIZE)))):
            stem += _conv(ch_in, c, stride=2)
            ch_in = c
        self.stem = nn.Sequential(*stem)                                                 # base x base
        self.enc0 = nn.Sequential(*_conv(ch_in, c))                                      # c x base
        self.enc1 = nn.Sequential(*_conv(c, 2 * c, stride=2), *_conv(2 * c, 2 * c))      # 2c x base/2
        self.enc2 = nn.Sequential(*_conv(2 * c, 4 * c, stride=2), *_conv(4 * c, 4 * c))  # 4c x base/4
        self.enc3 = nn.Sequential(*_conv(4 * c, 4 * c, stride=2), *_conv(4 * c, 4 * c))  # 4c x base/8
        self.dec2 = nn.Sequential(*_conv(8 * c, 2 * c))                                  # 2c x base/4
        self.dec1 = nn.Sequential(*_conv(4 * c, c))                                      # c x base/2
        self.dec0 = nn.Sequential(*_conv(2 * c, c), nn.Conv2d(c, n_classes, 1))          # n_classes x base
        self.image_size = image_size
        self.feature_dim = 4 * c * 4

    def _encode(self, x):
        e0 = self.enc0(self.stem(x))
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        return e0, e1, e2, self.enc3(e2)

    def features(self, x):
        return F.adaptive_avg_pool2d(self._encode(x)[-1], 2).flatten(1)

    def forward(self, x):
        e0, e1, e2, e3 = self._encode(x)
        d2 = self.dec2(torch.cat([_up(e3), e2], 1))
        d1 = self.dec1(torch.cat([_up(d2), e1], 1))
        logits = self.dec0(torch.cat([_up(d1), e0], 1))
        if logits.shape[-1] != self.image_size:
            logits = F.interpolate(logits, size=self.image_size, mode="bilinear", align_corners=False)
        return logits


def _up(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")
