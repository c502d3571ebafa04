"""A synthetic liver MRI cohort whose imaging features are known by construction.

:func:`build_phantom` writes a complete cohort folder (see :mod:`study.data.cohort`):
per patient one int16 NIfTI volume for each of :data:`PHANTOM_SEQUENCES`, one uint8
mask per lesion, and the manifest, truth, lesion, pathology and reads tables.

Every random choice (lesion types, features, sizes, positions, contrast, reader
errors, noise seeds) is drawn first from one ``numpy.random.default_rng(seed)``
into a plan, and the plan is then rendered deterministically. The gzip header
carries no timestamp, so the same seed gives byte-identical files.

The signal model is simple: each tissue has a fixed intensity per sequence, and a
lesion's intensity is a ratio to the liver's in that sequence, set from its
features. Rims (rim APHE, peripheral washout) and the enhancing capsule are
shells of the lesion ellipsoid. A Gaussian blur mimics partial volume and
Gaussian noise is added before taking the magnitude.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from study.errors import UserInputError
from study.lirads import FEATURES

__all__ = [
    "LESION_TYPES",
    "PHANTOM_FEATURES",
    "PHANTOM_SEQUENCES",
    "READER_ERROR_RATES",
    "PhantomLesion",
    "build_phantom",
]

PHANTOM_SEQUENCES: tuple[str, ...] = (
    "t1_pre", "arterial", "portal_venous", "delayed", "t2", "dwi", "adc",
    "in_phase", "opposed_phase",
)  # fmt: skip
"""Sequences of every phantom patient."""

PHANTOM_FEATURES: tuple[str, ...] = (
    "aphe", "washout", "enhancing_capsule", "restricted_diffusion",
    "t2_hyperintensity", "marked_t2_hyperintensity", "fat_in_mass",
)  # fmt: skip
"""Features written to ``truth.csv`` and ``reads.csv``."""

LESION_TYPES: tuple[str, ...] = ("HCC", "metastasis", "hemangioma", "FNH", "cyst")
_TYPE_PROBABILITIES = (0.35, 0.2, 0.15, 0.15, 0.15)

READER_ERROR_RATES: Mapping[str, float] = MappingProxyType({"R1": 0.10, "R2": 0.12, "R3": 0.15})
"""Per-feature probability that a simulated radiologist picks another category than the truth."""

SHAPE = (96, 96, 24)
SPACING_MM = (1.5, 1.5, 5.0)

# Probability that a feature is present (binary) or of each non-absent category,
# per lesion type; anything not listed is absent. Hemangiomas are flash-filling
# (nonrim APHE) in a minority; FNH restricts diffusion in some cases.
_FEATURE_PROBABILITIES: Mapping[str, Mapping[str, Mapping[str, float]]] = {
    "HCC": {
        "aphe": {"nonrim": 0.85}, "washout": {"nonperipheral": 0.8},
        "enhancing_capsule": {"present": 0.6}, "restricted_diffusion": {"present": 0.75},
        "t2_hyperintensity": {"present": 0.7}, "fat_in_mass": {"present": 0.3},
    },
    "metastasis": {
        "aphe": {"rim": 0.75}, "washout": {"peripheral": 0.7, "nonperipheral": 0.15},
        "restricted_diffusion": {"present": 0.9}, "t2_hyperintensity": {"present": 0.8},
    },
    "hemangioma": {"aphe": {"nonrim": 0.2}, "marked_t2_hyperintensity": {"present": 1.0}},
    "FNH": {
        "aphe": {"nonrim": 1.0}, "restricted_diffusion": {"present": 0.2},
        "t2_hyperintensity": {"present": 0.3},
    },
    "cyst": {"marked_t2_hyperintensity": {"present": 1.0}},
}  # fmt: skip

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
_LIVER_CENTRE = (18.0, 4.0)
_LIVER_SEMI_AXES = (40.0, 36.0)
_LIVER_HALF_HEIGHT = 40.0
# T1 signal of each lesion type relative to liver, before contrast.
_T1_RATIO = {"HCC": 0.75, "metastasis": 0.65, "hemangioma": 0.6, "FNH": 0.95, "cyst": 0.35}


@dataclass(frozen=True)
class PhantomLesion:
    """One planned lesion: its place in the volume, its type and its true features.

    ``centre_mm`` and ``semi_axes_mm`` are RAS world coordinates and ellipsoid
    semi-axes in millimetres; ``contrast`` scales every lesion-to-liver contrast.
    """

    patient_id: str
    lesion_id: str
    split: str
    lesion_type: str
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    contrast: float
    features: Mapping[str, str]

    @property
    def size_mm(self) -> float:
        """Maximum axial diameter in millimetres."""
        return 2 * max(self.semi_axes_mm[:2])


def build_phantom(
    out_dir: str | Path, *, patients: int = 16, seed: int = 0, exemplar_patients: int = 4
) -> Path:
    """Write a phantom cohort folder and return its path.

    Parameters
    ----------
    out_dir
        Folder to write; created if missing. Files of an earlier build are overwritten.
    patients
        Number of patients in all, 1 or 2 lesions each (half of each split has 2).
    seed
        Seed of every random choice; the same seed writes byte-identical files.
    exemplar_patients
        How many of the ``patients`` form the ``exemplar`` split; the rest are
        ``evaluation``.

    Returns
    -------
    Path
        ``out_dir``.

    Examples
    --------
    >>> import tempfile
    >>> folder = build_phantom(tempfile.mkdtemp(), patients=2, exemplar_patients=1)
    >>> sorted(path.name for path in folder.glob("*.csv"))
    ['lesions.csv', 'manifest.csv', 'pathology.csv', 'reads.csv', 'truth.csv']
    """
    if patients < 1 or not 0 <= exemplar_patients < patients:
        raise UserInputError(
            f"Invalid phantom size: patients={patients}, exemplar_patients={exemplar_patients}; "
            "use patients >= 1 and 0 <= exemplar_patients < patients."
        )
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)

    lesions, noise_seeds = _plan_lesions(rng, patients, exemplar_patients)
    reads = _simulate_reads(rng, lesions)
    pathology_methods = [_pathology_method(rng, lesion) for lesion in lesions]

    affine = np.diag([*SPACING_MM, 1.0])
    affine[:3, 3] = -(np.array(SHAPE) - 1) / 2 * np.array(SPACING_MM)
    grid = _world_grid(affine)
    labels = _tissue_labels(grid)
    for patient_id, noise_seed in noise_seeds.items():
        patient_lesions = [lesion for lesion in lesions if lesion.patient_id == patient_id]
        _write_patient(out_dir, patient_id, patient_lesions, grid, labels, affine, noise_seed)

    _write_tables(out_dir, lesions, reads, pathology_methods)
    return out_dir


def _plan_lesions(
    rng: np.random.Generator, patients: int, exemplar_patients: int
) -> tuple[list[PhantomLesion], dict[str, int]]:
    n_evaluation = patients - exemplar_patients
    patient_ids = [f"P{number:03d}" for number in range(1, patients + 1)]
    splits = ["evaluation"] * n_evaluation + ["exemplar"] * exemplar_patients

    # Half of each split gets two lesions, so the lesion count does not depend on the seed.
    lesion_counts = np.ones(patients, dtype=int)
    for start, size in ((0, n_evaluation), (n_evaluation, exemplar_patients)):
        chosen = rng.choice(size, size=(size + 1) // 2, replace=False) if size else []
        lesion_counts[start + np.asarray(chosen, dtype=int)] = 2

    # Exemplar lesions cycle through every type so that few-shot prompts can show each one.
    exemplar_types = list(rng.permutation(LESION_TYPES))

    lesions: list[PhantomLesion] = []
    noise_seeds: dict[str, int] = {}
    for patient_id, split, count in zip(patient_ids, splits, lesion_counts, strict=True):
        placed: list[tuple[np.ndarray, float]] = []
        for number in range(1, count + 1):
            if split == "exemplar":
                lesion_type = exemplar_types[0]
                exemplar_types = exemplar_types[1:] + exemplar_types[:1]
            else:
                lesion_type = str(rng.choice(LESION_TYPES, p=_TYPE_PROBABILITIES))
            features = _draw_features(rng, lesion_type)
            centre, semi_axes = _place_lesion(rng, placed)
            lesions.append(
                PhantomLesion(
                    patient_id=patient_id,
                    lesion_id=f"{patient_id}-L{number}",
                    split=split,
                    lesion_type=lesion_type,
                    centre_mm=tuple(float(value) for value in centre),
                    semi_axes_mm=tuple(float(value) for value in semi_axes),
                    contrast=float(rng.uniform(0.85, 1.15)),
                    features=MappingProxyType(features),
                )
            )
        noise_seeds[patient_id] = int(rng.integers(2**32))
    return lesions, noise_seeds


def _draw_features(rng: np.random.Generator, lesion_type: str) -> dict[str, str]:
    features = {}
    for name in PHANTOM_FEATURES:
        probabilities = _FEATURE_PROBABILITIES[lesion_type].get(name, {})
        categories = ["absent", *probabilities]
        weights = [1 - sum(probabilities.values()), *probabilities.values()]
        features[name] = str(rng.choice(categories, p=weights))
    return features


def _place_lesion(
    rng: np.random.Generator, placed: list[tuple[np.ndarray, float]]
) -> tuple[np.ndarray, np.ndarray]:
    diameter = rng.uniform(10.0, 40.0)
    while True:
        for _attempt in range(200):
            radius = diameter / 2
            semi_axes = radius * np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.1)])

            # The lesion stays at least 4 mm inside the liver and 3 mm from other lesions.
            inner = np.array(_LIVER_SEMI_AXES) - radius - 4.0
            direction = rng.uniform(-1.0, 1.0, size=2)
            if np.sum(direction**2) > 1.0:
                continue
            top = _LIVER_HALF_HEIGHT - semi_axes[2] - 4.0
            centre = np.array(
                [*(np.array(_LIVER_CENTRE) + direction * inner), rng.uniform(-top, top)]
            )
            if all(np.linalg.norm(centre - other) > radius + r + 3.0 for other, r in placed):
                placed.append((centre, radius))
                return centre, semi_axes
        diameter *= 0.8


def _simulate_reads(rng: np.random.Generator, lesions: list[PhantomLesion]) -> pd.DataFrame:
    rows = []
    for lesion in lesions:
        for reader, error_rate in READER_ERROR_RATES.items():
            size_mm = round(lesion.size_mm + rng.normal(0.0, 1.0), 1)
            for name in PHANTOM_FEATURES:
                answer = lesion.features[name]
                if rng.random() < error_rate:
                    others = [c for c in FEATURES[name].categories if c != answer]
                    answer = str(rng.choice(others))
                rows.append((lesion.lesion_id, reader, name, answer, size_mm))
    return pd.DataFrame(rows, columns=["lesion_id", "reader", "feature", "answer", "size_mm"])


def _pathology_method(rng: np.random.Generator, lesion: PhantomLesion) -> str:
    malignant = lesion.lesion_type in ("HCC", "metastasis")
    biopsied = rng.random() < (0.8 if malignant else 0.2)
    return "histopathology" if biopsied else "imaging follow-up"


def _world_grid(affine: np.ndarray) -> np.ndarray:
    indices = np.indices(SHAPE, dtype=np.float32)
    return np.einsum("ij,j...->i...", affine[:3, :3], indices) + affine[:3, 3, None, None, None]


def _tissue_labels(grid: np.ndarray) -> np.ndarray:
    x, y, z = grid
    labels = np.zeros(SHAPE, dtype=np.int8)
    labels[(x / 68) ** 2 + (y / 56) ** 2 <= 1] = 2
    labels[(x / 62) ** 2 + (y / 50) ** 2 <= 1] = 1
    liver_x, liver_y = _LIVER_CENTRE
    liver = ((x - liver_x) / _LIVER_SEMI_AXES[0]) ** 2 + ((y - liver_y) / _LIVER_SEMI_AXES[1]) ** 2
    labels[liver + (z / (_LIVER_HALF_HEIGHT + 15)) ** 4 <= 1] = _LIVER
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
        filled = {"hemangioma": 1.15, "cyst": unenhanced(sequence)}.get(kind, 1.0)
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


def _write_patient(
    out_dir: Path,
    patient_id: str,
    lesions: list[PhantomLesion],
    grid: np.ndarray,
    labels: np.ndarray,
    affine: np.ndarray,
    noise_seed: int,
) -> None:
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
        mask = (rho <= 1.0).astype(np.uint8)
        _save_nifti(out_dir / "masks" / f"{lesion.lesion_id}.nii.gz", mask, affine)

    noise_rng = np.random.default_rng(noise_seed)
    for sequence in PHANTOM_SEQUENCES:
        signal = np.asarray(_TISSUE_SIGNAL[sequence], dtype=np.float32)
        volume = signal[labels]
        liver = signal[_LIVER]
        for lesion, inside, depth, shell_mm in geometry:
            core, shell, thickness = _lesion_ratios(lesion)[sequence]
            volume[inside] = liver * (1 + lesion.contrast * (core - 1))
            if shell is not None:
                ring = inside & (depth < (thickness or shell_mm))
                volume[ring] = liver * (1 + lesion.contrast * (shell - 1))
        volume = gaussian_filter(volume, sigma=(0.7, 0.7, 0.3))
        sigma = (0.06 if sequence == "dwi" else 0.03) * liver
        volume = np.abs(volume + noise_rng.normal(0.0, sigma, size=SHAPE))
        data = np.clip(np.rint(volume), 0, np.iinfo(np.int16).max).astype(np.int16)
        _save_nifti(out_dir / "images" / patient_id / f"{sequence}.nii.gz", data, affine)


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


def _write_tables(
    out_dir: Path, lesions: list[PhantomLesion], reads: pd.DataFrame, methods: list[str]
) -> None:
    manifest, truth, table, pathology = [], [], [], []
    for lesion, method in zip(lesions, methods, strict=True):
        mask = f"masks/{lesion.lesion_id}.nii.gz"
        for sequence in PHANTOM_SEQUENCES:
            image = f"images/{lesion.patient_id}/{sequence}.nii.gz"
            manifest.append(
                (lesion.patient_id, lesion.lesion_id, lesion.split, sequence, image, mask, "")
            )
        truth += [(lesion.lesion_id, name, lesion.features[name]) for name in PHANTOM_FEATURES]
        table.append(
            (lesion.lesion_id, lesion.patient_id, lesion.lesion_type, round(lesion.size_mm, 1))
        )
        pathology.append((lesion.lesion_id, lesion.lesion_type, method))

    columns = {
        "manifest.csv": (
            manifest,
            ["patient_id", "lesion_id", "split", "sequence", "image", "mask", "box"],
        ),
        "truth.csv": (truth, ["lesion_id", "feature", "answer"]),
        "lesions.csv": (table, ["lesion_id", "patient_id", "lesion_type", "size_mm"]),
        "pathology.csv": (pathology, ["lesion_id", "diagnosis", "method"]),
    }
    for name, (rows, header) in columns.items():
        pd.DataFrame(rows, columns=header).to_csv(out_dir / name, index=False, lineterminator="\n")
    reads.to_csv(out_dir / "reads.csv", index=False, lineterminator="\n")
