"""Checkpoints: one file of plain tensors and numbers, written atomically (``trainables.atomic``),
loaded safely.

``weights_only=True`` refuses pickled code, so a planted checkpoint cannot run anything.
"""
import pickle

import torch

from trainables.accel import unwrap

CHECKPOINT_FILE = "state.pt"


def load_safe(path, map_location="cpu"):
    """Tensors and plain containers only. A file that holds anything else (pickled code) or is cut
    short is refused with one line naming it; nothing in it runs."""
    from trainables.errors import UserError, first_line

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        what = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        raise UserError(f"{path}: refused: not a plain weights file ({what or 'unsafe pickle'})") from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise UserError(f"{path}: refused: damaged or incomplete ({first_line(err, 160)})") from None


def training_state(step, netG, netD, optG, optD, fixed_noise, cfg_dict):
    """Everything a resumed run needs. Noise and data order are derived from (seed, rank, step),
    so no generator state has to be carried; the fixed noise is stored as drawn."""
    return {
        "step": step,
        "netG": unwrap(netG).state_dict(),
        "netD": unwrap(netD).state_dict(),
        "optG": optG.state_dict(),
        "optD": optD.state_dict(),
        "fixed_noise": fixed_noise.cpu(),
        "torch_rng": torch.get_rng_state(),
        "config": cfg_dict,
    }


def restore_training_state(state, netG, netD, optG, optD):
    unwrap(netG).load_state_dict(state["netG"])
    unwrap(netD).load_state_dict(state["netD"])
    optG.load_state_dict(state["optG"])
    optD.load_state_dict(state["optD"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["fixed_noise"]

