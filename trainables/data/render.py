"""What the synthetic data sets share: a supersampled drawing canvas, the per-index RNG, and the
Dataset that turns a sampled scene into ``(image, labels)``.

A data set module supplies two functions: ``sample(rng) -> scene`` draws every random choice of
one image (ground-truth factors and nuisance alike) and ``draw(scene, size) -> (image, labels)``
renders it. Keeping them apart lets tests override one factor and re-render all else equal, while
the labels still come from the same code path as the pixels.
"""
import colorsys
import math
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

from trainables.data.registry import DataRequest, build_dataset, get_entry
from trainables.errors import bad_value

SUPERSAMPLE = 3                    # draw at 3x and box-filter down: anti-aliased edges at PIL's speed
SIZES = (16, 32, 64, 128)          # powers of two the renderers support
SPLITS = {"train": 0, "test": 1}   # mixed into the seed, so the test split holds unseen images
INSIDE = None                      # object id of a detail drawn within an object's outline


def check_request(request: DataRequest):
    """Reject a request the renderers cannot honour, naming the key."""
    if request.image_size not in SIZES:
        raise bad_value("image_size", request.image_size, "a power of two from 16 to 128 (16, 32, 64 or 128)")
    if request.nc not in (1, 3):
        raise bad_value("nc", request.nc, "1 (grayscale) or 3 (RGB)")
    if request.split not in SPLITS:
        raise bad_value("split", request.split, " or ".join(SPLITS))
    if request.dataset_size < 1:
        raise bad_value("dataset_size", request.dataset_size, "a positive number of images")
    if request.data_seed < 0:
        raise bad_value("data_seed", request.data_seed, "a non-negative integer")


class IndexRng:
    """The random numbers behind one image, seeded by (seed, split, index) alone: an image never
    depends on the process, the worker or the order of access.

    Uniforms come from numpy's PCG64 (the same stream on every platform) in blocks of 64,
    because numpy's cost per call would otherwise dominate sampling a scene.
    """

    def __init__(self, seed, split, index):
        self._generator = np.random.default_rng([seed, SPLITS[split], index])
        self._block = []

    def random(self):
        if not self._block:
            self._block = self._generator.random(64).tolist()[::-1]
        return self._block.pop()

    def uniform(self, low, high):
        return low + (high - low) * self.random()

    def integers(self, n):
        """One of 0 .. n - 1, each as likely."""
        return int(self.random() * n)

    def permutation(self, n):
        order = list(range(n))
        for i in range(n - 1, 0, -1):   # Fisher-Yates
            j = self.integers(i + 1)
            order[i], order[j] = order[j], order[i]
        return order


def hsv(h, s, v):
    """An RGB colour in [0, 1] from hue, saturation and value."""
    return colorsys.hsv_to_rgb(h % 1.0, s, v)


def shade(color, factor):
    """The colour darkened (factor < 1) or lightened (factor > 1), clipped to [0, 1]."""
    return tuple(min(1.0, c * factor) for c in color)


def _rgb8(color):
    return tuple(int(c * 255 + 0.5) for c in color)


class Canvas:
    """An RGB image drawn at SUPERSAMPLE times its final size, in unit coordinates ([0, 1] across).

    With ``objects`` every shape is also painted, in the same order, into an object layer that
    holds one channel per object id (1 to 4; 0 is scenery). Each subpixel is one-hot there, so
    box-filtering the layer down gives each object's coverage of each pixel, and the masks come
    from exactly the subpixels the colours went to.
    """

    def __init__(self, size, background, objects=False):
        self.scale = size * SUPERSAMPLE
        self.image = Image.new("RGB", (self.scale, self.scale), _rgb8(background))
        self._draw = ImageDraw.Draw(self.image)
        # CMYK only for its four plain channels: unlike RGBA, PIL reduces it without premultiplying.
        self.objects = Image.new("CMYK", (self.scale, self.scale), 0) if objects else None
        self._object_draw = ImageDraw.Draw(self.objects) if objects else None
        self._objects_drawn = False
        self._masks = None

    def _px(self, values):
        return [v * self.scale for v in values]

    def _paint(self, method, coords, color, obj, key="fill", **kwargs):
        kwargs[key] = _rgb8(color)
        getattr(self._draw, method)(coords, **kwargs)
        # Details inside an object's outline (obj INSIDE) leave the object layer as it is, and
        # scenery drawn before the first object would only write zeros over zeros: skip both.
        if self.objects is None or obj is INSIDE or not (obj or self._objects_drawn):
            return
        self._objects_drawn = True
        kwargs[key] = _OBJECT_INK[obj]
        getattr(self._object_draw, method)(coords, **kwargs)

    def rect(self, box, color, obj=0):
        self._paint("rectangle", self._px(box), color, obj)

    def rounded_rect(self, box, radius, color, obj=0):
        # One polygon: PIL's own rounded_rectangle takes eight calls to draw.
        x0, y0, x1, y1 = box
        r = min(radius, (x1 - x0) / 2, (y1 - y0) / 2)
        centres = ((x1 - r, y1 - r), (x0 + r, y1 - r), (x0 + r, y0 + r), (x1 - r, y0 + r))
        points = [(cx + r * dx, cy + r * dy) for (cx, cy), quarter in zip(centres, _QUARTERS) for dx, dy in quarter]
        self.polygon(points, color, obj)

    def ellipse(self, box, color, obj=0):
        self._paint("ellipse", self._px(box), color, obj)

    def chord(self, box, start, end, color, obj=0):
        """The part of the ellipse in ``box`` cut off by the chord from ``start`` to ``end`` degrees
        (clockwise from 3 o'clock, as PIL counts)."""
        self._paint("chord", self._px(box), color, obj, start=start, end=end)

    def polygon(self, points, color, obj=0):
        s = self.scale
        self._paint("polygon", [(x * s, y * s) for x, y in points], color, obj)

    def line(self, points, width, color, obj=0):
        s = self.scale
        self._paint("line", [(x * s, y * s) for x, y in points], color, obj, width=max(1, round(width * s)))

    def frame(self, box, width, color, obj=0):
        """The outline of a rectangle, ``width`` thick, inside ``box``."""
        self._paint("rectangle", self._px(box), color, obj, key="outline", width=max(1, round(width * self.scale)))

    def finish(self):
        """The final-size RGB image, each pixel the mean of its subpixels."""
        return self.image.reduce(SUPERSAMPLE)

    def mask(self, obj):
        """A bool tensor of the pixels where object ``obj`` covers at least half of the subpixels."""
        if self._masks is None:
            coverage = np.asarray(self.objects.reduce(SUPERSAMPLE))       # (size, size, 4) in 0..255
            self._masks = torch.from_numpy(np.ascontiguousarray((coverage >= 128).transpose(2, 0, 1)))
        return self._masks[obj - 1]


# Object layer ink: id 0 clears every channel, id k sets channel k - 1.
_OBJECT_INK = [(0, 0, 0, 0), (255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255)]
# A rounded corner as five points on a quarter circle, for each corner clockwise from bottom right.
_QUARTERS = [[(math.cos(a), math.sin(a)) for a in (math.pi / 2 * (k + i / 4) for i in range(5))] for k in range(4)]


def to_pixels(image, nc):
    """A PIL RGB image as a uint8 CHW tensor with ``nc`` channels."""
    if nc == 1:
        image = image.convert("L")   # ITU-R 601 luma, as torchvision's Grayscale
    pixels = np.asarray(image)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return torch.from_numpy(np.array(pixels, order="C"))   # a writable copy, CHW in memory


def scale_pixels(pixels):
    """uint8 pixels (any shape, any device) -> float32 in [-1, 1]: x / 127.5 - 1, as a float32
    multiply then subtract (the data cache scales its batches with this very function)."""
    return pixels.float().mul_(1 / 127.5).sub_(1.0)


def images_to_pixels(images):
    """[-1, 1] images (any shape, any device, their own float dtype) -> uint8 pixels: (x + 1) * 127.5
    rounded half to even, then clamped to [0, 255]; the inverse of ``scale_pixels`` on its range."""
    return images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


class RenderedDataset(torch.utils.data.Dataset):
    """Map-style data set whose item ``index`` is rendered on demand from its own RNG."""

    def __init__(self, request: DataRequest, sample, draw):
        check_request(request)
        self.request = request
        self.sample = sample
        self.draw = draw

    def __len__(self):
        return self.request.dataset_size

    def scene(self, index):
        """The sampled scene behind item ``index``: every random choice, before drawing."""
        index = int(index)
        if not 0 <= index < self.request.dataset_size:
            raise IndexError(f"index {index} is out of range for {self.request.dataset_size} images")
        return self.sample(IndexRng(self.request.data_seed, self.request.split, index))

    def __getitem__(self, index):
        image, labels = self.draw(self.scene(index), self.request.image_size)
        pixels = to_pixels(image, self.request.nc)
        return (pixels if self.request.pixels else scale_pixels(pixels)), labels


def render_speed(name, size=64, n=2000):
    """Images per second one core renders for the synthetic data set ``name``, tensors included.

    Timed in CPU seconds of this process, so other work on a shared machine does not count.
    """
    if not get_entry(name).synthetic:
        raise bad_value("dataset", name, "a synthetic data set (real ones are read, not rendered)")
    dataset = build_dataset(DataRequest(name, image_size=size, dataset_size=n))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        for index in range(n):
            dataset[index]
        return n / (time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
