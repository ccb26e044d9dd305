"""Attribute coverage of a generator on synthetic faces: do the attribute combinations appear
as often as in the data?

Each image maps to one of the 2^3 combinations of the binary attributes ``long_hair``,
``smiling`` and ``glasses`` (ground truth for reals, the evaluator's prediction thresholded at
0.5 for fakes). From the two frequency vectors:

- ``coverage_kl`` = KL(p_real || p_fake) = sum_c p_real[c] log(p_real[c] / p_fake[c]). This
  direction punishes a combination the generator drops (p_fake -> 0) and is 0 for a perfect
  match. Counts get COVERAGE_EPS added before normalising, so a dropped combination costs a
  large but finite amount (about log(n / COVERAGE_EPS) times its real share).
- ``coverage_modes`` = the number of combinations whose fake frequency is at least
  MODE_MIN_RATIO times their real frequency (unsmoothed; combinations absent from the data
  do not count). The ratio, rather than "at least one sample",
  keeps the evaluator's few misclassifications of a collapsed generator from counting as modes.
"""
import math

import torch

from trainables.metrics.registry import COVERAGE_KL, COVERAGE_MODES, register_metric

COVERAGE_ATTRS = ("long_hair", "smiling", "glasses")
N_COMBOS = 2 ** len(COVERAGE_ATTRS)
COVERAGE_EPS = 0.5        # pseudo-count added to every combination (Jeffreys-style smoothing)
MODE_MIN_RATIO = 0.25     # a combination counts as covered at >= 1/4 of its real frequency


def attributes_to_combos(attrs, keys=COVERAGE_ATTRS):
    """The combination index (bit i = keys[i]) of every sample, from bool or probability tensors."""
    codes = torch.zeros(len(attrs[keys[0]]), dtype=torch.long)
    for bit, key in enumerate(keys):
        codes += (attrs[key].float() > 0.5).long() << bit
    return codes


def combos_to_frequencies(codes, n_combos=N_COMBOS, eps=COVERAGE_EPS):
    counts = torch.bincount(codes, minlength=n_combos).double() + eps
    return counts / counts.sum()


def coverage_kl(p_real, p_fake):
    return float(sum(p * math.log(p / q) for p, q in zip(p_real.tolist(), p_fake.tolist()) if p > 0))


def coverage_modes(p_real, p_fake, min_ratio=MODE_MIN_RATIO):
    """Combinations present in the data and generated at >= ``min_ratio`` of their real share
    (pass unsmoothed frequencies: smoothing would make absent combinations look present)."""
    return int(((p_real > 0) & (p_fake > 0) & (p_fake >= min_ratio * p_real)).sum())


@register_metric("coverage")
def coverage(inputs):
    real, fake = attributes_to_combos(inputs.real_labels), attributes_to_combos(inputs.fake_predictions)
    return {
        COVERAGE_KL: coverage_kl(combos_to_frequencies(real), combos_to_frequencies(fake)),
        COVERAGE_MODES: coverage_modes(combos_to_frequencies(real, eps=0), combos_to_frequencies(fake, eps=0)),
    }
