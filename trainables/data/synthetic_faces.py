"""synthetic-faces: procedural head-and-shoulders portraits with known factors of variation.

They stand in for the paper's face data set: ``long_hair`` plays woman/man, ``smiling`` and
``glasses`` are the attributes of its vector arithmetic, and ``yaw`` is the head turn it
interpolates. Every factor is drawn independently and balanced; the rest (head shape, feature
placement, shirt colour) is nuisance, varied so that no two faces are alike.

Labels, per image:
    long_hair, smiling, glasses   bool ()
    yaw                           float32 ()    uniform in [-1, 1]; > 0 turns the face towards
                                                the image's right
    skin_tone, hair_color         int64 ()      uniform over 0..4 (SKIN_TONES, HAIR_COLORS)
    background                    float32 (3,)  RGB in [0, 1]
"""
import math
from dataclasses import dataclass

import torch

from trainables.data.registry import DataRequest, register_dataset
from trainables.data.render import Canvas, RenderedDataset, hsv, scale_pixels, shade

SKIN_TONES = (                                     # skin_tone indexes these, light to dark
    (1.00, 0.87, 0.77), (0.94, 0.76, 0.61), (0.80, 0.58, 0.42), (0.63, 0.43, 0.30), (0.46, 0.31, 0.22),
)
HAIR_COLORS = (                                    # hair_color indexes these: black, brown, blonde, red, gray
    (0.10, 0.08, 0.08), (0.27, 0.16, 0.08), (0.90, 0.75, 0.42), (0.68, 0.26, 0.12), (0.70, 0.70, 0.70),
)
MAX_TURN = 0.8                                     # radians of head turn at yaw = +-1 (about 46 degrees)
EYE_WHITE = (0.97, 0.97, 0.97)
IRIS = (0.18, 0.12, 0.10)
LIPS = (0.55, 0.12, 0.15)
GLASSES = (0.05, 0.05, 0.07)                       # dark and thick: legible at 32 px
LENS_TINT = (0.85, 0.92, 1.0)                      # a pale blue glare, blended 40% over the skin

LABEL_KEYS = ("long_hair", "smiling", "glasses", "yaw", "skin_tone", "hair_color", "background")


@dataclass(frozen=True)
class Face:
    """Every random choice behind one face; the first seven are the labelled factors."""

    long_hair: bool
    smiling: bool
    glasses: bool
    yaw: float              # -1 (facing left) .. 1 (facing right), as the viewer sees it
    skin_tone: int
    hair_color: int
    background: tuple       # RGB in [0, 1]
    head_w: float           # half width of the skull, in image widths
    head_h: float           # half height of the head
    head_y: float           # vertical centre of the head
    eye_angle: float        # azimuth of each eye from the face's midline, radians
    eye_y: float
    mouth_y: float
    mouth_w: float          # half width of the mouth seen from the front
    shirt: tuple


def sample(rng):
    """Draw one face's factors and nuisance from ``rng``."""
    head_y = rng.uniform(0.46, 0.50)
    return Face(
        long_hair=rng.random() < 0.5,
        smiling=rng.random() < 0.5,
        glasses=rng.random() < 0.5,
        yaw=rng.uniform(-1.0, 1.0),
        skin_tone=rng.integers(len(SKIN_TONES)),
        hair_color=rng.integers(len(HAIR_COLORS)),
        background=hsv(rng.random(), rng.uniform(0.15, 0.6), rng.uniform(0.45, 0.95)),
        head_w=rng.uniform(0.25, 0.29),
        head_h=rng.uniform(0.32, 0.36),
        head_y=head_y,
        eye_angle=rng.uniform(0.38, 0.48),
        eye_y=head_y + rng.uniform(-0.03, 0.0),
        mouth_y=head_y + rng.uniform(0.19, 0.22),
        mouth_w=rng.uniform(0.10, 0.13),
        shirt=hsv(rng.random(), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.9)),
    )


def labels(face):
    return {
        "long_hair": torch.tensor(face.long_hair),
        "smiling": torch.tensor(face.smiling),
        "glasses": torch.tensor(face.glasses),
        "yaw": torch.tensor(face.yaw, dtype=torch.float32),
        "skin_tone": torch.tensor(face.skin_tone),
        "hair_color": torch.tensor(face.hair_color),
        "background": torch.tensor(face.background, dtype=torch.float32),
    }


def _box(x, y, half_w, half_h):
    return (x - half_w, y - half_h, x + half_w, y + half_h)


def draw(face, size):
    """Render ``face`` as a ``size`` x ``size`` PIL image; return it with its labels."""
    canvas = Canvas(size, face.background)
    skin = SKIN_TONES[face.skin_tone]
    hair = HAIR_COLORS[face.hair_color]
    turn = face.yaw * MAX_TURN
    sin_t = math.sin(turn)
    cx, cy, rw, rh = 0.5, face.head_y, face.head_w, face.head_h

    def across(azimuth, depth=1.0):
        # Where a point on the head's surface at this azimuth lands once the head is turned.
        return cx + rw * depth * math.sin(azimuth + turn)

    # The skull swings back and the jaw forward as the head turns, so the outline changes too.
    skull = _box(cx - 0.12 * rw * sin_t, cy - 0.08 * rh, rw, 0.88 * rh)
    jaw = _box(cx + 0.22 * rw * sin_t, cy + 0.10 * rh, 0.86 * rw * (1 - 0.1 * abs(sin_t)), 0.88 * rh)
    skull_x = (skull[0] + skull[2]) / 2

    # (1) Body: long hair hangs behind the neck onto the shoulders.
    if face.long_hair:
        canvas.rounded_rect((skull_x - 1.3 * rw, cy - rh, skull_x + 1.3 * rw, 1.05), rw, hair)
    canvas.rect((cx - 0.32 * rw + 0.1 * rw * sin_t, cy + 0.5 * rh,
                 cx + 0.32 * rw + 0.1 * rw * sin_t, 0.95), shade(skin, 0.85))
    canvas.ellipse(_box(cx - 0.05 * sin_t, 1.12, 0.48, 0.26), face.shirt)

    # (2) Head: hair behind, ears, skull and jaw, then the fringe over the forehead.
    canvas.chord((skull[0] - 0.03, skull[1] - 0.035, skull[2] + 0.03, skull[3]), 160, 380, hair)
    ears = []
    for side in (-1, 1):
        azimuth = side * (math.pi / 2 + 0.15) + turn
        half_w = 0.04 + 0.025 * max(0.0, math.cos(azimuth))   # seen flat when it faces the viewer
        ears.append((math.cos(azimuth) > 0, _box(cx + rw * math.sin(azimuth), face.eye_y + 0.04, half_w, 0.085)))
    ear_color = shade(skin, 0.9)
    for in_front, ear in ears:
        if not in_front:
            canvas.ellipse(ear, ear_color)
    canvas.ellipse(skull, skin)
    canvas.ellipse(jaw, skin)
    for in_front, ear in ears:
        if in_front:   # turned towards the viewer: the ear sits on the side of the face
            canvas.ellipse(ear, ear_color)
            x, y = (ear[0] + ear[2]) / 2, (ear[1] + ear[3]) / 2
            canvas.ellipse(_box(x, y, 0.4 * (ear[2] - ear[0]) / 2, 0.045), shade(skin, 0.7))
    canvas.chord(skull, 200, 340, hair)

    # (3) Features: brows, eyes, nose and mouth, each foreshortened by the turn. Lenses are
    # tinted before the eyes go on top, so glasses read on dark skin too.
    eyes = []
    for side in (-1, 1):
        azimuth = side * face.eye_angle
        x, half_w = across(azimuth, 0.95), 0.05 * math.cos(azimuth + turn)
        eyes.append((x, half_w))
    lenses = [_box(x, face.eye_y, half_w + 0.035, 0.06) for x, half_w in eyes]
    if face.glasses:
        for lens in lenses:
            canvas.rect(lens, tuple(0.6 * c + 0.4 * t for c, t in zip(skin, LENS_TINT)))
    y = face.eye_y
    for x, half_w in eyes:
        canvas.line([(x - 1.15 * half_w, y - 0.065), (x + 1.15 * half_w, y - 0.065)], 0.024, shade(hair, 0.8))
        canvas.ellipse(_box(x, y, half_w, 0.028), EYE_WHITE)
        canvas.ellipse(_box(x + 0.35 * half_w * sin_t, y, 0.5 * half_w, 0.026), IRIS)
    nose_top, nose_tip = across(0.0), across(0.0, 1.2)
    half_nostrils = 0.04 * math.cos(turn)
    canvas.polygon([(nose_top - 0.012, y + 0.02), (nose_top + 0.012, y + 0.02),
                    (nose_tip + half_nostrils, y + 0.13), (nose_tip - half_nostrils, y + 0.13)], shade(skin, 0.72))
    mouth_x, mouth_w = across(0.0), face.mouth_w * math.cos(turn) ** 0.7
    if face.smiling:   # an open grin: the lower half of an ellipse, teeth along its top edge
        canvas.chord(_box(mouth_x, face.mouth_y, mouth_w, 0.07), 0, 180, LIPS)
        canvas.chord(_box(mouth_x, face.mouth_y, 0.8 * mouth_w, 0.03), 0, 180, EYE_WHITE)
    else:
        flat = face.mouth_y + 0.025
        canvas.line([(mouth_x - 0.75 * mouth_w, flat), (mouth_x + 0.75 * mouth_w, flat)], 0.028, LIPS)

    # (4) Glasses: thick dark frames around both eyes, a bridge, temples running to the ears.
    if face.glasses:
        for lens in lenses:
            canvas.frame(lens, 0.045, GLASSES)
        canvas.line([(lenses[0][2], y - 0.02), (lenses[1][0], y - 0.02)], 0.03, GLASSES)
        for (_, ear), lens, side in zip(ears, lenses, (-1, 1)):
            outer = lens[0] if side < 0 else lens[2]
            ear_x = (ear[0] + ear[2]) / 2
            if side * (ear_x - outer) > 0:   # the ear shows beyond the lens: run a temple to it
                canvas.line([(outer, y - 0.03), (ear_x, y - 0.01)], 0.03, GLASSES)
    return canvas.finish(), labels(face)


@register_dataset("synthetic-faces", scale=scale_pixels, synthetic=True, label_keys=LABEL_KEYS,
                  summary="procedural faces with factors " + ", ".join(LABEL_KEYS))
def build(request: DataRequest):
    return RenderedDataset(request, sample, draw)
