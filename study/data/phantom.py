"""A synthetic liver MRI cohort whose imaging features are known by construction.

:func:`build_phantom` writes a complete cohort folder (see :mod:`study.data.cohort`):
per patient one int16 NIfTI volume for each of :data:`PHANTOM_SEQUENCES`, one uint8
mask per lesion and acquisition, and the manifest, truth, lesion, pathology and
reads tables. The anatomy, grids and signal model are in
:mod:`study.data.phantom_signal`; the simulated radiologists, who agree at a
target kappa per feature, in :mod:`study.data.simulated_reads`.

Each patient has 1 to 3 lesions of the types in :data:`LESION_TYPES`, whose
features follow the type with the variation of :data:`FEATURE_PROBABILITIES`.
Every random choice (lesion types, features, sizes, positions, contrast,
breath-hold shifts, reads, noise seeds) is drawn first from one
``numpy.random.default_rng(seed)`` into a :class:`PhantomPlan`, and the plan is
then rendered deterministically. The gzip header carries no timestamp, so the
same seed gives byte-identical files. :func:`plan_phantom` gives the plan alone,
without writing volumes, for studies of the reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from study.data.phantom_signal import (
    ACQUISITIONS,
    LIVER_CENTRE,
    LIVER_HALF_HEIGHT,
    LIVER_SEMI_AXES,
    MAX_SHIFT_MM,
    acquisition_of,
    write_patient,
)
from study.data.simulated_reads import READERS, simulate_reads
from study.errors import UserInputError

__all__ = [
    "FEATURE_PROBABILITIES",
    "LESION_TYPES",
    "PHANTOM_FEATURES",
    "PHANTOM_SEQUENCES",
    "PhantomLesion",
    "PhantomPlan",
    "build_phantom",
    "plan_phantom",
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

LESION_TYPES: tuple[str, ...] = (
    "HCC", "intrahepatic cholangiocarcinoma", "metastasis", "hemangioma", "FNH", "cyst",
)  # fmt: skip
_TYPE_PROBABILITIES = (0.32, 0.08, 0.2, 0.14, 0.13, 0.13)

# Lesions per patient: this multiset is shuffled, so the lesion count of a split
# depends on its number of patients only, never on the seed.
_LESION_COUNTS = (1, 2, 1, 3)

# Probability that a feature is present (binary) or of each non-absent category,
# per lesion type; anything not listed is absent. Hemangiomas are flash-filling
# (nonrim APHE) in a minority; FNH restricts diffusion in some cases;
# cholangiocarcinoma and metastases show the targetoid pattern (rim APHE,
# peripheral washout) in most cases.
FEATURE_PROBABILITIES: Mapping[str, Mapping[str, Mapping[str, float]]] = MappingProxyType({
    "HCC": {
        "aphe": {"nonrim": 0.85}, "washout": {"nonperipheral": 0.8},
        "enhancing_capsule": {"present": 0.6}, "restricted_diffusion": {"present": 0.75},
        "t2_hyperintensity": {"present": 0.7}, "fat_in_mass": {"present": 0.3},
    },
    "intrahepatic cholangiocarcinoma": {
        "aphe": {"rim": 0.65, "nonrim": 0.15}, "washout": {"peripheral": 0.5},
        "restricted_diffusion": {"present": 0.85}, "t2_hyperintensity": {"present": 0.75},
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
})  # fmt: skip
"""Per lesion type, the probability of each non-absent category of each feature."""


@dataclass(frozen=True)
class PhantomLesion:
    """One planned lesion: its place in the volume, its type and its true features.

    ``centre_mm`` and ``semi_axes_mm`` are RAS world coordinates (in the dynamic
    acquisition's frame) and ellipsoid semi-axes in millimetres; ``contrast``
    scales every lesion-to-liver contrast.
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


@dataclass(frozen=True, eq=False)
class PhantomPlan:
    """Every random choice of a phantom cohort, drawn before anything is written.

    Attributes
    ----------
    lesions
        The lesions in patient order.
    truth
        ``lesion_id, feature, answer``.
    reads
        ``lesion_id, reader, feature, answer, size_mm`` of the simulated radiologists.
    pathology_methods
        ``histopathology`` or ``imaging follow-up`` per lesion, in ``lesions`` order.
    shifts_mm
        Per patient, the breath-hold shift (RAS, mm) of each acquisition's anatomy.
    noise_seeds
        Per patient, the seed of its image noise.
    """

    lesions: tuple[PhantomLesion, ...]
    truth: pd.DataFrame
    reads: pd.DataFrame
    pathology_methods: tuple[str, ...]
    shifts_mm: Mapping[str, Mapping[str, np.ndarray]]
    noise_seeds: Mapping[str, int]


def plan_phantom(
    *,
    patients: int = 16,
    seed: int = 0,
    exemplar_patients: int = 4,
    target_kappa: Mapping[str, float] | None = None,
) -> PhantomPlan:
    """Draw the plan of a phantom cohort without writing anything.

    Parameters are those of :func:`build_phantom`.

    Examples
    --------
    >>> plan = plan_phantom(patients=4, exemplar_patients=1, seed=3)
    >>> len(plan.lesions), sorted(plan.reads["reader"].unique())
    (5, ['R1', 'R2', 'R3'])
    """
    if patients < 1 or not 0 <= exemplar_patients < patients:
        raise UserInputError(
            f"Invalid phantom size: patients={patients}, exemplar_patients={exemplar_patients}; "
            "use patients >= 1 and 0 <= exemplar_patients < patients."
        )
    rng = np.random.default_rng(seed)
    lesions, noise_seeds, shifts = _plan_lesions(rng, patients, exemplar_patients)
    truth = pd.DataFrame(
        [(lesion.lesion_id, name, lesion.features[name])
         for lesion in lesions for name in PHANTOM_FEATURES],
        columns=["lesion_id", "feature", "answer"],
    )  # fmt: skip
    reads = simulate_reads(rng, truth, target_kappa=target_kappa)
    sizes = {
        (lesion.lesion_id, reader): round(lesion.size_mm + rng.normal(0.0, 1.0), 1)
        for lesion in lesions
        for reader in READERS
    }
    reads["size_mm"] = [sizes[key] for key in zip(reads["lesion_id"], reads["reader"], strict=True)]
    methods = tuple(_pathology_method(rng, lesion) for lesion in lesions)
    return PhantomPlan(
        lesions=tuple(lesions),
        truth=truth,
        reads=reads,
        pathology_methods=methods,
        shifts_mm=MappingProxyType(shifts),
        noise_seeds=MappingProxyType(noise_seeds),
    )


def build_phantom(
    out_dir: str | Path,
    *,
    patients: int = 16,
    seed: int = 0,
    exemplar_patients: int = 4,
    target_kappa: Mapping[str, float] | None = None,
) -> Path:
    """Write a phantom cohort folder and return its path.

    Parameters
    ----------
    out_dir
        Folder to write; created if missing. Files of an earlier build are overwritten.
    patients
        Number of patients in all, 1 to 3 lesions each (on average 1.75).
    seed
        Seed of every random choice; the same seed writes byte-identical files.
    exemplar_patients
        How many of the ``patients`` form the ``exemplar`` split; the rest are
        ``evaluation``.
    target_kappa
        Inter-reader kappa of the simulated radiologists per feature; features not
        given use :data:`study.data.simulated_reads.DEFAULT_TARGET_KAPPA`.

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
    plan = plan_phantom(
        patients=patients, seed=seed, exemplar_patients=exemplar_patients,
        target_kappa=target_kappa,
    )  # fmt: skip
    out_dir = Path(out_dir)
    mask_paths: dict[tuple[str, str], str] = {}
    for patient_id, noise_seed in plan.noise_seeds.items():
        patient_lesions = [lesion for lesion in plan.lesions if lesion.patient_id == patient_id]
        mask_paths |= write_patient(
            out_dir, patient_id, patient_lesions, plan.shifts_mm[patient_id], noise_seed
        )
    _write_tables(out_dir, plan, mask_paths)
    return out_dir


def _plan_lesions(
    rng: np.random.Generator, patients: int, exemplar_patients: int
) -> tuple[list[PhantomLesion], dict[str, int], dict[str, dict[str, np.ndarray]]]:
    n_evaluation = patients - exemplar_patients
    patient_ids = [f"P{number:03d}" for number in range(1, patients + 1)]
    splits = ["evaluation"] * n_evaluation + ["exemplar"] * exemplar_patients

    lesion_counts = np.ones(patients, dtype=int)
    for start, size in ((0, n_evaluation), (n_evaluation, exemplar_patients)):
        counts = np.resize(np.array(_LESION_COUNTS), size)
        lesion_counts[start : start + size] = rng.permutation(counts)

    # Exemplar lesions cycle through every type so that few-shot prompts can show each one.
    exemplar_types = list(rng.permutation(LESION_TYPES))

    lesions: list[PhantomLesion] = []
    noise_seeds: dict[str, int] = {}
    shifts: dict[str, dict[str, np.ndarray]] = {}
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
        # The dynamic phases define the frame; other breath-holds land a few mm away.
        shifts[patient_id] = {
            acquisition.name: (
                np.zeros(3)
                if acquisition.name == "dynamic"
                else rng.uniform(-1.0, 1.0, size=3) * np.array(MAX_SHIFT_MM)
            )
            for acquisition in ACQUISITIONS
        }
    return lesions, noise_seeds, shifts


def _draw_features(rng: np.random.Generator, lesion_type: str) -> dict[str, str]:
    features = {}
    for name in PHANTOM_FEATURES:
        probabilities = FEATURE_PROBABILITIES[lesion_type].get(name, {})
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
            inner = np.array(LIVER_SEMI_AXES) - radius - 4.0
            direction = rng.uniform(-1.0, 1.0, size=2)
            if np.sum(direction**2) > 1.0:
                continue
            top = LIVER_HALF_HEIGHT - semi_axes[2] - 4.0
            centre = np.array(
                [*(np.array(LIVER_CENTRE) + direction * inner), rng.uniform(-top, top)]
            )
            if all(np.linalg.norm(centre - other) > radius + r + 3.0 for other, r in placed):
                placed.append((centre, radius))
                return centre, semi_axes
        diameter *= 0.8


def _pathology_method(rng: np.random.Generator, lesion: PhantomLesion) -> str:
    malignant = lesion.lesion_type in ("HCC", "metastasis", "intrahepatic cholangiocarcinoma")
    biopsied = rng.random() < (0.8 if malignant else 0.2)
    return "histopathology" if biopsied else "imaging follow-up"


def _write_tables(
    out_dir: Path, plan: PhantomPlan, mask_paths: Mapping[tuple[str, str], str]
) -> None:
    manifest, table, pathology = [], [], []
    for lesion, method in zip(plan.lesions, plan.pathology_methods, strict=True):
        for sequence in PHANTOM_SEQUENCES:
            image = f"images/{lesion.patient_id}/{sequence}.nii.gz"
            mask = mask_paths[(lesion.lesion_id, acquisition_of(sequence).name)]
            manifest.append(
                (lesion.patient_id, lesion.lesion_id, lesion.split, sequence, image, mask, "")
            )
        table.append(
            (lesion.lesion_id, lesion.patient_id, lesion.lesion_type, round(lesion.size_mm, 1))
        )
        pathology.append((lesion.lesion_id, lesion.lesion_type, method))

    columns = {
        "manifest.csv": (
            manifest,
            ["patient_id", "lesion_id", "split", "sequence", "image", "mask", "box"],
        ),
        "lesions.csv": (table, ["lesion_id", "patient_id", "lesion_type", "size_mm"]),
        "pathology.csv": (pathology, ["lesion_id", "diagnosis", "method"]),
    }
    for name, (rows, header) in columns.items():
        pd.DataFrame(rows, columns=header).to_csv(out_dir / name, index=False, lineterminator="\n")
    plan.truth.to_csv(out_dir / "truth.csv", index=False, lineterminator="\n")
    plan.reads.to_csv(out_dir / "reads.csv", index=False, lineterminator="\n")
