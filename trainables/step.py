"""One DCGAN training step (paper section 4, PyTorch reference loop), free of Ray.

Per minibatch: (1) one D update on a real batch (label 1) and the detached fake batch (label 0),
gradients summed, one Adam step; (2) one G update with the non-saturating loss through the
updated D. Losses stay on the device; callers read them (a host sync) only when they log.

``StepMode`` says how the step runs: forward passes under autocast for bf16 / fp16 (fp16 with a
gradient scaler per net, so each loss keeps its own scale), batches in NHWC for
``channels_last``. Its defaults are the paper's fp32 step, bit for bit as before.
"""
import contextlib
import copy
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from trainables.accel import unwrap
from trainables.models import sample_z

LOSS_KEYS = ("loss_d", "loss_g", "d_real", "d_fake", "d_fake_g")


def make_optimizers(cfg, netG, netD):
    betas = (cfg.beta1, cfg.beta2)
    # foreach Adam: one fused kernel launch per parameter group rather than per tensor.
    optG = torch.optim.Adam(netG.parameters(), lr=cfg.lr_g_value, betas=betas, foreach=True)
    optD = torch.optim.Adam(netD.parameters(), lr=cfg.lr_d_value, betas=betas, foreach=True)
    return optG, optD


AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class StepMode:
    device_type: str = "cpu"      # where the step runs: autocast and the scalers follow it
    precision: str = "fp32"       # an AUTOCAST_DTYPES name
    channels_last: bool = False   # NHWC batches (trainables.accel converts the nets)
    cuda_graphs: bool = False     # the nets are compiled with mode="reduce-overhead"

    @classmethod
    def of(cls, cfg, device):
        return cls(torch.device(device).type, cfg.precision, cfg.channels_last, cfg.compile == "reduce-overhead")


class GANStep:
    def __init__(self, netG, netD, optG, optD, nz, z_dist, mode=StepMode()):
        self.netG, self.netD, self.optG, self.optD = netG, netD, optG, optD
        self.nz, self.z_dist, self.mode = nz, z_dist, mode
        self.criterion = nn.BCEWithLogitsLoss()
        dtype = AUTOCAST_DTYPES[mode.precision]
        self.autocast = (lambda: torch.autocast(mode.device_type, dtype=dtype)) if dtype else contextlib.nullcontext
        # Disabled (fp32, bf16), a scaler passes the loss and the optimizer step through unchanged.
        self.scalers = {net: torch.amp.GradScaler(mode.device_type, enabled=mode.precision == "fp16")
                        for net in ("G", "D")}

    def __call__(self, real, noise_gen):
        netG, netD, criterion = self.netG, self.netD, self.criterion
        scalerG, scalerD = self.scalers["G"], self.scalers["D"]
        if self.mode.cuda_graphs:  # the last step's graph outputs may be overwritten from here on
            torch.compiler.cudagraph_mark_step_begin()
        if self.mode.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        b = real.shape[0]
        ones = torch.ones(b, device=real.device)
        zeros = torch.zeros(b, device=real.device)

        ############################
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        ###########################
        netD.zero_grad(set_to_none=True)
        with self.autocast():
            out_real = netD(real)
            errD_real = criterion(out_real, ones)
        scalerD.scale(errD_real).backward()
        # Noise comes from the generator's device (on a GPU: no host copy, no sync each step).
        noise = sample_z(b, self.nz, self.z_dist, generator=noise_gen, device=noise_gen.device).to(real.device)
        with self.autocast():
            fake = netG(noise)
            out_fake = netD(fake.detach())
            errD_fake = criterion(out_fake, zeros)
        scalerD.scale(errD_fake).backward()
        scalerD.step(self.optD)
        scalerD.update()

        ############################
        # (2) Update G: maximize log(D(G(z))) (the non-saturating loss)
        ###########################
        netG.zero_grad(set_to_none=True)
        # D's gradients from this pass are thrown away at the next D step: skip their all-reduce.
        with _no_sync(netD):
            with self.autocast():
                out_g = netD(fake)
                errG = criterion(out_g, ones)
            scalerG.scale(errG).backward()
        scalerG.step(self.optG)
        scalerG.update()

        with torch.no_grad():  # D's outputs are bf16 / fp16 under autocast; the losses fp32 already
            return {
                "loss_d": errD_real + errD_fake,
                "loss_g": errG,
                "d_real": torch.sigmoid(out_real.float()).mean(),
                "d_fake": torch.sigmoid(out_fake.float()).mean(),
                "d_fake_g": torch.sigmoid(out_g.float()).mean(),
            }

    def state_dict(self):
        """The fp16 loss scales (empty otherwise): a resumed run scales as an uninterrupted one."""
        return {net: s.state_dict() for net, s in self.scalers.items()}

    def load_state_dict(self, state):
        for net, s in state.items():
            self.scalers[net].load_state_dict(s)


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
    """Samples in training-mode BN (the reference's way) without touching BN's running stats.
    Eager (``forward``, not a compiled ``__call__``) and with local BN statistics."""
    net = local_batchnorm(unwrap(netG))
    saved = {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}
    was_training = net.training
    net.train()
    try:
        return net.forward(z)
    finally:
        net.load_state_dict(saved, strict=False)
        net.train(was_training)


def local_batchnorm(net):
    """``net``, or a copy with plain BatchNorm2d for its SyncBatchNorm layers: samples drawn on one
    rank (the grids) or in uneven shares (evaluation) must not wait on the other ranks' statistics."""
    syncs = [(parent, name, child) for parent in net.modules() for name, child in parent.named_children()
             if isinstance(child, nn.SyncBatchNorm)]
    if not syncs:
        return net
    memo = {}
    net = copy.deepcopy(net, memo)
    for parent, name, child in syncs:
        bn = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, device=child.weight.device)
        bn.load_state_dict(child.state_dict())
        setattr(memo[id(parent)], name, bn)
    return net


def noise_generator(seed, rank, step, device="cpu"):
    """Step-derived noise on ``device``: a resumed run draws exactly what an uninterrupted one would.
    A CUDA generator (Philox) draws a different stream from the CPU's for the same seed."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + rank * 10_007 + step) % (2**63))
