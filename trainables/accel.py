"""How the nets run on their device: SyncBatchNorm under DDP, memory layout, torch.compile,
cuDNN's autotuner, and out-of-memory errors that name the setting to change.

The defaults (plain BN, contiguous layout, eager, no autotuning) leave the nets as the paper's
fp32 step has them; precision is the step's own (``trainables.step.StepMode``).
"""
import contextlib

import torch
from torch import nn


def configure_backends(cfg):
    """Process-wide switches, set once per worker before the first step."""
    torch.backends.cudnn.benchmark = cfg.cudnn_benchmark


def prepare_nets(cfg, session, *nets):
    """Each net converted (``convert_net``), then placed by the session (device, DDP)."""
    return [session.prepare_model(convert_net(cfg, session.world, net)) for net in nets]


def unwrap(net):
    """The net inside its DDP wrapper (the net itself when there is none): the module whose
    state_dict keys checkpoints and logged models use."""
    return getattr(net, "module", net)


def convert_net(cfg, world, net):
    """SyncBatchNorm (under DDP: ``world`` > 1), NHWC layout and compilation, in that order.

    SyncBatchNorm comes before DDP, which must wrap the final modules (and refuses them on CPU).
    The module itself is compiled (``nn.Module.compile``: its state_dict keys stay those of
    checkpoints and logged models) before DDP wraps it, so DDP's gradient hooks see the compiled
    backward's gradients.
    """
    if cfg.sync_bn and world > 1:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if cfg.compile != "none":
        net.compile(mode=cfg.compile)
    return net


class DeviceMemoryError(RuntimeError):
    """A run that does not fit in its device's memory; the message is one line naming the setting."""


@contextlib.contextmanager
def memory_named(cfg):
    """Turn an out-of-memory error into one line that names what to change: the trial's GPU share
    when it has one (its allocator is capped there), else the batch. ``cfg``: the config as a dict."""
    try:
        yield
    except torch.OutOfMemoryError as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else "out of memory"
        if cfg["use_gpu"] and cfg["gpus_per_trial"] < 1:
            msg = (f"gpus_per_trial={cfg['gpus_per_trial']!r} is too small for this trial ({first}): "
                   "raise gpus_per_trial, or lower batch_size")
        else:
            where = "GPU" if cfg["use_gpu"] else "host"
            msg = f"batch_size={cfg['batch_size']!r} does not fit in the {where}'s memory ({first}): lower batch_size"
        raise DeviceMemoryError(msg) from None
