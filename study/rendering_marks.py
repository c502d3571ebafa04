"""Lesion marks and labels drawn on rendered 8-bit images (Pillow, in place)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["draw_arrow", "draw_box", "draw_label"]


def draw_box(canvas: Image.Image, mask: np.ndarray) -> None:
    """Draw a white box a few pixels outside the lesion mask."""
    rows, columns = np.nonzero(mask)
    if rows.size == 0:
        return
    size = canvas.size[0]
    pad = max(2, size // 48)
    shape = (
        max(0, columns.min() - pad),
        max(0, rows.min() - pad),
        min(size - 1, columns.max() + pad),
        min(size - 1, rows.max() + pad),
    )
    ImageDraw.Draw(canvas).rectangle(shape, outline=255, width=max(1, size // 128))


def draw_arrow(canvas: Image.Image, mask: np.ndarray) -> None:
    """Draw a white arrow from the upper left whose tip stops just outside the lesion."""
    rows, columns = np.nonzero(mask)
    if rows.size == 0:
        return
    size = canvas.size[0]
    centre = np.array([columns.mean(), rows.mean()])
    radius = float(np.max(np.hypot(columns - centre[0], rows - centre[1])))
    direction = np.array([-1.0, -1.0]) / math.sqrt(2.0)
    gap = max(2.0, size / 64)
    tip = centre + direction * (radius + gap)
    length = max(size / 6, 8.0)
    tail = np.clip(tip + direction * length, 0, size - 1)
    width = max(1, size // 96)
    head = max(4.0, size / 24)
    # The head is a triangle whose two back corners sit 30 degrees off the shaft.
    back = -direction
    corners = [
        tip + head * np.array([back[0] * c - back[1] * s, back[0] * s + back[1] * c])
        for c, s in ((math.cos(math.pi / 6), math.sin(math.pi / 6)),
                     (math.cos(-math.pi / 6), math.sin(-math.pi / 6)))
    ]  # fmt: skip
    draw = ImageDraw.Draw(canvas)
    draw.line([tuple(tail), tuple(tip)], fill=255, width=width)
    draw.polygon([tuple(tip), tuple(corners[0]), tuple(corners[1])], fill=255)


def draw_label(canvas: Image.Image, text: str) -> None:
    """Write ``text`` in white on a black strip in the upper-left corner."""
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((3, 2), text)
    draw.rectangle((0, 0, right + 3, bottom + 2), fill=0)
    draw.text((3, 2), text, fill=255)
