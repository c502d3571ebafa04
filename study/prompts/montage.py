"""One montage image from a lesion's rendered sequences, optionally labelled.

:func:`study.rendering.render_montage` tiles the same way from a lesion's
volumes, but it always labels the tiles and renders them again. This module
works from images the sweep has already rendered and can leave tiles
unlabelled, which the ``prompts.labels: false`` setting needs.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from study.prompts.messages import ImagePart


def build_montage(images: Sequence[Any], *, labels: bool) -> ImagePart:
    """Tile rendered images left to right and top to bottom into one PNG.

    The grid has ``ceil(sqrt(n))`` columns, every tile keeps its rendered size,
    and empty tiles are black. With ``labels``, each tile's sequence name is
    written in its top-left corner in white on black with Pillow's built-in
    bitmap font, so equal inputs give equal bytes.

    Parameters
    ----------
    images
        Rendered images of one lesion (objects with ``sequence`` and ``pixels``,
        a uint8 array), all of the same shape.
    labels
        Whether to write each sequence name on its tile.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> tiles = [SimpleNamespace(sequence=name, pixels=np.zeros((8, 8), np.uint8))
    ...          for name in ("t1_pre", "arterial", "portal_venous")]
    >>> part = build_montage(tiles, labels=False)
    >>> part.sequence, Image.open(io.BytesIO(part.png)).size
    ('t1_pre+arterial+portal_venous', (16, 16))
    """
    if not images:
        raise ValueError("a montage needs at least one image")
    shapes = {image.pixels.shape for image in images}
    if len(shapes) != 1:
        raise ValueError(f"montage tiles differ in shape: {sorted(shapes)}")
    rows_per_tile, columns_per_tile = images[0].pixels.shape
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)

    canvas = Image.new("L", (columns * columns_per_tile, rows * rows_per_tile), 0)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for index, image in enumerate(images):
        left = (index % columns) * columns_per_tile
        top = (index // columns) * rows_per_tile
        canvas.paste(Image.fromarray(np.asarray(image.pixels, dtype=np.uint8)), (left, top))
        if labels:
            box = draw.textbbox((left + 2, top + 2), image.sequence, font=font)
            draw.rectangle(box, fill=0)
            draw.text((left + 2, top + 2), image.sequence, fill=255, font=font)

    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=False, compress_level=6)
    png = buffer.getvalue()
    name = "+".join(image.sequence for image in images)
    return ImagePart(name, hashlib.sha256(png).hexdigest(), png)
