"""Figures: image grids, numbered for picking exemplars, with optional row labels and marks."""
import torch
from PIL import Image, ImageDraw

from trainables.data.render import images_to_pixels

PAD = 2
MARK = (230, 30, 30)     # frames the measurement flags (largest jumps) get a red border


def to_pil_tiles(images, scale=2):
    """[-1, 1] image batch -> list of PIL tiles, upscaled ``scale`` times (32 px is hard to see)."""
    x = images_to_pixels(images.detach().float().cpu())
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    tiles = [Image.fromarray(t.permute(1, 2, 0).numpy()) for t in x]
    return [t.resize((t.width * scale, t.height * scale), Image.NEAREST) for t in tiles]


def grid(images, nrow, numbers=False, row_labels=(), marked=(), scale=2, label_width=0):
    """A grid of ``images`` with ``nrow`` per row: ``numbers`` writes each index in its corner,
    ``row_labels`` a text left of each row, ``marked`` indices get a red border."""
    tiles = to_pil_tiles(images, scale)
    side = tiles[0].width
    rows = (len(tiles) + nrow - 1) // nrow
    label_width = label_width or (8 + 6 * max((len(s) for s in row_labels), default=0) if row_labels else 0)
    sheet = Image.new("RGB", (label_width + nrow * (side + PAD) + PAD, rows * (side + PAD) + PAD), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, tile in enumerate(tiles):
        x, y = label_width + PAD + (i % nrow) * (side + PAD), PAD + (i // nrow) * (side + PAD)
        sheet.paste(tile, (x, y))
        if i in marked:
            draw.rectangle((x - 1, y - 1, x + side, y + side), outline=MARK, width=2)
        if numbers:
            draw.rectangle((x, y, x + 6 * len(str(i)) + 2, y + 10), fill=(0, 0, 0))
            draw.text((x + 1, y), str(i), fill=(255, 255, 255))
    for r, label in enumerate(row_labels):
        draw.text((4, PAD + r * (side + PAD) + side // 2 - 5), label, fill=(0, 0, 0))
    return sheet


def side_by_side(*panels, gap=8):
    """PIL images next to each other, top-aligned."""
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    out = Image.new("RGB", (width, max(p.height for p in panels)), (255, 255, 255))
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + gap
    return out


def stack(*panels, gap=8):
    """PIL images above each other, left-aligned."""
    out = Image.new("RGB", (max(p.width for p in panels), sum(p.height for p in panels) + gap * (len(panels) - 1)),
                    (255, 255, 255))
    y = 0
    for p in panels:
        out.paste(p, (0, y))
        y += p.height + gap
    return out


def titled(image, title):
    """``image`` with a one-line caption above it."""
    out = Image.new("RGB", (max(image.width, 6 * len(title) + 8), image.height + 14), (255, 255, 255))
    ImageDraw.Draw(out).text((4, 1), title, fill=(0, 0, 0))
    out.paste(image, (0, 14))
    return out


def mask_overlay(images, masks, colour=(255, 0, 255)):
    """Images with ``masks`` (N, H, W bool) painted half over them in ``colour``."""
    c = torch.tensor(colour, dtype=torch.float32).div(127.5).sub(1).view(1, 3, 1, 1)
    m = masks.unsqueeze(1).float() * 0.5
    return images.float() * (1 - m) + c * m


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def from_matplotlib(fig):
    """A matplotlib figure as a PIL image (the figure is closed)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
