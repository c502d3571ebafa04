"""Opening NIfTI volumes lazily and checking them.

:func:`open_volume` reads only the header: the voxels stay on disk behind
``image.dataobj``, so slicing ``image.dataobj[..., k]`` reads one slice. A
gzipped file is decompressed as a stream up to that slice, never held whole.
:func:`check_volume` reads a volume once, to find truncated or corrupt files and
NaN or infinite voxels, and :func:`check_grid` compares a mask's grid with its
image's.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from study.errors import UserInputError

__all__ = [
    "AFFINE_ATOL_MM",
    "VolumeInfo",
    "check_box",
    "check_grid",
    "check_volume",
    "open_volume",
]

AFFINE_ATOL_MM = 1e-2
"""Largest difference between two affines' entries (mm) for them to count as one grid."""

# Errors nibabel and the gzip module raise on files that are missing, truncated or not NIfTI.
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError)


@dataclass(frozen=True)
class VolumeInfo:
    """Geometry and nonzero count of a volume that :func:`check_volume` could read.

    Attributes
    ----------
    shape
        Voxel grid shape.
    affine
        Voxel-to-world (RAS, mm) affine, 4 × 4.
    nonzero
        Number of nonzero voxels (for a mask: the lesion's size in voxels).
    """

    shape: tuple[int, ...]
    affine: np.ndarray
    nonzero: int


def open_volume(path: str | Path) -> nib.Nifti1Image:
    """Open a 3D NIfTI volume without reading its voxels.

    Raises
    ------
    UserInputError
        When the file cannot be read as NIfTI or is not 3D.

    Examples
    --------
    >>> import tempfile, numpy as np, nibabel as nib
    >>> path = tempfile.mkdtemp() + "/volume.nii.gz"
    >>> nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4)), path)
    >>> image = open_volume(path)
    >>> image.shape, image.dataobj[:, :, 2].shape
    ((4, 5, 6), (4, 5))
    """
    try:
        image = nib.load(path)
    except _READ_ERRORS as error:
        raise UserInputError(
            f"{path}: cannot be read as NIfTI ({error}); "
            "check the file and its path in the manifest."
        ) from None
    if len(image.shape) != 3:
        raise UserInputError(
            f"{path}: has shape {image.shape}, not a 3D volume; "
            "save one 3D volume per sequence (split 4D series into separate files)."
        )
    return image


def check_volume(path: Path, *, label: str) -> tuple[VolumeInfo | None, list[str]]:
    """Read a volume once and list its problems.

    Parameters
    ----------
    path
        The NIfTI file.
    label
        How messages name the file, e.g. ``"manifest.csv line 4: image 'a.nii.gz'"``.

    Returns
    -------
    info
        Shape, affine and nonzero count, or ``None`` when the voxels could not be read.
    problems
        One message per problem: unreadable or truncated file, corrupt gzip stream,
        not 3D, non-invertible affine, NaN or infinite voxels.
    """
    if not path.is_file():
        return None, [f"{label} not found ({path}); fix the path or add the file."]
    if path.name.endswith(".gz"):
        damage = _gzip_damage(path)
        if damage:
            return None, [
                f"{label} is truncated or its gzip stream is corrupt ({damage}); "
                "copy or export the file again."
            ]
    try:
        image = nib.load(path)
    except _READ_ERRORS as error:
        return None, [
            f"{label} cannot be read as NIfTI ({type(error).__name__}: {error}); "
            "re-export the volume as .nii or .nii.gz."
        ]
    if len(image.shape) != 3:
        return None, [
            f"{label} has shape {image.shape}, not a 3D volume; "
            "save one 3D volume per sequence (split 4D series into separate files)."
        ]

    problems = []
    affine = image.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        problems.append(
            f"{label} has a non-invertible affine (voxel axes collapse or are not finite); "
            "fix the qform/sform or the pixdim of the header."
        )
    try:
        # Reading every voxel is the only way to find a truncated gzip stream.
        data = np.asanyarray(image.dataobj)
    except _READ_ERRORS as error:
        problems.append(
            f"{label} is truncated or its gzip stream is corrupt "
            f"({type(error).__name__}: {error}); copy or export the file again."
        )
        return None, problems

    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - finite.sum())
        problems.append(
            f"{label} has {bad} NaN or infinite voxel(s); "
            "replace them (e.g. by 0) before rendering, since windowing cannot handle them."
        )
    info = VolumeInfo(tuple(image.shape), affine, int(np.count_nonzero(data[finite])))
    return info, problems


def _gzip_damage(path: Path) -> str:
    """Return why a gzip file is damaged, or ``""`` when it decompresses to its end.

    nibabel stops reading once it has the voxels, so a damaged trailer (CRC and
    length) would pass unnoticed; streaming to the end checks both.
    """
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (OSError, EOFError, zlib.error) as error:
        return f"{type(error).__name__}: {error}"
    return ""


def check_grid(mask: VolumeInfo, image: VolumeInfo, *, label: str) -> list[str]:
    """List a problem when a mask is not on its image's voxel grid (shape and affine)."""
    if mask.shape == image.shape and np.allclose(mask.affine, image.affine, atol=AFFINE_ATOL_MM):
        return []
    return [
        f"{label} is on another grid (shape {mask.shape}) than its image (shape "
        f"{image.shape}) or has another affine; resample the mask onto the image, "
        "or give each sequence its own mask."
    ]


def check_box(box: tuple[int, ...], shape: tuple[int, ...], *, label: str) -> list[str]:
    """List a problem when an inclusive voxel box reaches outside a volume's shape.

    Examples
    --------
    >>> check_box((0, 0, 0, 9, 9, 4), (10, 10, 5), label="box")
    []
    >>> check_box((0, 0, 0, 10, 9, 4), (10, 10, 5), label="box")[0][:60]
    'box (0, 0, 0, 10, 9, 4) lies outside the volume of shape (10'
    """
    if all(box[axis + 3] < shape[axis] for axis in range(3)):
        return []
    return [
        f"{label} {box} lies outside the volume of shape {shape}; boxes are inclusive "
        "0-based voxel indices x0,y0,z0,x1,y1,z1 of that sequence's own volume."
    ]
