"""The paper's networks: exact parameter counts, BN placement layer by layer, init, shapes."""
import pytest
import torch
from torch import nn

from orchestrator.config import resolve_config
from trainables.models import Discriminator, Generator, build_models, count_params


def test_reference_parameter_counts():
    # The PyTorch tutorial nets at 64x64, nz=100, ngf=ndf=64, nc=3 (PAPER.md section 1).
    assert count_params(Generator(100, 64, 3, 64, "paper")) == 3_576_704
    assert count_params(Discriminator(64, 3, 64, "paper")) == 2_765_568


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("nc", [1, 3])
def test_shapes_follow_image_size(size, nc):
    netG, netD = Generator(16, 8, nc, size), Discriminator(8, nc, size)
    x = netG(torch.randn(3, 16))
    assert x.shape == (3, nc, size, size)
    assert x.abs().max() <= 1.0
    assert netD(x).shape == (3,)


def _layer_kinds(net):
    """The module types in order, e.g. ['ConvTranspose2d', 'BatchNorm2d', 'ReLU', ...]."""
    return [type(m).__name__ for m in net.main]


def _bn_after_each_conv(net):
    kinds = _layer_kinds(net)
    return [kinds[i + 1:i + 2] == ["BatchNorm2d"] for i, k in enumerate(kinds) if k.startswith("Conv")]


@pytest.mark.parametrize("placement, g_expected, d_expected", [
    # 64x64 nets: G has 5 convs (last = output), D has 5 convs (first = input, last = logit).
    ("paper", [True, True, True, True, False], [False, True, True, True, False]),
    ("all", [True, True, True, True, True], [True, True, True, True, False]),
    ("none", [False] * 5, [False] * 5),
    ("g_only", [True, True, True, True, False], [False] * 5),
    ("d_only", [False] * 5, [False, True, True, True, False]),
])
def test_bn_placement_layers(placement, g_expected, d_expected):
    netG, netD = Generator(100, 64, 3, 64, placement), Discriminator(64, 3, 64, placement)
    assert _bn_after_each_conv(netG) == g_expected
    assert _bn_after_each_conv(netD) == d_expected
    # The activations are the paper's whatever the placement.
    assert _layer_kinds(netG)[-1] == "Tanh"
    assert all(m.negative_slope == 0.2 for m in netD.main if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, (nn.Sigmoid, nn.Linear, nn.MaxPool2d)) for m in netD.modules())
    assert all(m.bias is None for m in [*netG.modules(), *netD.modules()] if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def test_paper_init():
    torch.manual_seed(0)
    netG, netD = build_models(resolve_config(overrides={"image_size": 64}))
    convs = torch.cat([m.weight.flatten() for m in [*netG.modules(), *netD.modules()]
                       if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    bn_w = torch.cat([m.weight for m in netG.modules() if isinstance(m, nn.BatchNorm2d)])
    bn_b = torch.cat([m.bias for m in netG.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(convs.mean()) < 1e-3 and abs(convs.std() - 0.02) < 1e-3
    assert abs(bn_w.mean() - 1) < 5e-3 and abs(bn_w.std() - 0.02) < 5e-3
    assert torch.all(bn_b == 0)


def test_dry_run_prints_both_counts(forks):
    r = forks.cli("train", "--set", "image_size=64", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "G = 3,576,704" in r.stdout and "D = 2,765,568" in r.stdout
    assert "lr: 0.0002" in r.stdout and "beta1: 0.5" in r.stdout


@pytest.mark.parametrize("option,value", [("g_upsample", "resize_conv"), ("d_downsample", "maxpool"),
                                          ("d_head", "gap"), ("d_head", "fc"), ("g_activation", "leaky_relu"),
                                          ("d_activation", "relu")])
def test_architecture_alternatives(option, value):
    """Each of the paper's section 3 guidelines has its alternative; the rest stays the paper's."""
    cfg = resolve_config(overrides={"image_size": 32, "ngf": 8, "ndf": 8, option: value})
    netG, netD = build_models(cfg)
    kinds_g, kinds_d = _layer_kinds(netG), _layer_kinds(netD)
    z = torch.randn(5, cfg.nz)
    x = netG(z)
    assert x.shape == (5, 3, 32, 32) and netD(x).shape == (5,)
    expect = {
        "g_upsample": lambda: kinds_g.count("Upsample") == 3 and kinds_g.count("ConvTranspose2d") == 1
        and kinds_g.count("Conv2d") == 3,
        "d_downsample": lambda: kinds_d.count("MaxPool2d") == 3 and all(
            m.stride == (1, 1) for m in netD.modules() if isinstance(m, nn.Conv2d)),
        "d_head": lambda: (kinds_d[-2:] == ["Conv2d", "AdaptiveAvgPool2d"] and
                           netD.main[-2].kernel_size == (1, 1)) if value == "gap" else
        (kinds_d[-4:] == ["Flatten", "Linear", "LeakyReLU", "Linear"] and netD.main[-3].in_features == 32 * 16),
        "g_activation": lambda: "ReLU" not in kinds_g and kinds_g.count("LeakyReLU") == 3,
        "d_activation": lambda: "LeakyReLU" not in kinds_d and kinds_d.count("ReLU") == 3,
    }[option]
    assert expect(), (kinds_g, kinds_d)
    # D's feature taps stay one per hidden layer, at the layer's output resolution.
    feats = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: feats.append(o.shape)) for m in netD.hidden_layers()]
    netD(x)
    for h in hooks:
        h.remove()
    assert [f[1:] for f in feats] == [(8, 16, 16), (16, 8, 8), (32, 4, 4)]


def test_architecture_defaults_are_the_papers():
    cfg = resolve_config()
    assert (cfg.g_upsample, cfg.d_downsample, cfg.d_head, cfg.g_activation, cfg.d_activation) == \
        ("transposed", "strided", "conv", "relu", "leaky_relu")
    netG, netD = build_models(resolve_config(overrides={"image_size": 64}))
    assert count_params(netG) == 3_576_704 and count_params(netD) == 2_765_568
