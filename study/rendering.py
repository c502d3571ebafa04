"""Render one lesion in one sequence as a lesion-centred axial PNG, or a montage of sequences.

:func:`render_lesion` picks the axial slice with the largest lesion cross-section,
crops a square of tissue around the lesion, windows it (by percentiles of the
crop unless the sequence has its own window), resizes it, optionally marks the
lesion with a box or an arrow, and encodes a PNG. The PNG bytes, and so their
SHA-256, depend only on the volume, the mask and the :class:`RenderSettings`.
Only one slice of the volume is read (``dataobj`` slicing), and a box-located
lesion reads no mask at all. :func:`render_montage` tiles several sequences of
one lesion into one labelled image.

Each sequence locates the lesion through its own mask or box, so sequences of
one patient need not share a grid or be co-registered.

Display orientation follows the radiological convention: the image is viewed from
the patient's feet, so the patient's left is on the image's right and anterior is
at the top. The orientation comes from the affine (``nibabel.orientations``), so
volumes stored in LPS, RAS or any other axis order render the same way.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image

from study.data.cohort import Lesion, SequenceImage
from study.data.volumes import AFFINE_ATOL_MM, open_volume
from study.errors import UserInputError
from study.lirads import SEQUENCES
from study.rendering_marks import draw_arrow, draw_box, draw_label

__all__ = [
    "MARKS",
    "MIN_MARGIN_MM",
    "RenderSettings",
    "RenderedImage",
    "SequenceWindow",
    "encode_png_data_url",
    "render_lesion",
    "render_montage",
]

MIN_MARGIN_MM = 16.0
"""Smallest margin of tissue shown around a lesion, so small lesions keep their context."""

MARKS = ("none", "box", "arrow")
"""Lesion marks: none, a box around the lesion, or an arrow pointing at it from the upper left."""

WINDOW_UNITS = ("percentile", "value")


@dataclass(frozen=True)
class SequenceWindow:
    """A display window for one sequence: ``low`` maps to black and ``high`` to white.

    ``unit`` is ``"percentile"`` (of the voxel values in the crop) or ``"value"``
    (stored voxel values, e.g. an ADC map in 1e-6 mm²/s).
    """

    low: float
    high: float
    unit: str = "percentile"

    def __post_init__(self) -> None:
        if self.unit not in WINDOW_UNITS:
            raise UserInputError(
                f"Invalid window unit {self.unit!r}; use one of {', '.join(WINDOW_UNITS)}."
            )
        upper = 100 if self.unit == "percentile" else float("inf")
        lowest = 0 if self.unit == "percentile" else -float("inf")
        if not lowest <= self.low < self.high <= upper:
            raise UserInputError(
                f"Invalid {self.unit} window ({self.low}, {self.high}); give low < high"
                + (" within 0..100." if self.unit == "percentile" else ".")
            )


@dataclass(frozen=True)
class RenderSettings:
    """Options for rendering a lesion image.

    Attributes
    ----------
    size
        Width and height of the output image in pixels.
    margin
        Margin around the lesion as a multiple of the lesion radius, at least
        :data:`MIN_MARGIN_MM`. The crop half-width is ``radius + max(margin * radius,
        MIN_MARGIN_MM)``, where ``radius`` is the largest distance from the lesion
        centroid to its edge on the chosen slice.
    window
        Lower and upper percentiles of the voxel values inside the crop that map
        to black and white.
    mark
        One of :data:`MARKS`: ``"none"``, ``"box"`` (a white box around the
        lesion) or ``"arrow"`` (a white arrow pointing at the lesion).
    sequence_windows
        Windows for particular sequences, overriding ``window`` for them: a mapping
        from sequence name to :class:`SequenceWindow` or ``(low, high)``
        percentiles. Stored as sorted ``(sequence, window)`` pairs.

    Examples
    --------
    >>> RenderSettings(size=128).to_dict()
    {'size': 128, 'margin': 1.0, 'window': [1.0, 99.0], 'mark': 'none', 'min_margin_mm': 16.0}
    """

    size: int = 256
    margin: float = 1.0
    window: tuple[float, float] = (1.0, 99.0)
    mark: str = "none"
    sequence_windows: Any = ()

    def __post_init__(self) -> None:
        items = (
            self.sequence_windows.items()
            if isinstance(self.sequence_windows, Mapping)
            else self.sequence_windows
        )
        windows = tuple(
            sorted(
                (name, value if isinstance(value, SequenceWindow) else SequenceWindow(*value))
                for name, value in items
            )
        )
        object.__setattr__(self, "sequence_windows", windows)

        problems = []
        unknown = [name for name, _ in windows if name not in SEQUENCES]
        if unknown:
            problems.append(
                f"sequence_windows names unknown sequence(s) {', '.join(unknown)}; "
                f"use names from {', '.join(SEQUENCES)}"
            )
        if not isinstance(self.size, int) or not 16 <= self.size <= 4096:
            problems.append(f"size {self.size!r} must be an integer from 16 to 4096 pixels")
        if not self.margin >= 0:
            problems.append(f"margin {self.margin!r} must be 0 or more (a multiple of the radius)")
        low, high = self.window
        if not 0 <= low < high <= 100:
            problems.append(
                f"window {self.window!r} must be two percentiles with 0 <= low < high <= 100"
            )
        if self.mark not in MARKS:
            problems.append(f"mark {self.mark!r} must be one of {', '.join(MARKS)}")
        if problems:
            raise UserInputError(f"Invalid render settings: {'; '.join(problems)}.")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-ready values, with the fixed minimum margin.

        ``sequence_windows`` appears only when set, so settings without it keep
        the dictionary (and the request hashes built from it) of earlier versions.
        """
        values = asdict(self)
        values["window"] = list(self.window)
        del values["sequence_windows"]
        if self.sequence_windows:
            values["sequence_windows"] = {
                name: [window.low, window.high, window.unit]
                for name, window in self.sequence_windows
            }
        values["min_margin_mm"] = MIN_MARGIN_MM
        return values

    def window_for(self, sequence: str) -> SequenceWindow:
        """Return the window of ``sequence``: its own, or ``window`` as percentiles.

        Examples
        --------
        >>> settings = RenderSettings(sequence_windows={"adc": SequenceWindow(0, 3000, "value")})
        >>> settings.window_for("adc").unit, settings.window_for("t2").high
        ('value', 99.0)
        """
        return dict(self.sequence_windows).get(sequence, SequenceWindow(*self.window))


@dataclass(frozen=True, eq=False)
class RenderedImage:
    """A rendered lesion image and what it was made from.

    Attributes
    ----------
    sequence
        Sequence name.
    pixels
        Grey values, uint8 of shape ``(size, size)``, read-only; row 0 is anterior
        and column 0 is the patient's right.
    mask
        Lesion pixels, bool of shape ``(size, size)``, read-only; the box when the
        manifest gives a box.
    png
        PNG encoding of ``pixels`` with no metadata chunks.
    sha256
        Hex SHA-256 of ``png``.
    slice_index
        Index of the rendered slice along the volume's inferior-superior voxel axis.
    settings
        :meth:`RenderSettings.to_dict` of the settings used.
    """

    sequence: str
    pixels: np.ndarray
    mask: np.ndarray
    png: bytes
    sha256: str
    slice_index: int
    settings: dict[str, Any]


def render_lesion(
    lesion: Lesion, sequence: str, settings: RenderSettings | None = None
) -> RenderedImage:
    """Render ``lesion`` in ``sequence`` as a lesion-centred axial image.

    The slice is the one with the most mask voxels, or the middle of the box. The
    crop is a square in millimetres centred on the lesion centroid in that slice,
    so the output keeps the physical aspect ratio whatever the voxel spacing. Crop
    regions outside the volume are black.

    Raises
    ------
    UserInputError
        When the lesion has no volume for ``sequence``, a volume or mask cannot be
        read, the mask is empty or on another grid, or the box is outside the volume.

    Examples
    --------
    >>> import tempfile
    >>> from study.data import build_phantom, load_cohort
    >>> cohort = load_cohort(build_phantom(tempfile.mkdtemp(), patients=2, exemplar_patients=1))
    >>> lesion = next(iter(cohort.lesions.values()))
    >>> rendered = render_lesion(lesion, "arterial", RenderSettings(size=64))
    >>> rendered.pixels.shape, rendered.png[:4]
    ((64, 64), b'\\x89PNG')
    """
    settings = settings or RenderSettings()
    source = lesion.images.get(sequence)
    if source is None:
        raise UserInputError(
            f"Lesion {lesion.lesion_id!r} has no {sequence!r} volume in the manifest; "
            f"its sequences are {', '.join(lesion.images)}. "
            "Add a manifest row or leave the sequence out."
        )

    image = open_volume(source.image)
    axes = _axes(image.affine)
    slice_index, lesion_mask = _locate(source, image, axes)

    slicer: list[Any] = [slice(None)] * 3
    slicer[axes.slice_axis] = slice_index
    try:
        plane = np.asarray(image.dataobj[tuple(slicer)], dtype=np.float32)
    except (OSError, EOFError, ValueError) as error:
        raise UserInputError(
            f"{source.image}: cannot read slice {slice_index} ({error}); the file may be truncated."
        ) from None
    plane = _to_display(np.nan_to_num(plane), axes)
    lesion_mask = _to_display(lesion_mask, axes)

    window = settings.window_for(sequence)
    pixels, mask = _crop_and_resize(plane, lesion_mask, axes.display_spacing, settings, window)
    canvas = Image.fromarray(pixels)
    if settings.mark == "box":
        draw_box(canvas, mask)
    elif settings.mark == "arrow":
        draw_arrow(canvas, mask)
    pixels = np.asarray(canvas)

    return _finish(sequence, pixels, mask, int(slice_index), settings)


def _finish(
    sequence: str, pixels: np.ndarray, mask: np.ndarray, slice_index: int, settings: RenderSettings
) -> RenderedImage:
    buffer = io.BytesIO()
    # Pillow writes no time or text chunk unless asked, so equal pixels give equal bytes.
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False, compress_level=6)
    png = buffer.getvalue()
    pixels = np.array(pixels, dtype=np.uint8)
    pixels.setflags(write=False)
    mask = np.array(mask, dtype=bool)
    mask.setflags(write=False)
    return RenderedImage(
        sequence=sequence,
        pixels=pixels,
        mask=mask,
        png=png,
        sha256=hashlib.sha256(png).hexdigest(),
        slice_index=slice_index,
        settings=settings.to_dict(),
    )


def render_montage(
    lesion: Lesion,
    sequences: Sequence[str],
    settings: RenderSettings | None = None,
    *,
    columns: int | None = None,
) -> RenderedImage:
    """Render several sequences of ``lesion`` and tile them into one labelled image.

    Each tile is :func:`render_lesion` of one sequence at ``settings.size``, with
    the sequence name written in its upper-left corner. Tiles run left to right,
    then top to bottom, and empty places stay black. The result's ``sequence`` is
    the names joined by ``+``, ``mask`` is the tiled lesion masks and
    ``slice_index`` is -1, because each tile has its own slice.

    Parameters
    ----------
    columns
        Tiles per row; default: the smallest count giving a grid at most as tall as wide.

    Examples
    --------
    >>> import tempfile
    >>> from study.data import build_phantom, load_cohort
    >>> cohort = load_cohort(build_phantom(tempfile.mkdtemp(), patients=2, exemplar_patients=1))
    >>> lesion = next(iter(cohort.lesions.values()))
    >>> montage = render_montage(lesion, ["t1_pre", "arterial", "portal_venous"],
    ...                          RenderSettings(size=64))
    >>> montage.sequence, montage.pixels.shape
    ('t1_pre+arterial+portal_venous', (128, 128))
    """
    settings = settings or RenderSettings()
    if not sequences:
        raise UserInputError("A montage needs at least one sequence; name the sequences to show.")
    count = len(sequences)
    columns = columns or math.ceil(math.sqrt(count))
    if columns < 1:
        raise UserInputError(f"Invalid montage columns {columns}; give 1 or more.")
    rows = math.ceil(count / columns)
    size = settings.size
    pixels = np.zeros((rows * size, columns * size), dtype=np.uint8)
    mask = np.zeros_like(pixels, dtype=bool)
    for index, sequence in enumerate(sequences):
        tile = render_lesion(lesion, sequence, settings)
        canvas = Image.fromarray(np.array(tile.pixels))
        draw_label(canvas, sequence)
        top, left = (index // columns) * size, (index % columns) * size
        pixels[top : top + size, left : left + size] = np.asarray(canvas)
        mask[top : top + size, left : left + size] = tile.mask
    return _finish("+".join(sequences), pixels, mask, -1, settings)


def encode_png_data_url(png: bytes) -> str:
    """Encode PNG bytes as a ``data:image/png;base64,...`` URL for chat APIs.

    Examples
    --------
    >>> encode_png_data_url(b"\\x89PNG")
    'data:image/png;base64,iVBORw=='
    """
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass(frozen=True)
class _Axes:
    """Voxel axes of a volume: which is inferior-superior and how the plane is displayed."""

    slice_axis: int
    row_axis: int  # the voxel axis closest to anterior-posterior
    column_axis: int  # the voxel axis closest to left-right
    flip_rows: bool
    flip_columns: bool
    display_spacing: tuple[float, float]  # mm per display row, mm per display column


def _axes(affine: np.ndarray) -> _Axes:
    # io_orientation maps each voxel axis to the nearest RAS world axis and its sign.
    # NOTE: an oblique affine is rendered as if it were the nearest axis-aligned one.
    orientation = nib.orientations.io_orientation(affine)
    world = [int(axis) for axis in orientation[:, 0]]
    spacing = nib.affines.voxel_sizes(affine)
    row_axis, column_axis, slice_axis = world.index(1), world.index(0), world.index(2)
    return _Axes(
        slice_axis=slice_axis,
        row_axis=row_axis,
        column_axis=column_axis,
        # Rows run anterior to posterior and columns from the patient's right to left,
        # so an axis that points anterior or right (RAS +) is reversed.
        flip_rows=orientation[row_axis, 1] > 0,
        flip_columns=orientation[column_axis, 1] > 0,
        display_spacing=(float(spacing[row_axis]), float(spacing[column_axis])),
    )


def _to_display(plane: np.ndarray, axes: _Axes) -> np.ndarray:
    in_plane = [axis for axis in range(3) if axis != axes.slice_axis]
    if in_plane.index(axes.row_axis) != 0:
        plane = plane.T
    if axes.flip_rows:
        plane = plane[::-1, :]
    if axes.flip_columns:
        plane = plane[:, ::-1]
    return plane


def _locate(source: SequenceImage, image: nib.Nifti1Image, axes: _Axes) -> tuple[int, np.ndarray]:
    """Return the slice index and the lesion mask on that slice, in stored voxel order."""
    if source.mask is not None:
        mask_image = open_volume(source.mask)
        if mask_image.shape != image.shape or not np.allclose(
            mask_image.affine, image.affine, atol=AFFINE_ATOL_MM
        ):
            raise UserInputError(
                f"{source.mask}: the mask grid (shape {mask_image.shape}) differs from the grid of "
                f"{source.image} (shape {image.shape}) or its affine; "
                "resample the mask onto the volume."
            )
        try:
            mask = np.asanyarray(mask_image.dataobj) > 0
        except (OSError, EOFError, ValueError) as error:
            raise UserInputError(
                f"{source.mask}: cannot read the mask ({error}); the file may be truncated."
            ) from None
        other_axes = tuple(axis for axis in range(3) if axis != axes.slice_axis)
        areas = mask.sum(axis=other_axes)
        if not areas.any():
            raise UserInputError(
                f"{source.mask}: the mask is empty; draw the lesion or give a box instead."
            )
        # argmax returns the lowest index among equal areas, so the choice is deterministic.
        slice_index = int(np.argmax(areas))
        return slice_index, np.take(mask, slice_index, axis=axes.slice_axis)

    box = source.box
    if box is None:
        raise UserInputError(
            f"{source.image}: the manifest gives neither a mask nor a box; give one."
        )
    if any(box[axis + 3] >= image.shape[axis] for axis in range(3)):
        raise UserInputError(
            f"{source.image}: box {box} lies outside the volume of shape {image.shape}; "
            "boxes are inclusive voxel indices x0,y0,z0,x1,y1,z1."
        )
    slice_index = (box[axes.slice_axis] + box[axes.slice_axis + 3]) // 2
    # Only the rendered plane of the box is built, never a volume-sized mask.
    in_plane = [axis for axis in range(3) if axis != axes.slice_axis]
    plane = np.zeros(tuple(image.shape[axis] for axis in in_plane), dtype=bool)
    first, second = in_plane
    plane[box[first] : box[first + 3] + 1, box[second] : box[second + 3] + 1] = True
    return slice_index, plane


def _crop_and_resize(
    plane: np.ndarray,
    lesion_mask: np.ndarray,
    spacing: tuple[float, float],
    settings: RenderSettings,
    window: SequenceWindow,
) -> tuple[np.ndarray, np.ndarray]:
    rows, columns = np.nonzero(lesion_mask)
    centre_row, centre_column = rows.mean(), columns.mean()
    row_mm, column_mm = spacing
    radius_mm = float(
        np.max(np.hypot((rows - centre_row) * row_mm, (columns - centre_column) * column_mm))
    )
    radius_mm += 0.5 * max(row_mm, column_mm)
    half_width_mm = radius_mm + max(settings.margin * radius_mm, MIN_MARGIN_MM)
    half_rows, half_columns = half_width_mm / row_mm, half_width_mm / column_mm

    # Pixel i covers [i, i + 1) in Pillow's coordinates, so a voxel centre is at i + 0.5.
    top, bottom = centre_row + 0.5 - half_rows, centre_row + 0.5 + half_rows
    left, right = centre_column + 0.5 - half_columns, centre_column + 0.5 + half_columns

    inside = plane[
        max(0, math.floor(top)) : max(0, math.ceil(bottom)),
        max(0, math.floor(left)) : max(0, math.ceil(right)),
    ]
    if inside.size == 0:
        inside = plane
    if window.unit == "percentile":
        low, high = np.percentile(inside, (window.low, window.high))
    else:
        low, high = window.low, window.high
    high = max(high, low + 1e-6)

    # Pad so that the crop lies inside the array; the padding shows as black.
    pad = (
        max(
            0,
            -math.floor(top),
            -math.floor(left),
            math.ceil(bottom) - plane.shape[0],
            math.ceil(right) - plane.shape[1],
        )
        + 1
    )
    padded = np.pad(plane, pad, constant_values=low)
    padded_mask = np.pad(lesion_mask.astype(np.float32), pad)
    box = (left + pad, top + pad, right + pad, bottom + pad)
    output = (settings.size, settings.size)

    values = np.asarray(
        Image.fromarray(np.ascontiguousarray(padded, dtype=np.float32)).resize(
            output, Image.Resampling.BICUBIC, box=box
        )
    )
    mask = (
        np.asarray(
            Image.fromarray(np.ascontiguousarray(padded_mask)).resize(
                output, Image.Resampling.BILINEAR, box=box
            )
        )
        >= 0.5
    )
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0
    return np.rint(scaled).astype(np.uint8), np.array(mask)
