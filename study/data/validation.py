"""Full validation of a cohort folder: its tables and every volume they name.

:func:`validate_cohort` is what ``vlmstudy data validate`` runs.
:func:`study.data.cohort.load_cohort` checks the tables only. Validation also
opens each distinct image and mask once and finds missing, unreadable, truncated
or corrupt files, volumes that are not 3D, non-invertible affines, NaN or
infinite voxels, empty masks, masks on another grid than their image and boxes
outside their volume. It writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from study.data.tables import MANIFEST, parse_box, read_cohort_tables
from study.data.volumes import VolumeInfo, check_box, check_grid, check_volume
from study.errors import UserInputError

__all__ = ["validate_cohort", "raise_for_problems"]


def validate_cohort(root: str | Path) -> list[str]:
    """List every problem of a cohort folder, tables and volumes, one message each.

    Each message names the file (and the manifest line for volumes) and the fix.
    Every distinct volume is read once, one at a time, so memory stays at about
    one volume whatever the cohort size.

    Examples
    --------
    >>> import tempfile
    >>> from study.data.phantom import build_phantom
    >>> validate_cohort(build_phantom(tempfile.mkdtemp(), patients=2, exemplar_patients=1))
    []
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: cohort folder not found; give the folder that contains {MANIFEST}."]
    tables, problems = read_cohort_tables(root, require_files=False)
    manifest = tables.get(MANIFEST)
    if manifest is not None and {"image", "lesion_id"} <= set(manifest.columns):
        problems += _check_volumes(manifest, root)
    return problems


def raise_for_problems(root: Path, problems: list[str]) -> None:
    """Raise one :class:`UserInputError` listing ``problems``, if there are any."""
    if not problems:
        return
    listing = "\n".join(f"- {problem}" for problem in problems)
    raise UserInputError(
        f"Cohort {root} has {len(problems)} problem(s); fix them and validate again:\n{listing}"
    )


def _check_volumes(manifest: pd.DataFrame, root: Path) -> list[str]:
    problems: list[str] = []
    seen: dict[str, VolumeInfo | None] = {}

    def volume(value: str, where: str, column: str) -> VolumeInfo | None:
        # A volume shared by many rows (one image per patient) is read and reported once.
        if value not in seen:
            info, found = check_volume(root / value, label=f"{where}: {column} {value!r}")
            seen[value] = info
            problems.extend(found)
        return seen[value]

    for index, row in manifest.iterrows():
        where = f"{MANIFEST} line {int(index) + 2}"
        image_path = row.get("image", "")
        if not image_path:
            continue
        image = volume(image_path, where, "image")
        mask_path = row.get("mask", "")
        if mask_path:
            mask = volume(mask_path, where, "mask")
            if mask is not None and mask.nonzero == 0:
                problems.append(
                    f"{where}: mask {mask_path!r} is empty (no nonzero voxel); "
                    "draw the lesion in it, or drop the mask and give a box."
                )
            if mask is not None and image is not None:
                problems += check_grid(mask, image, label=f"{where}: mask {mask_path!r}")
        elif row.get("box", "") and image is not None:
            try:
                box = parse_box(row["box"])
            except ValueError:
                continue  # already reported by the manifest check
            problems += check_box(box, image.shape, label=f"{where}: box")
    return problems
