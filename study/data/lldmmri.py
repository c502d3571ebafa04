"""Importing the LLD-MMRI 2023 layout as a cohort folder.

The LLD-MMRI 2023 release (liver lesion diagnosis on multiphase MRI) stores one
NIfTI volume per phase as ``images/<patient>/<studyUID>/<seriesUID>.nii.gz`` and
one annotation file, ``labels/Annotation.json``::

    {"Annotation_info": {"<patient>": [
        {"phase": "C+A", "studyUID": "...", "seriesUID": "...",
         "pixel_spacing": [0.7, 0.7], "slice_thickness": 6.0,
         "annotation": {"num_targets": 1, "lesion": {"0": {
             "category": 6,
             "bbox": {"3D_box": {"x_min": 10, "y_min": 12, "z_min": 3,
                                 "x_max": 20, "y_max": 22, "z_max": 6},
                      "2D_box": [...]}}}}},
        ...]}}

The phases are not co-registered, so every phase keeps its own box: the manifest
gets one row per lesion and phase with that phase's volume and box, and
rendering locates the lesion in each phase through its own box.

Box axes: ``x`` and ``y`` are the first two voxel axes of the NIfTI volume
(columns and rows of the axial image) and ``z`` the slice index.

The z-flip rule. Some boxes of the release have their z indices counted in the
reverse order of the volume's slices. The importer takes the annotation's
``z`` as counted from the most superior slice, the order in which a viewer
shows an axial series from the top. A volume whose slice axis points superior
(the S component of the affine's third column is positive, as most converters
write) is therefore flipped: ``z -> depth - 1 - z``. A volume stored from the
top down is kept as it is. ``z_order="as_stored"`` turns the rule off.

NOTE: the rule is an assumption about how the annotation was made, not taken
from the dataset's documentation; look at rendered lesions (``vlmstudy data
render``) of a few patients before trusting an import.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import nibabel as nib
import pandas as pd

from study.data.tables import MANIFEST, PATHOLOGY, READS
from study.errors import UserInputError

__all__ = ["LLD_MMRI_CATEGORIES", "LLD_MMRI_PHASES", "LldImport", "import_lld_mmri"]

logger = logging.getLogger(__name__)

LLD_MMRI_PHASES = MappingProxyType(
    {
        "T2WI": "t2",
        "In Phase": "in_phase",
        "Out Phase": "opposed_phase",
        "C-pre": "t1_pre",
        "C+A": "arterial",
        "C+V": "portal_venous",
        "C+Delay": "delayed",
        "DWI": "dwi",
    }
)
"""The release's eight phase names → this project's sequence names."""

LLD_MMRI_CATEGORIES = MappingProxyType(
    {
        0: "hemangioma",
        1: "intrahepatic cholangiocarcinoma",
        2: "abscess",
        3: "metastasis",
        4: "cyst",
        5: "FNH",
        6: "HCC",
    }
)
"""The release's lesion classes → diagnoses of :data:`study.lirads.DIAGNOSES`."""

Z_ORDERS = ("superior_first", "as_stored")


@dataclass(frozen=True)
class LldImport:
    """Counts of an LLD-MMRI import: patients, lesions, manifest rows and flipped boxes."""

    patients: int
    lesions: int
    rows: int
    flipped_boxes: int


def import_lld_mmri(
    source: str | Path,
    out_dir: str | Path,
    *,
    split: str = "evaluation",
    z_order: str = "superior_first",
    method: str = "LLD-MMRI 2023 reference label",
) -> LldImport:
    """Write a cohort folder (manifest, empty reads, pathology) for an LLD-MMRI tree.

    The volumes are not copied: the manifest points at them with paths relative
    to ``out_dir``. Every problem of the tree (unknown phase, missing volume, box
    outside its volume, unknown category) is collected and raised at once, before
    anything is written.

    Parameters
    ----------
    source
        Folder with ``images/`` and ``labels/Annotation.json``.
    out_dir
        Cohort folder to write; must not contain a manifest yet.
    split
        Split of every lesion.
    z_order
        ``"superior_first"`` applies the z-flip rule of the module docstring;
        ``"as_stored"`` keeps every z index.
    method
        Text of the pathology table's ``method`` column.

    Raises
    ------
    UserInputError
        Listing every problem of the tree.
    """
    source, out_dir = Path(source), Path(out_dir)
    if z_order not in Z_ORDERS:
        raise UserInputError(f"Invalid z order {z_order!r}; use one of {', '.join(Z_ORDERS)}.")
    if (out_dir / MANIFEST).exists():
        raise UserInputError(f"{out_dir / MANIFEST}: exists already; give another --out folder.")
    info = _read_annotation(source / "labels" / "Annotation.json")

    manifest, pathology, problems = [], {}, []
    flipped = 0
    for patient_id in sorted(info):
        entries = info[patient_id]
        if not isinstance(entries, list):
            problems.append(f"Annotation.json: patient {patient_id!r} is not a list of phases.")
            continue
        for entry in entries:
            where = f"Annotation.json patient {patient_id!r} phase {entry.get('phase')!r}"
            sequence = LLD_MMRI_PHASES.get(str(entry.get("phase")))
            if sequence is None:
                problems.append(
                    f"{where}: unknown phase; expected one of {', '.join(LLD_MMRI_PHASES)}."
                )
                continue
            image = (
                source / "images" / patient_id / str(entry.get("studyUID"))
                / f"{entry.get('seriesUID')}.nii.gz"
            )  # fmt: skip
            if not image.is_file():
                problems.append(f"{where}: volume {image} not found; restore it.")
                continue
            shape, z_up = _geometry(image)
            lesions = (entry.get("annotation") or {}).get("lesion") or {}
            for key in sorted(lesions, key=int):
                lesion = lesions[key]
                lesion_id = f"{patient_id}-L{int(key) + 1}"
                where_lesion = f"{where} lesion {key}"
                box, problem = _box(lesion, shape)
                if problem:
                    problems.append(f"{where_lesion}: {problem}")
                    continue
                if z_order == "superior_first" and z_up:
                    depth = shape[2]
                    box = (box[0], box[1], depth - 1 - box[5], box[3], box[4], depth - 1 - box[2])
                    flipped += 1
                diagnosis = LLD_MMRI_CATEGORIES.get(lesion.get("category"))
                if diagnosis is None:
                    problems.append(
                        f"{where_lesion}: unknown category {lesion.get('category')!r}; "
                        f"expected 0 to {len(LLD_MMRI_CATEGORIES) - 1}."
                    )
                    continue
                pathology.setdefault(lesion_id, diagnosis)
                relative = Path(os.path.relpath(image.resolve(), out_dir.resolve())).as_posix()
                manifest.append(
                    (patient_id, lesion_id, split, sequence, relative, "", ",".join(map(str, box)))
                )
    if problems:
        listing = "\n".join(f"- {problem}" for problem in problems)
        raise UserInputError(
            f"{source}: {len(problems)} problem(s) in the LLD-MMRI tree; nothing was written:\n"
            f"{listing}"
        )

    _write_tables(out_dir, manifest, pathology, method)
    return LldImport(
        patients=len({row[0] for row in manifest}),
        lesions=len(pathology),
        rows=len(manifest),
        flipped_boxes=flipped,
    )


def _read_annotation(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserInputError(
            f"{path}: cannot be read ({error.strerror}); give the LLD-MMRI folder that contains "
            "images/ and labels/Annotation.json."
        ) from None
    except json.JSONDecodeError as error:
        raise UserInputError(f"{path}: invalid JSON ({error}).") from None
    info = content.get("Annotation_info") if isinstance(content, dict) else None
    if not isinstance(info, dict):
        raise UserInputError(f"{path}: no 'Annotation_info' object; is this an LLD-MMRI label?")
    return info


def _geometry(image: Path) -> tuple[tuple[int, ...], bool]:
    header = nib.load(image)
    # The slice axis points superior when its world direction has a positive S component.
    return tuple(int(n) for n in header.shape[:3]), bool(header.affine[2, 2] > 0)


def _box(lesion: dict, shape: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
    try:
        raw = lesion["bbox"]["3D_box"]
        box = tuple(int(raw[key]) for key in ("x_min", "y_min", "z_min", "x_max", "y_max", "z_max"))
    except (KeyError, TypeError, ValueError):
        return (), "no valid bbox.3D_box with x_min..z_max; fix the annotation."
    if any(box[axis] < 0 or box[axis] > box[axis + 3] for axis in range(3)):
        return (), f"3D_box {box} has a negative index or a minimum above its maximum."
    if any(box[axis + 3] >= shape[axis] for axis in range(3)):
        return (), f"3D_box {box} lies outside the volume of shape {shape}."
    return box, ""


def _write_tables(out_dir: Path, manifest: list, pathology: dict, method: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        MANIFEST: pd.DataFrame(
            manifest,
            columns=["patient_id", "lesion_id", "split", "sequence", "image", "mask", "box"],
        ),
        READS: pd.DataFrame(columns=["lesion_id", "reader", "feature", "answer"]),
        PATHOLOGY: pd.DataFrame(
            [(lesion, diagnosis, method) for lesion, diagnosis in sorted(pathology.items())],
            columns=["lesion_id", "diagnosis", "method"],
        ),
    }
    # The manifest is renamed into place last, so a folder without it is visibly incomplete.
    for name in (READS, PATHOLOGY, MANIFEST):
        partial = out_dir / f".{name}.partial"
        tables[name].to_csv(partial, index=False, lineterminator="\n")
        partial.replace(out_dir / name)
    logger.info("wrote %d manifest rows to %s", len(manifest), out_dir)
