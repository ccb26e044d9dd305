"""synthetic-bedrooms: procedural bedrooms with per-pixel ground truth for the objects in them.

They stand in for the paper's LSUN bedrooms, whose window-dropout experiment needs to know
where the windows are: every image comes with the number of windows, their boxes, and masks of
the windows, the bed, the lamp and the picture, taken from the very subpixels they were drawn on.

The room is a one-point-perspective box: a back wall, side walls, ceiling and floor. The bed
stands against the back wall; windows and a picture hang on it; a lamp stands on a nightstand
beside the bed. Window count (0, 1, 2), lamp and picture are drawn independently and balanced.

Labels, per image:
    windows        int64 ()        number of windows
    window_boxes   float32 (2, 4)  x0, y0, x1, y1 of each window as fractions of the image,
                                   left to right; rows past ``windows`` are -1
    lamp, picture  bool ()         whether the room has one
    *_mask         bool (size, size) for window, bed, lamp, picture: the pixels where the
                                   object is visible (not hidden behind another) on at least
                                   half of the pixel
"""
from dataclasses import dataclass
from typing import Optional

import torch

from trainables.data.registry import DataRequest, register_dataset
from trainables.data.render import INSIDE, Canvas, RenderedDataset, hsv, scale_pixels, shade

MAX_WINDOWS = 2                       # window_boxes is padded to this many rows with -1
WINDOW, BED, LAMP, PICTURE = 1, 2, 3, 4   # object ids: channels of the canvas's object layer
SHEET = (0.95, 0.95, 0.92)
LABEL_KEYS = ("windows", "window_boxes", "lamp", "picture", "window_mask", "bed_mask", "lamp_mask", "picture_mask")


@dataclass(frozen=True)
class Window:
    box: tuple              # x0, y0, x1, y1 of the frame, as fractions of the image
    frame: tuple            # colours
    sky: tuple


@dataclass(frozen=True)
class Picture:
    box: tuple
    frame: tuple
    sky: tuple              # the painting: a landscape of sky, hills and a sun
    hill: tuple


@dataclass(frozen=True)
class Lamp:
    x0: float               # the nightstand's extent along the back wall
    x1: float
    stand_h: float          # nightstand height
    shade: tuple


@dataclass(frozen=True)
class Bedroom:
    """Every random choice behind one bedroom."""

    back: tuple             # x0, y0, x1, y1 of the back wall; its centre is the vanishing point
    wall: tuple
    floor: tuple
    ceiling: tuple
    bed_x0: float           # the bed's extent along the back wall
    bed_x1: float
    bed_h: float            # mattress height
    headboard_h: float
    bed_depth: float        # how much nearer the foot of the bed is than the wall (a scale > 1)
    bed_frame: tuple
    blanket: tuple
    blanket_from: float     # fraction of the bed's length left uncovered at the head
    pillows: int
    windows: tuple          # 0 to MAX_WINDOWS Window
    picture: Optional[Picture]
    lamp: Optional[Lamp]


def _wood(rng):
    return hsv(rng.uniform(0.05, 0.1), rng.uniform(0.4, 0.7), rng.uniform(0.3, 0.65))


def _sky(rng):
    return hsv(rng.uniform(0.53, 0.6), rng.uniform(0.25, 0.6), rng.uniform(0.85, 1.0))


def sample(rng):
    """Draw one bedroom's layout and colours from ``rng``."""
    # Room: the back wall's corners fix the perspective.
    x0, x1 = rng.uniform(0.1, 0.22), rng.uniform(0.78, 0.9)
    y0, y1 = rng.uniform(0.06, 0.16), rng.uniform(0.56, 0.68)
    width, height = x1 - x0, y1 - y0
    wall = hsv(rng.random(), rng.uniform(0.08, 0.35), rng.uniform(0.7, 0.92))
    floor = _wood(rng) if rng.random() < 0.6 else hsv(rng.random(), rng.uniform(0.05, 0.3), rng.uniform(0.35, 0.7))

    # Bed: leaves room on both sides for a nightstand.
    bed_w = rng.uniform(0.45, 0.62) * width
    bed_x0 = x0 + 0.17 * width + rng.random() * (0.66 * width - bed_w)

    # Windows and picture: each gets its own slot across the back wall, so none overlap.
    n_windows = rng.integers(MAX_WINDOWS + 1)
    has_picture = bool(rng.random() < 0.5)
    slots = rng.permutation(n_windows + has_picture)
    slot_w = width / max(1, len(slots))
    windows = []
    for slot in slots[:n_windows]:
        w = min(0.3, rng.uniform(0.55, 0.8) * slot_w)
        left = x0 + slot * slot_w + rng.random() * (slot_w - w)
        top = y0 + rng.uniform(0.06, 0.15) * height
        box = (left, top, left + w, top + rng.uniform(0.45, 0.65) * height)
        frame = (0.95, 0.95, 0.93) if rng.random() < 0.5 else _wood(rng)
        windows.append(Window(box, frame, _sky(rng)))
    windows.sort(key=lambda window: window.box[0])
    picture = None
    if has_picture:
        w = min(0.18, max(0.1, rng.uniform(0.45, 0.7) * slot_w))
        h = max(0.1, w * rng.uniform(0.7, 1.0))
        left = x0 + slots[-1] * slot_w + rng.random() * (slot_w - w)
        top = y0 + rng.uniform(0.2, 0.3) * height - h / 2
        picture = Picture((left, top, left + w, top + h), _wood(rng), _sky(rng),
                          hsv(rng.uniform(0.2, 0.4), rng.uniform(0.4, 0.8), rng.uniform(0.4, 0.8)))

    # Lamp: on a nightstand on either side of the bed.
    lamp = None
    if rng.random() < 0.5:
        stand_w = 0.1 * width
        gap = 0.04 * width
        left = bed_x0 - gap - stand_w if rng.random() < 0.5 else bed_x0 + bed_w + gap
        lamp = Lamp(left, left + stand_w, rng.uniform(0.22, 0.3) * height,
                    hsv(rng.uniform(0.08, 0.16), rng.uniform(0.2, 0.5), rng.uniform(0.9, 1.0)))

    return Bedroom(
        back=(x0, y0, x1, y1), wall=wall, floor=floor, ceiling=shade(wall, 1.12),
        bed_x0=bed_x0, bed_x1=bed_x0 + bed_w, bed_h=rng.uniform(0.18, 0.26) * height,
        headboard_h=rng.uniform(0.35, 0.5) * height, bed_depth=rng.uniform(1.6, 2.1),
        bed_frame=_wood(rng), blanket=hsv(rng.random(), rng.uniform(0.3, 0.8), rng.uniform(0.4, 0.9)),
        blanket_from=rng.uniform(0.3, 0.45), pillows=1 + rng.integers(2),
        windows=tuple(windows), picture=picture, lamp=lamp,
    )


def scene_labels(room):
    """The labels that need no drawing: window count and boxes, lamp, picture."""
    boxes = [window.box for window in room.windows] + [(-1.0,) * 4] * (MAX_WINDOWS - len(room.windows))
    return {
        "windows": torch.tensor(len(room.windows)),
        "window_boxes": torch.tensor(boxes, dtype=torch.float32),
        "lamp": torch.tensor(room.lamp is not None),
        "picture": torch.tensor(room.picture is not None),
    }


def labels(room, canvas):
    return {
        **scene_labels(room),
        "window_mask": canvas.mask(WINDOW),
        "bed_mask": canvas.mask(BED),
        "lamp_mask": canvas.mask(LAMP),
        "picture_mask": canvas.mask(PICTURE),
    }


def draw(room, size):
    """Render ``room`` as a ``size`` x ``size`` PIL image; return it with its labels."""
    canvas = Canvas(size, shade(room.wall, 0.85), objects=True)   # the background shows as side walls
    x0, y0, x1, y1 = room.back
    vx, vy = (x0 + x1) / 2, (y0 + y1) / 2

    def toward(x, y, k):
        # A point of the back wall's plane brought nearer: scaled by k away from the vanishing point.
        return (vx + (x - vx) * k, vy + (y - vy) * k)

    # Back to front, so that what stands in front hides what is behind, in colour and in masks.
    _draw_room(canvas, room, toward)
    _draw_wall_objects(canvas, room)
    if room.lamp:
        _draw_lamp(canvas, room, toward)
    _draw_bed(canvas, room, toward)
    return canvas.finish(), labels(room, canvas)


def _draw_room(canvas, room, toward):
    # Ceiling, floor, back wall. The floor boards are one zigzag line whose turns fall off the
    # canvas or behind the back wall.
    x0, y0, x1, y1 = room.back
    far = 12.0
    canvas.polygon([toward(x0, y0, far), toward(x1, y0, far), (x1, y0), (x0, y0)], room.ceiling)
    canvas.polygon([(x0, y1), (x1, y1), toward(x1, y1, far), toward(x0, y1, far)], room.floor)
    boards = []
    for i in range(1, 6):
        ends = [toward(x0 + (x1 - x0) * i / 6, y1, k) for k in (0.8, far)]
        boards += ends if i % 2 else ends[::-1]
    canvas.line(boards, 0.006, shade(room.floor, 0.85))
    canvas.rect(room.back, room.wall)


def _draw_wall_objects(canvas, room):
    # Windows (frame, sky, cross bars) and the picture (frame, a landscape). Each object's
    # outline goes into the object layer; its details are drawn INSIDE it.
    for window in room.windows:
        left, top, right, bottom = window.box
        inset = min(0.02, 0.11 * (right - left))
        canvas.rect(window.box, window.frame, WINDOW)
        canvas.rect((left + inset, top + inset, right - inset, bottom - inset), window.sky, INSIDE)
        x, y, bar = (left + right) / 2, top + 0.45 * (bottom - top), 0.35 * inset
        canvas.polygon([(x - bar, top), (x + bar, top), (x + bar, y - bar), (right, y - bar), (right, y + bar),
                        (x + bar, y + bar), (x + bar, bottom), (x - bar, bottom), (x - bar, y + bar), (left, y + bar),
                        (left, y - bar), (x - bar, y - bar)], window.frame, INSIDE)
    if room.picture:
        canvas.rect(room.picture.box, room.picture.frame, PICTURE)
        left, top, right, bottom = room.picture.box
        inset = 0.15 * (right - left)
        left, top, right, bottom = left + inset, top + inset, right - inset, bottom - inset
        w, h = right - left, bottom - top
        canvas.rect((left, top, right, bottom), room.picture.sky, INSIDE)
        sun = (left + 0.15 * w, top + 0.12 * h, left + 0.4 * w, top + 0.12 * h + 0.25 * w)
        canvas.ellipse(sun, (1.0, 0.9, 0.4), INSIDE)
        canvas.polygon([(left, bottom), (left + 0.4 * w, top + 0.45 * h), (left + 0.65 * w, top + 0.7 * h),
                        (right, top + 0.55 * h), (right, bottom)], room.picture.hill, INSIDE)


def _draw_lamp(canvas, room, toward):
    # The nightstand (scenery: not in any mask), then the lamp on it: base and stem, shade.
    lamp, y1 = room.lamp, room.back[3]
    stand_top = y1 - lamp.stand_h
    front = 1.12
    canvas.polygon([(lamp.x0, stand_top), (lamp.x1, stand_top), toward(lamp.x1, stand_top, front),
                    toward(lamp.x0, stand_top, front)], shade(room.bed_frame, 1.15))
    canvas.rect((*toward(lamp.x0, stand_top, front), *toward(lamp.x1, y1, front)), room.bed_frame)
    mid, half, k = (lamp.x0 + lamp.x1) / 2, 0.5 * (lamp.x1 - lamp.x0), 1.06
    base, stem, neck = 0.35 * half, 0.004, stand_top - 0.015
    canvas.polygon([toward(x, y, k) for x, y in (
        (mid - base, stand_top), (mid + base, stand_top), (mid + base, neck), (mid + stem, neck),
        (mid + stem, stand_top - 0.1), (mid - stem, stand_top - 0.1), (mid - stem, neck), (mid - base, neck))],
        (0.3, 0.28, 0.26), LAMP)
    canvas.polygon([toward(x, y, k) for x, y in (
        (mid - 0.6 * half, stand_top - 0.2), (mid + 0.6 * half, stand_top - 0.2),
        (mid + 1.05 * half, stand_top - 0.08), (mid - 1.05 * half, stand_top - 0.08))], lamp.shade, LAMP)


def _draw_bed(canvas, room, toward):
    # Headboard, the side facing the middle of the room, foot, sheet and pillows, then the
    # blanket over the foot with its turned-down edge.
    bx0, bx1, depth, y1 = room.bed_x0, room.bed_x1, room.bed_depth, room.back[3]
    vx = (room.back[0] + room.back[2]) / 2
    top = y1 - room.bed_h
    canvas.rounded_rect((bx0 - 0.01, y1 - room.headboard_h, bx1 + 0.01, y1), 0.02, shade(room.bed_frame, 0.9), BED)
    x = bx1 if bx1 < vx else bx0 if bx0 > vx else None   # a bed across the middle shows no side
    if x is not None:
        canvas.polygon([(x, top), toward(x, top, depth), toward(x, y1, depth), (x, y1)],
                       shade(room.bed_frame, 0.75), BED)
    canvas.polygon([toward(bx0, top, depth), toward(bx1, top, depth), toward(bx1, y1, depth), toward(bx0, y1, depth)],
                   room.bed_frame, BED)
    canvas.polygon([(bx0, top), (bx1, top), toward(bx1, top, depth), toward(bx0, top, depth)], SHEET, BED)
    pillow_w = (bx1 - bx0 - 0.02 * (room.pillows + 1)) / room.pillows
    for i in range(room.pillows):
        left = bx0 + 0.02 + i * (pillow_w + 0.02)
        (px0, py0), (px1, py1) = toward(left, top - 0.035, 1.04), toward(left + pillow_w, top, 1.2)
        canvas.rounded_rect((px0, py0, px1, py1), 0.3 * (py1 - py0), (1.0, 1.0, 0.98), BED)
    start = 1 + room.blanket_from * (depth - 1)
    drape = top + 0.7 * room.bed_h
    canvas.polygon([toward(bx0, top, start), toward(bx1, top, start), toward(bx1, top, depth),
                    toward(bx1, drape, depth), toward(bx0, drape, depth), toward(bx0, top, depth)],
                   room.blanket, INSIDE)
    canvas.polygon([toward(bx0, top, start), toward(bx1, top, start), toward(bx1, top, start + 0.06),
                    toward(bx0, top, start + 0.06)], shade(room.blanket, 1.25), INSIDE)


@register_dataset("synthetic-bedrooms", scale=scale_pixels, synthetic=True, label_keys=LABEL_KEYS,
                  summary="procedural bedrooms; window count and boxes, masks of windows, bed, lamp and picture")
def build(request: DataRequest):
    return RenderedDataset(request, sample, draw)
