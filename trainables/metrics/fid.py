"""Choosing the feature space: standard FID (Inception-v3) when its weights are on disk, else
the data set's own evaluator.

FID proper is FD in the pool3 features (2048-d) of Inception-v3 with the TF-ported 2015-12-05
weights, computed here by torch-fidelity's network through torchmetrics' NoTrainInceptionV3.
Those weights are never downloaded from here: they are used when ``inception_weights`` names the
file or torch-fidelity's download cache already holds it. The metric is still reported under the
evaluator's name (``fd_inception``), like every other FD.
"""
import os

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from trainables.data.render import images_to_pixels
from trainables.errors import UserError
from trainables.metrics.evaluators import BASE_METRICS, get_evaluator
from trainables.metrics.frozen import sha256_of

FEATURE_EXTRACTORS = ("auto", "domain", "inception")
INCEPTION_FILE = os.path.basename(URL_INCEPTION_V3)   # weights-inception-2015-12-05-6726825d.pth


class InceptionFeatures:
    """Inception-v3 pool3 features of images in [-1, 1], grey ones repeated to RGB."""

    name, dim, metrics, key = "inception", 2048, BASE_METRICS, "inception-2015-12-05"

    def __init__(self, weights_path, nc=3):
        from torchmetrics.image.fid import NoTrainInceptionV3  # slow import: only when used

        # antialias=False: TF1's bilinear resize to 299, as the published FIDs used
        # (the resize method moves FID by several points).
        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                      feature_extractor_weights_path=weights_path, antialias=False)
        self.nc = nc
        self.sha256 = sha256_of(weights_path)   # logged with each run, as a domain evaluator's is

    def to(self, device):
        self.net.to(device)
        return self

    @torch.inference_mode()
    def features(self, images):
        device = next(self.net.parameters()).device
        pixels = images_to_pixels(images.to(device))
        if pixels.shape[1] == 1:
            pixels = pixels.repeat(1, 3, 1, 1)
        return self.net(pixels).float().cpu()

    def predict(self, images):
        return {}


def default_inception_path():
    """Where torch-fidelity's own download would have put the weights."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", INCEPTION_FILE)


def find_inception_weights(inception_weights=None):
    """(path, None) when the weights file exists, else (None, a one-line how-to)."""
    path = inception_weights or default_inception_path()
    if os.path.isfile(path):
        return path, None
    return None, (f"FID skipped: Inception weights not found at {path}; download {INCEPTION_FILE} from "
                  f"{URL_INCEPTION_V3} on a machine with internet and set inception_weights=PATH")


def feature_space(name, inception_weights=None):
    """(``inception`` or ``domain``, the weights' path or None, a note on missing weights or None):
    which feature space ``feature_extractor=name`` measures in, decided without building anything.
    ``inception`` needs the weights; ``domain`` is the data set's own evaluator; ``auto`` takes
    Inception when its weights are present and the domain evaluator otherwise."""
    if name not in FEATURE_EXTRACTORS:
        raise UserError(f"feature_extractor={name!r} is unknown: choose one of {', '.join(FEATURE_EXTRACTORS)}")
    path, missing = find_inception_weights(inception_weights) if name != "domain" else (None, None)
    if path:
        return "inception", path, None
    if name == "inception":
        raise UserError(missing)
    return "domain", None, missing


def resolve_feature_extractor(name, dataset, inception_weights=None, *, image_size=64, nc=3):
    """The evaluator of ``feature_space(name, ...)`` (Inception, or the data set's own frozen one),
    and a note for the log ("" when none)."""
    space, path, missing = feature_space(name, inception_weights)
    if space == "inception":
        return InceptionFeatures(path, nc), ""
    evaluator = get_evaluator(dataset, image_size, nc=nc)
    note = f"{missing}; measuring fd_{evaluator.name} with the domain evaluator instead" if missing else ""
    return evaluator, note
