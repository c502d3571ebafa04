"""The phantom's anatomy, acquisition grids and signal model, and the volumes it writes.

Each tissue has a fixed intensity per sequence, and a lesion's intensity is a
ratio to the liver's in that sequence, set from its features. Rims (rim APHE,
peripheral washout) and the enhancing capsule are shells of the lesion
ellipsoid. A Gaussian blur mimics partial volume, and Gaussian noise is added
before taking the magnitude, as in a magnitude MR image.

The sequences come from four acquisitions (:data:`ACQUISITIONS`), each on its
own voxel grid and, as in separate breath-holds, with the whole anatomy shifted
by a few millimetres. So the sequences are not co-registered, and every lesion
has one mask per acquisition, drawn on that acquisition's grid.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

if TYPE_CHECKING:
    from study.data.phantom import PhantomLesion

__all__ = ["ACQUISITIONS", "Acquisition", "acquisition_of", "write_patient"]


@dataclass(frozen=True)
class Acquisition:
    """One acquisition: the sequences it gives and its voxel grid (RAS, centred on the origin)."""

    name: str
    sequences: tuple[str, ...]
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]

    @property
    def affine(self) -> np.ndarray:
        """Voxel-to-world affine: RAS axes, the grid centred on the world origin."""
        affine = np.diag([*self.spacing_mm, 1.0])
        affine[:3, 3] = -(np.array(self.shape) - 1) / 2 * np.array(self.spacing_mm)
        return affine


ACQUISITIONS: tuple[Acquisition, ...] = (
    Acquisition("dynamic", ("t1_pre", "arterial", "portal_venous", "delayed"),
                (96, 96, 24), (1.5, 1.5, 5.0)),
    Acquisition("t2", ("t2",), (80, 80, 20), (1.8, 1.8, 6.0)),
    Acquisition("diffusion", ("dwi", "adc"), (64, 64, 20), (2.25, 2.25, 6.0)),
    Acquisition("chemical_shift", ("in_phase", "opposed_phase"), (96, 96, 24), (1.5, 1.5, 5.0)),
)  # fmt: skip
"""The phantom's acquisitions. Lesion positions are given in the dynamic acquisition's frame."""

MAX_SHIFT_MM = (0.0, 3.0, 6.0)
"""Largest breath-hold shift of the anatomy per RAS axis, for acquisitions other than dynamic."""


def acquisition_of(sequence: str) -> Acquisition:
    """Return the acquisition that gives ``sequence``.

    Examples
    --------
    >>> acquisition_of("adc").name
    'diffusion'
    """
    for acquisition in ACQUISITIONS:
        if sequence in acquisition.sequences:
            return acquisition
    raise KeyError(f"no phantom acquisition gives {sequence!r}")


# Tissue intensity per sequence: air, soft tissue, subcutaneous fat, liver, spleen, aorta.
# ADC is in 1e-6 mm^2/s.
_TISSUE_SIGNAL: Mapping[str, tuple[float, ...]] = {
    "t1_pre": (0, 300, 750, 420, 330, 180),
    "arterial": (0, 340, 750, 520, 620, 1500),
    "portal_venous": (0, 420, 750, 820, 760, 950),
    "delayed": (0, 400, 750, 720, 680, 700),
    "t2": (0, 260, 550, 220, 420, 80),
    "dwi": (0, 140, 30, 260, 420, 20),
    "adc": (0, 1400, 150, 1100, 850, 2400),
    "in_phase": (0, 320, 780, 480, 360, 200),
    "opposed_phase": (0, 300, 760, 460, 340, 190),
}
_LIVER = 3
# Liver ellipse in the axial plane: centre (x, y) and semi-axes, mm in RAS world coordinates.
LIVER_CENTRE = (18.0, 4.0)
LIVER_SEMI_AXES = (40.0, 36.0)
LIVER_HALF_HEIGHT = 40.0
# T1 signal of each lesion type relative to liver, before contrast.
_T1_RATIO = {
    "HCC": 0.75, "intrahepatic cholangiocarcinoma": 0.7, "metastasis": 0.65,
    "hemangioma": 0.6, "FNH": 0.95, "cyst": 0.35,
}  # fmt: skip


def _world_grid(acquisition: Acquisition, shift_mm: np.ndarray) -> np.ndarray:
    # World coordinates of every voxel in the anatomy's frame: the anatomy is shifted by
    # shift_mm, so a voxel at world position p shows the anatomy at p - shift_mm.
    affine = acquisition.affine
    indices = np.indices(acquisition.shape, dtype=np.float32)
    grid = np.einsum("ij,j...->i...", affine[:3, :3], indices) + affine[:3, 3, None, None, None]
    return grid - shift_mm[:, None, None, None].astype(np.float32)


def _tissue_labels(grid: np.ndarray) -> np.ndarray:
    x, y, z = grid
    labels = np.zeros(x.shape, dtype=np.int8)
    labels[(x / 68) ** 2 + (y / 56) ** 2 <= 1] = 2
    labels[(x / 62) ** 2 + (y / 50) ** 2 <= 1] = 1
    liver_x, liver_y = LIVER_CENTRE
    liver = ((x - liver_x) / LIVER_SEMI_AXES[0]) ** 2 + ((y - liver_y) / LIVER_SEMI_AXES[1]) ** 2
    labels[liver + (z / (LIVER_HALF_HEIGHT + 15)) ** 4 <= 1] = _LIVER
    labels[((x + 44) / 14) ** 2 + ((y + 8) / 22) ** 2 + (z / 45) ** 4 <= 1] = 4
    labels[(x + 10) ** 2 + (y + 36) ** 2 <= 7**2] = 5
    return labels


# A lesion's signal in one sequence: the core's ratio to liver, the outer shell's
# ratio (None when the lesion has no distinct shell) and the shell's thickness in mm
# (None for the default rim thickness).
_Pattern = tuple[float, float | None, float | None]
_CAPSULE_MM = 2.5


def _lesion_ratios(lesion: PhantomLesion) -> dict[str, _Pattern]:
    features, kind = lesion.features, lesion.lesion_type
    t1 = _T1_RATIO[kind]
    liver = {sequence: values[_LIVER] for sequence, values in _TISSUE_SIGNAL.items()}

    def unenhanced(sequence: str) -> float:
        # Without enhancement the lesion keeps its pre-contrast signal while the liver rises.
        return t1 * liver["t1_pre"] / liver[sequence]

    ratios: dict[str, _Pattern] = {"t1_pre": (t1, None, None)}
    aphe = features["aphe"]
    ratios["arterial"] = {
        "nonrim": (1.6, None, None),
        "rim": (0.7, 1.6, None),
        "absent": (unenhanced("arterial") if kind == "cyst" else 0.8, None, None),
    }[aphe]
    for sequence, drop in (("portal_venous", 0.65), ("delayed", 0.55)):
        # Cholangiocarcinoma's fibrous stroma enhances late: dim centre in the portal venous
        # phase, bright in the delayed phase.
        late = 1.15 if sequence == "delayed" else 0.85
        filled = {
            "hemangioma": 1.15,
            "cyst": unenhanced(sequence),
            "intrahepatic cholangiocarcinoma": late,
        }.get(kind, 1.0)
        core, shell = {
            "nonperipheral": (drop, None),
            "peripheral": (1.0, drop),
            "absent": (filled, None),
        }[features["washout"]]
        thickness = None
        if features["enhancing_capsule"] == "present":
            shell, thickness = 1.6, _CAPSULE_MM
        ratios[sequence] = (core, shell, thickness)

    if features["marked_t2_hyperintensity"] == "present":
        ratios["t2"] = (3.0, None, None)
    else:
        ratios["t2"] = (1.5 if features["t2_hyperintensity"] == "present" else 1.05, None, None)
    if features["restricted_diffusion"] == "present":
        ratios["dwi"], ratios["adc"] = (2.0, None, None), (0.6, None, None)
    else:
        # Hemangiomas shine through on DWI but have a high ADC; cysts are bright only on ADC.
        dwi, adc = {"hemangioma": (1.5, 1.6), "cyst": (0.5, 2.6)}.get(kind, (1.0, 1.0))
        ratios["dwi"], ratios["adc"] = (dwi, None, None), (adc, None, None)
    fat = features["fat_in_mass"] == "present"
    ratios["in_phase"] = (t1 + 0.3 if fat else t1, None, None)
    ratios["opposed_phase"] = (0.5 if fat else t1, None, None)
    return ratios


def write_patient(
    out_dir: Path,
    patient_id: str,
    lesions: list[PhantomLesion],
    shifts_mm: Mapping[str, np.ndarray],
    noise_seed: int,
) -> dict[tuple[str, str], str]:
    """Write one patient's volumes and lesion masks and return the masks' paths.

    The paths are keyed by ``(lesion_id, acquisition name)``.

    Paths are relative to ``out_dir``: ``images/<patient>/<sequence>.nii.gz`` and
    ``masks/<lesion>/<acquisition>.nii.gz``.
    """
    noise_rng = np.random.default_rng(noise_seed)
    mask_paths: dict[tuple[str, str], str] = {}
    for acquisition in ACQUISITIONS:
        grid = _world_grid(acquisition, shifts_mm[acquisition.name])
        labels = _tissue_labels(grid)
        geometry = []
        for lesion in lesions:
            offset = (grid - np.array(lesion.centre_mm)[:, None, None, None]) / np.array(
                lesion.semi_axes_mm
            )[:, None, None, None]
            rho = np.sqrt(np.sum(offset**2, axis=0))
            # Depth below the lesion surface in mm, exact for a sphere.
            depth = (1.0 - rho) * min(lesion.semi_axes_mm)
            shell_mm = max(3.0, 0.3 * lesion.semi_axes_mm[0])
            geometry.append((lesion, rho <= 1.0, depth, shell_mm))
            relative = f"masks/{lesion.lesion_id}/{acquisition.name}.nii.gz"
            _save_nifti(out_dir / relative, (rho <= 1.0).astype(np.uint8), acquisition.affine)
            mask_paths[(lesion.lesion_id, acquisition.name)] = relative

        # Partial volume: about 0.7 voxel in plane, less across the thicker slices.
        sigma = (0.7, 0.7, 0.3)
        for sequence in acquisition.sequences:
            signal = np.asarray(_TISSUE_SIGNAL[sequence], dtype=np.float32)
            volume = signal[labels]
            liver = signal[_LIVER]
            for lesion, inside, depth, shell_mm in geometry:
                core, shell, thickness = _lesion_ratios(lesion)[sequence]
                volume[inside] = liver * (1 + lesion.contrast * (core - 1))
                if shell is not None:
                    ring = inside & (depth < (thickness or shell_mm))
                    volume[ring] = liver * (1 + lesion.contrast * (shell - 1))
            volume = gaussian_filter(volume, sigma=sigma)
            noise = (0.06 if sequence == "dwi" else 0.03) * liver
            volume = np.abs(volume + noise_rng.normal(0.0, noise, size=acquisition.shape))
            data = np.clip(np.rint(volume), 0, np.iinfo(np.int16).max).astype(np.int16)
            _save_nifti(
                out_dir / "images" / patient_id / f"{sequence}.nii.gz", data, acquisition.affine
            )
    return mask_paths


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the write time out of the gzip header. Level 1 is used because the
    # default level 9 took most of the build time on these noisy volumes. NOTE: another
    # zlib version may compress to other bytes, which changes cohort_sha256 but not the
    # decompressed volumes.
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=1, mtime=0))
