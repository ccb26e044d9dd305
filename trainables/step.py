"""One DCGAN training step (paper section 4, PyTorch reference loop), free of Ray.

Per minibatch: (1) one D update on a real batch (label 1) and the detached fake batch (label 0),
gradients summed, one Adam step; (2) one G update with the non-saturating loss through the
updated D. Losses stay on the device; callers read them (a host sync) only when they log.
"""
import contextlib

import torch
import torch.distributed as dist
from torch import nn

from trainables.models import sample_z

LOSS_KEYS = ("loss_d", "loss_g", "d_real", "d_fake", "d_fake_g")


def make_optimizers(cfg, netG, netD):
    betas = (cfg.beta1, cfg.beta2)
    # foreach Adam: one fused kernel launch per parameter group rather than per tensor.
    optG = torch.optim.Adam(netG.parameters(), lr=cfg.lr_g_value, betas=betas, foreach=True)
    optD = torch.optim.Adam(netD.parameters(), lr=cfg.lr_d_value, betas=betas, foreach=True)
    return optG, optD


class GANStep:
    def __init__(self, netG, netD, optG, optD, nz, z_dist):
        self.netG, self.netD, self.optG, self.optD = netG, netD, optG, optD
        self.nz, self.z_dist = nz, z_dist
        self.criterion = nn.BCEWithLogitsLoss()

    def __call__(self, real, noise_gen):
        netG, netD, criterion = self.netG, self.netD, self.criterion
        b = real.shape[0]
        ones = torch.ones(b, device=real.device)
        zeros = torch.zeros(b, device=real.device)

        ############################
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        ###########################
        netD.zero_grad(set_to_none=True)
        out_real = netD(real)
        errD_real = criterion(out_real, ones)
        errD_real.backward()
        noise = sample_z(b, self.nz, self.z_dist, generator=noise_gen).to(real.device)
        fake = netG(noise)
        out_fake = netD(fake.detach())
        errD_fake = criterion(out_fake, zeros)
        errD_fake.backward()
        self.optD.step()

        ############################
        # (2) Update G: maximize log(D(G(z))) (the non-saturating loss)
        ###########################
        netG.zero_grad(set_to_none=True)
        # D's gradients from this pass are thrown away at the next D step: skip their all-reduce.
        with _no_sync(netD):
            out_g = netD(fake)
            errG = criterion(out_g, ones)
            errG.backward()
        self.optG.step()

        with torch.no_grad():
            return {
                "loss_d": errD_real + errD_fake,
                "loss_g": errG,
                "d_real": torch.sigmoid(out_real).mean(),
                "d_fake": torch.sigmoid(out_fake).mean(),
                "d_fake_g": torch.sigmoid(out_g).mean(),
            }


def all_ranks(flag, world, device):
    """True when ``flag`` holds on every rank (a MIN all-reduce), so that all ranks branch alike."""
    if world == 1:
        return bool(flag)
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def reduce_outputs(out, world):
    """(the step's LOSS_KEYS as floats, means over ranks; whether they were finite on every rank).
    Two small all-reduces and a host sync: callers do this on logging steps only."""
    values = torch.stack([out[k].detach().float() for k in LOSS_KEYS])
    finite = all_ranks(bool(torch.isfinite(values).all()), world, values.device)
    if world > 1:
        dist.all_reduce(values)
        values /= world
    return dict(zip(LOSS_KEYS, values.tolist())), finite


def _no_sync(net):
    return net.no_sync() if hasattr(net, "no_sync") else contextlib.nullcontext()


@torch.no_grad()
def generate(netG, z):
    """Samples in training-mode BN (the reference's way) without touching BN's running stats."""
    net = getattr(netG, "module", netG)
    saved = {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}
    was_training = net.training
    net.train()
    try:
        return net(z)
    finally:
        net.load_state_dict(saved, strict=False)
        net.train(was_training)


def noise_generator(seed, rank, step):
    """Step-derived noise: a resumed run draws exactly what an uninterrupted one would."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 10_007 + step) % (2**63))
