"""Reading DICOM into the same volume-and-mask form as a NIfTI cohort, and writing it as one.

Two sources are supported:

- a series folder (:func:`read_dicom_series`): every file of one series, sorted
  along the slice normal by ``ImagePositionPatient``, scaled by
  ``RescaleSlope``/``RescaleIntercept``;
- a single image whose overlay plane (group ``0x6000``) outlines the lesion
  (:func:`read_dicom_overlay`), as a radiologist marks a lesion on a workstation.

Both give a :class:`DicomVolume`: voxels in NIfTI axis order (column, row,
slice) and a RAS affine built from ``ImageOrientationPatient``,
``ImagePositionPatient`` and ``PixelSpacing`` (DICOM's LPS turned into RAS by
negating x and y). :func:`write_dicom_cohort` saves it as a one-lesion cohort
folder that ``vlmstudy data validate`` and ``data render`` accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError
from scipy import ndimage

from study.data.tables import MANIFEST, PATHOLOGY, READS, SPLITS
from study.data.volumes import check_box
from study.errors import UserInputError
from study.lirads import SEQUENCES

__all__ = ["DicomVolume", "read_dicom_overlay", "read_dicom_series", "write_dicom_cohort"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True, eq=False)
class DicomVolume:
    """A volume read from DICOM, with an optional lesion mask on the same grid.

    Attributes
    ----------
    data
        float32 voxels, shape ``(columns, rows, slices)``.
    affine
        4 × 4 voxel-to-world affine in RAS millimetres.
    mask
        bool lesion mask of the same shape, or ``None``.
    series_description
        The series' ``SeriesDescription`` (empty when absent), to help pick the sequence.
    """

    data: np.ndarray
    affine: np.ndarray
    mask: np.ndarray | None
    series_description: str


def _read(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError) as error:
        raise UserInputError(f"{path}: cannot be read as DICOM ({error}).") from None


def _plane(dataset: pydicom.Dataset, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the voxel columns of the affine (LPS): column step, row step and the origin."""
    try:
        orientation = np.array(dataset.ImageOrientationPatient, dtype=float)
        position = np.array(dataset.ImagePositionPatient, dtype=float)
        row_spacing, column_spacing = (float(value) for value in dataset.PixelSpacing)
    except (AttributeError, TypeError, ValueError):
        raise UserInputError(
            f"{path}: missing ImageOrientationPatient, ImagePositionPatient or PixelSpacing; "
            "export the images with their geometry."
        ) from None
    # The first cosine runs along a row (increasing column index), the second down a column.
    along_row, along_column = orientation[:3], orientation[3:]
    return along_row * column_spacing, along_column * row_spacing, position


def _pixels(dataset: pydicom.Dataset, path: Path) -> np.ndarray:
    try:
        pixels = dataset.pixel_array.astype(np.float32)
    except (AttributeError, ValueError, RuntimeError) as error:
        raise UserInputError(f"{path}: the pixel data cannot be decoded ({error}).") from None
    if pixels.ndim != 2:
        raise UserInputError(
            f"{path}: has {pixels.ndim}-dimensional pixel data; give single-frame images."
        )
    slope = float(getattr(dataset, "RescaleSlope", 1) or 1)
    intercept = float(getattr(dataset, "RescaleIntercept", 0) or 0)
    return pixels * slope + intercept


def _affine(column_step, row_step, slice_step, origin) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = (
        column_step, row_step, slice_step, origin,
    )  # fmt: skip
    return _LPS_TO_RAS @ affine


def read_dicom_series(folder: str | Path) -> DicomVolume:
    """Read one DICOM series folder as a volume.

    Raises
    ------
    UserInputError
        When the folder has no DICOM file, more than one series, images of
        different orientation or size, or two images at one position.
    """
    folder = Path(folder)
    paths = sorted(path for path in folder.rglob("*") if path.is_file())
    datasets = []
    for path in paths:
        try:
            datasets.append((path, pydicom.dcmread(path, stop_before_pixels=True)))
        except (InvalidDicomError, OSError, EOFError):
            continue  # not DICOM (e.g. DICOMDIR notes, thumbnails)
    if not datasets:
        raise UserInputError(f"{folder}: no DICOM file found; give the folder of one series.")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in datasets}
    if len(series) > 1:
        raise UserInputError(
            f"{folder}: contains {len(series)} series ({', '.join(sorted(series))}); "
            "give a folder with one series."
        )

    column_step, row_step, _ = _plane(datasets[0][1], datasets[0][0])
    normal = np.cross(column_step, row_step)
    normal /= np.linalg.norm(normal)
    located = []
    for path, dataset in datasets:
        step_c, step_r, position = _plane(dataset, path)
        if not (
            np.allclose(step_c, column_step, atol=1e-3) and np.allclose(step_r, row_step, atol=1e-3)
        ):
            raise UserInputError(
                f"{path}: its orientation or pixel spacing differs from {datasets[0][0]}; "
                "a series must be one stack of parallel slices."
            )
        located.append((float(position @ normal), path, position))
    located.sort(key=lambda item: item[0])
    distances = np.diff([item[0] for item in located])
    if np.any(distances < 1e-3):
        raise UserInputError(f"{folder}: two images share one slice position; remove duplicates.")

    slices = [_pixels(_read(path), path) for _, path, _ in located]
    if len({plane.shape for plane in slices}) > 1:
        raise UserInputError(f"{folder}: the images differ in size; give one series.")
    thickness = float(getattr(datasets[0][1], "SliceThickness", 1.0) or 1.0)
    spacing = float(np.median(distances)) if len(located) > 1 else thickness
    slice_step = normal * spacing
    data = np.stack([plane.T for plane in slices], axis=2)
    return DicomVolume(
        data=data,
        affine=_affine(column_step, row_step, slice_step, located[0][2]),
        mask=None,
        series_description=str(getattr(datasets[0][1], "SeriesDescription", "")),
    )


def read_dicom_overlay(path: str | Path, *, group: int = 0x6000) -> DicomVolume:
    """Read a single DICOM image whose overlay outlines the lesion, as a one-slice volume.

    Closed outlines in the overlay are filled. The lesion is the largest filled
    outline that is not an axis-aligned rectangle, because workstation graphics
    frame their text labels in rectangles.

    Raises
    ------
    UserInputError
        When the file has no overlay in ``group`` or the overlay has no closed outline.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> volume = read_dicom_overlay(get_testdata_file("MR-SIEMENS-DICOM-WithOverlays.dcm"))
    >>> volume.data.shape, int(volume.mask.sum())
    ((484, 484, 1), 920)
    """
    path = Path(path)
    dataset = _read(path)
    if (group, 0x3000) not in dataset:
        raise UserInputError(
            f"{path}: no overlay data in group {group:#06x}; give an image whose overlay "
            "outlines the lesion, or a mask."
        )
    outline = dataset.overlay_array(group).astype(bool)
    mask = _lesion_from_outline(outline, path)
    column_step, row_step, origin = _plane(dataset, path)
    thickness = float(getattr(dataset, "SliceThickness", 1.0) or 1.0)
    normal = np.cross(column_step, row_step)
    slice_step = normal / np.linalg.norm(normal) * thickness
    return DicomVolume(
        data=_pixels(dataset, path).T[:, :, None],
        affine=_affine(column_step, row_step, slice_step, origin),
        mask=mask.T[:, :, None],
        series_description=str(getattr(dataset, "SeriesDescription", "")),
    )


def _lesion_from_outline(outline: np.ndarray, path: Path) -> np.ndarray:
    filled = ndimage.binary_fill_holes(outline)
    labels, count = ndimage.label(filled)
    best, best_area = 0, 0
    for label in range(1, count + 1):
        component = labels == label
        interior = int((component & ~outline).sum())
        rows, columns = np.nonzero(component)
        box_area = (np.ptp(rows) + 1) * (np.ptp(columns) + 1)
        rectangle = component.sum() / box_area > 0.95
        if interior > 0 and not rectangle and component.sum() > best_area:
            best, best_area = label, int(component.sum())
    if best == 0:
        raise UserInputError(
            f"{path}: the overlay has no closed outline other than rectangles; "
            "outline the lesion with a closed contour."
        )
    return labels == best


def write_dicom_cohort(
    volume: DicomVolume,
    out_dir: str | Path,
    *,
    patient_id: str,
    lesion_id: str,
    sequence: str,
    split: str = "evaluation",
    box: tuple[int, ...] | None = None,
) -> Path:
    """Write ``volume`` and its mask (or ``box``) as a one-lesion cohort folder.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    UserInputError
        When the volume has neither a mask nor a box, the box lies outside it, the
        names are invalid or the folder has a manifest.
    """
    out_dir = Path(out_dir)
    problems = []
    if volume.mask is None and box is None:
        problems.append(
            "the volume has no lesion mask; read an image with an outlining overlay "
            "or give the lesion's box"
        )
    if box is not None:
        problems += check_box(box, volume.data.shape, label="box")
    if sequence not in SEQUENCES:
        problems.append(f"unknown sequence {sequence!r}; use one of {', '.join(SEQUENCES)}")
    if split not in SPLITS:
        problems.append(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    for name, value in (("patient id", patient_id), ("lesion id", lesion_id)):
        if not value or "/" in value:
            problems.append(f"invalid {name} {value!r}; give a non-empty name without '/'")
    if (out_dir / MANIFEST).exists():
        problems.append(f"{out_dir / MANIFEST} exists already; give another --out folder")
    if problems:
        raise UserInputError(f"Cannot write the DICOM cohort: {'; '.join(problems)}.")

    image_path = f"images/{patient_id}/{sequence}.nii.gz"
    files = [(image_path, volume.data)]
    mask_path, box_text = "", ""
    if volume.mask is not None:
        mask_path = f"masks/{lesion_id}-{sequence}.nii.gz"
        files.append((mask_path, volume.mask.astype(np.uint8)))
    else:
        box_text = ",".join(str(value) for value in box)
    for relative, data in files:
        (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        image = nib.Nifti1Image(data, volume.affine)
        image.set_qform(volume.affine, code=1)
        image.set_sform(volume.affine, code=1)
        image.header.set_xyzt_units("mm")
        nib.save(image, out_dir / relative)

    manifest = pd.DataFrame(
        [(patient_id, lesion_id, split, sequence, image_path, mask_path, box_text)],
        columns=["patient_id", "lesion_id", "split", "sequence", "image", "mask", "box"],
    )
    empty = {
        READS: ["lesion_id", "reader", "feature", "answer"],
        PATHOLOGY: ["lesion_id", "diagnosis", "method"],
    }
    for name, columns in empty.items():
        pd.DataFrame(columns=columns).to_csv(out_dir / name, index=False, lineterminator="\n")
    manifest.to_csv(out_dir / MANIFEST, index=False, lineterminator="\n")
    return out_dir
