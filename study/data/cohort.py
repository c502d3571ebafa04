"""Reference cohorts: the lesion manifest and the reads, pathology and truth tables.

A cohort folder contains

``manifest.csv``
    One row per lesion and sequence: ``patient_id, lesion_id, split, sequence,
    image, mask, box``. ``image`` and ``mask`` are NIfTI paths (``.nii`` or
    ``.nii.gz``) relative to the manifest. ``box`` is used when ``mask`` is empty
    and contains the inclusive voxel indices ``x0,y0,z0,x1,y1,z1``. ``split`` is one
    of :data:`SPLITS`.
``reads.csv``
    ``lesion_id, reader, feature, answer`` and optionally ``confidence`` and
    ``size_mm``: one row per lesion, radiologist and feature.
``pathology.csv``
    ``lesion_id, diagnosis, method``: one row per lesion with a reference diagnosis.
``truth.csv`` (optional)
    ``lesion_id, feature, answer``: features known by construction (phantom cohorts).
``lesions.csv`` (optional)
    ``lesion_id, patient_id, lesion_type, size_mm``: the phantom's lesion list.

:func:`load_cohort` checks the tables and never opens a volume. The table
reader and checks live in :mod:`study.data.tables`, so that a fuller validation
can reuse them, and are re-exported here.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pandas as pd

from study.data.tables import (
    MANIFEST,
    PATHOLOGY,
    READS,
    SPLITS,
    TABLE_FILES,
    TRUTH,
    _read_text,
    check_answers,
    check_files,
    check_manifest,
    check_pathology,
    parse_box,
    read_cohort_tables,
    read_table,
)
from study.errors import UserInputError
from study.lirads import SEQUENCES

__all__ = [
    "SPLITS",
    "Cohort",
    "Lesion",
    "SequenceImage",
    "check_answers",
    "check_files",
    "check_manifest",
    "check_pathology",
    "cohort_sha256",
    "load_cohort",
    "parse_box",
    "read_cohort_tables",
    "read_table",
]


@dataclass(frozen=True)
class SequenceImage:
    """One sequence of one lesion: the volume and where the lesion is in it.

    Attributes
    ----------
    sequence
        Sequence name from :data:`study.lirads.SEQUENCES`.
    image
        Path of the NIfTI volume (the manifest's relative path joined to the cohort folder).
    mask
        Path of the lesion mask volume (nonzero voxels are the lesion), or ``None``.
    box
        Inclusive voxel indices ``(x0, y0, z0, x1, y1, z1)`` when there is no mask, else ``None``.
    """

    sequence: str
    image: Path
    mask: Path | None
    box: tuple[int, ...] | None


@dataclass(frozen=True)
class Lesion:
    """A lesion with its volumes, one per sequence in :data:`study.lirads.SEQUENCES` order."""

    patient_id: str
    lesion_id: str
    split: str
    images: Mapping[str, SequenceImage]

    @property
    def sequences(self) -> tuple[str, ...]:
        """Sequence names that have a volume for this lesion."""
        return tuple(self.images)


@dataclass(frozen=True, eq=False)
class Cohort:
    """A loaded cohort folder; the volumes stay on disk until rendered.

    Attributes
    ----------
    root
        The cohort folder.
    lesions
        Lesions by ``lesion_id``, in sorted ``lesion_id`` order.
    reads
        ``reads.csv`` with text columns, plus ``confidence`` and ``size_mm`` as floats
        (NaN where empty) when present.
    pathology
        ``pathology.csv``.
    truth
        ``truth.csv``, or ``None`` when the cohort has none.
    """

    root: Path
    lesions: Mapping[str, Lesion]
    reads: pd.DataFrame
    pathology: pd.DataFrame
    truth: pd.DataFrame | None

    def split(self, name: str) -> list[Lesion]:
        """Return the lesions of split ``name`` in ``lesion_id`` order.

        Raises
        ------
        UserInputError
            When ``name`` is not one of :data:`SPLITS`.
        """
        if name not in SPLITS:
            raise UserInputError(f"Unknown split {name!r}; use one of {', '.join(SPLITS)}.")
        return [lesion for lesion in self.lesions.values() if lesion.split == name]

    def patients(self) -> pd.DataFrame:
        """Return one row per lesion with columns ``lesion_id, patient_id, split``."""
        rows = [
            (lesion.lesion_id, lesion.patient_id, lesion.split) for lesion in self.lesions.values()
        ]
        return pd.DataFrame(rows, columns=["lesion_id", "patient_id", "split"])


def load_cohort(root: str | Path, *, require_files: bool = True) -> Cohort:
    """Load a cohort folder after checking its tables.

    Parameters
    ----------
    root
        Folder with ``manifest.csv``, ``reads.csv``, ``pathology.csv`` and
        optionally ``truth.csv``.
    require_files
        Check that every image and mask path exists. No volume is opened.

    Raises
    ------
    UserInputError
        One error listing every problem found in the tables, each with the file,
        line and fix.

    Examples
    --------
    >>> import tempfile
    >>> from study.data.phantom import build_phantom
    >>> folder = build_phantom(tempfile.mkdtemp(), patients=2, exemplar_patients=1)
    >>> cohort = load_cohort(folder)
    >>> [lesion.split for lesion in cohort.lesions.values()][:1]
    ['evaluation']
    >>> cohort.patients().columns.tolist()
    ['lesion_id', 'patient_id', 'split']
    """
    root = Path(root)
    tables, problems = read_cohort_tables(root, require_files=require_files)
    if problems:
        listing = "\n".join(f"- {problem}" for problem in problems)
        raise UserInputError(
            f"Cohort {root} has {len(problems)} problem(s); fix them and load it again:\n{listing}"
        )

    manifest = tables[MANIFEST]
    lesions: dict[str, Lesion] = {}
    for lesion_id, rows in manifest.groupby("lesion_id", sort=True):
        images = {}
        for row in sorted(rows.itertuples(index=False), key=lambda r: SEQUENCES.index(r.sequence)):
            mask_text = getattr(row, "mask", "")
            box_text = getattr(row, "box", "")
            images[row.sequence] = SequenceImage(
                sequence=row.sequence,
                image=root / row.image,
                mask=root / mask_text if mask_text else None,
                box=parse_box(box_text) if box_text and not mask_text else None,
            )
        first = rows.iloc[0]
        lesions[str(lesion_id)] = Lesion(
            patient_id=first["patient_id"],
            lesion_id=str(lesion_id),
            split=first["split"],
            images=MappingProxyType(images),
        )

    reads = tables[READS].copy()
    for column in ("confidence", "size_mm"):
        if column in reads.columns:
            reads[column] = pd.to_numeric(reads[column], errors="coerce")
    return Cohort(
        root=root,
        lesions=MappingProxyType(lesions),
        reads=reads,
        pathology=tables[PATHOLOGY],
        truth=tables.get(TRUTH),
    )


def cohort_sha256(root: str | Path) -> str:
    """Hash a cohort: its tables and every image and mask the manifest names.

    Each file contributes its manifest-relative POSIX path and the SHA-256 of its
    content, in sorted path order, so the hash does not depend on where the folder
    lives. Tables are hashed as UTF-8 text with ``\\n`` line endings (BOM removed),
    so a checkout that converts line endings keeps the hash. Volumes are hashed byte
    for byte.

    Raises
    ------
    UserInputError
        When the manifest or a file it names cannot be read.

    Examples
    --------
    >>> import tempfile
    >>> from study.data.phantom import build_phantom
    >>> first = build_phantom(tempfile.mkdtemp(), patients=2, exemplar_patients=1)
    >>> second = build_phantom(tempfile.mkdtemp(), patients=2, exemplar_patients=1)
    >>> cohort_sha256(first) == cohort_sha256(second)
    True
    """
    root = Path(root)
    manifest = read_table(root / MANIFEST)

    files = {name: "table" for name in TABLE_FILES if (root / name).is_file()}
    for column in ("image", "mask"):
        if column not in manifest.columns:
            continue
        for value in manifest[column]:
            if value:
                files.setdefault(posixpath.normpath(value), "volume")

    digest = hashlib.sha256()
    for relative in sorted(files):
        path = root / relative
        try:
            if files[relative] == "table":
                text = _read_text(path, strict=False)
                file_digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            else:
                file_digest = _file_sha256(path)
        except OSError as error:
            raise UserInputError(
                f"{path}: cannot be read for the cohort hash ({error.strerror}); "
                f"restore the file or fix its path in {MANIFEST}."
            ) from None
        digest.update(f"{relative}\0{file_digest}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
