"""Reading and checking the tables of a cohort folder.

This module contains the CSV reader, the box parser and one check function per
table (manifest, reads or truth, pathology), each returning one message per
problem with the file, line and fix. :func:`read_cohort_tables` runs them all.
The folder layout is described in :mod:`study.data.cohort`, which re-exports
these names.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pandas as pd

from study.errors import UserInputError
from study.lirads import DIAGNOSES, FEATURES, SEQUENCES

__all__ = [
    "SPLITS",
    "check_answers",
    "check_files",
    "check_manifest",
    "check_pathology",
    "parse_box",
    "read_cohort_tables",
    "read_table",
]

SPLITS: tuple[str, ...] = ("evaluation", "exemplar", "development")
"""Splits a manifest row may name. Exemplars for few-shot prompts come from ``exemplar``."""

MANIFEST = "manifest.csv"
READS = "reads.csv"
PATHOLOGY = "pathology.csv"
TRUTH = "truth.csv"
LESIONS = "lesions.csv"
TABLE_FILES: tuple[str, ...] = (MANIFEST, READS, PATHOLOGY, TRUTH, LESIONS)

REQUIRED_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        MANIFEST: ("patient_id", "lesion_id", "split", "sequence", "image"),
        READS: ("lesion_id", "reader", "feature", "answer"),
        PATHOLOGY: ("lesion_id", "diagnosis", "method"),
        TRUTH: ("lesion_id", "feature", "answer"),
        LESIONS: ("lesion_id", "patient_id", "lesion_type", "size_mm"),
    }
)
"""Columns each table must have. ``manifest.csv`` also needs ``mask`` or ``box``."""


def read_cohort_tables(
    root: str | Path, *, require_files: bool = True
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Read the tables of a cohort folder and list every problem in them.

    Parameters
    ----------
    root
        The cohort folder.
    require_files
        Also report image and mask paths that do not exist, once the manifest
        itself has no problems. The files are not opened.

    Returns
    -------
    tables
        The tables that could be read, by file name (``manifest.csv``, ...).
    problems
        One message per problem, each naming the file, the line and the fix.
        An empty list means the tables can be loaded.
    """
    root = Path(root)
    tables: dict[str, pd.DataFrame] = {}
    problems: list[str] = []

    for name in TABLE_FILES:
        path = root / name
        if not path.is_file():
            if name in (MANIFEST, READS, PATHOLOGY):
                problems.append(f"{path}: not found; a cohort folder needs {name}.")
            continue
        try:
            tables[name] = read_table(path)
        except UserInputError as error:
            problems.append(str(error))

    manifest = tables.get(MANIFEST)
    if manifest is None:
        return tables, problems

    manifest_problems = check_manifest(manifest)
    problems += manifest_problems
    if require_files and not manifest_problems:
        problems += check_files(manifest, root)

    lesion_ids = set(manifest["lesion_id"]) if "lesion_id" in manifest.columns else set()
    if READS in tables:
        problems += check_answers(tables[READS], READS, lesion_ids, with_reader=True)
    if TRUTH in tables:
        problems += check_answers(tables[TRUTH], TRUTH, lesion_ids, with_reader=False)
    if PATHOLOGY in tables:
        problems += check_pathology(tables[PATHOLOGY], lesion_ids)
    return tables, problems


def _read_text(path: Path, *, strict: bool) -> str:
    """Return a CSV file's text with the BOM removed and every line ending as ``\\n``."""
    text = path.read_bytes().decode("utf-8-sig", errors="strict" if strict else "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_table(path: Path) -> pd.DataFrame:
    """Read a cohort CSV table as stripped text, whatever its line endings.

    Every cell is a string, and an empty cell is ``""``. Line endings may be
    ``\\n``, ``\\r\\n`` or a bare ``\\r``, and a UTF-8 byte order mark is ignored.

    Raises
    ------
    UserInputError
        When the file cannot be read, is not UTF-8 or is not valid CSV.
    """
    try:
        text = _read_text(path, strict=True)
    except OSError as error:
        raise UserInputError(
            f"{path}: cannot be read ({error.strerror}); check the path and its permissions."
        ) from None
    except UnicodeDecodeError as error:
        raise UserInputError(
            f"{path}: not UTF-8 text (invalid byte at offset {error.start}); "
            "save the table as UTF-8 CSV."
        ) from None

    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise UserInputError(f"{path}: the file is empty; write the header row.") from None
    except pd.errors.ParserError as error:
        raise UserInputError(
            f"{path}: invalid CSV ({error}); check the quoting and the number of fields per line."
        ) from None
    table.columns = [str(column).strip() for column in table.columns]
    for column in table.columns:
        table[column] = table[column].astype(str).str.strip()
    return table


def parse_box(text: str) -> tuple[int, int, int, int, int, int]:
    """Parse a box ``"x0,y0,z0,x1,y1,z1"`` of inclusive voxel indices.

    Commas, semicolons and spaces all separate the numbers.

    Raises
    ------
    ValueError
        When there are not six non-negative integers with each start at most its end.

    Examples
    --------
    >>> parse_box("10,12,3, 20,22,6")
    (10, 12, 3, 20, 22, 6)
    """
    parts = text.replace(";", ",").replace(" ", ",").split(",")
    numbers = [part for part in parts if part]
    if len(numbers) != 6 or not all(number.isdigit() for number in numbers):
        raise ValueError(f"box {text!r} is not six non-negative integers x0,y0,z0,x1,y1,z1")
    box = tuple(int(number) for number in numbers)
    if any(box[axis] > box[axis + 3] for axis in range(3)):
        raise ValueError(f"box {text!r} has a start index above its end index")
    return box  # type: ignore[return-value]


def _line(index: int) -> int:
    # Data row 0 sits on line 2, below the header. NOTE: a quoted cell that
    # spans lines shifts the numbers of later rows.
    return int(index) + 2


def _unknown(where: str, field: str, value: str, allowed: tuple[str, ...]) -> str:
    return f"{where}: unknown {field} {value!r}; use one of {', '.join(allowed)}."


_LINES_SHOWN = 10
"""Line numbers listed per unknown lesion before the rest are counted."""


def _unknown_lesions(table: pd.DataFrame, name: str, lesion_ids: set[str]) -> list[str]:
    """Return one message per lesion missing from the manifest, with the lines that name it."""
    unknown = table[~table["lesion_id"].isin(lesion_ids)]
    problems = []
    for lesion_id, rows in unknown.groupby("lesion_id", sort=False):
        lines = [_line(index) for index in rows.index]
        shown = ", ".join(map(str, lines[:_LINES_SHOWN]))
        if len(lines) > _LINES_SHOWN:
            shown += f" and {len(lines) - _LINES_SHOWN} more"
        where = f"{name} line {shown}" if len(lines) == 1 else f"{name} lines {shown}"
        problems.append(
            f"{where}: lesion {lesion_id!r} is not in {MANIFEST}; "
            "add the lesion to the manifest or remove its rows."
        )
    return problems


def _missing_columns(table: pd.DataFrame, name: str) -> list[str]:
    missing = [column for column in REQUIRED_COLUMNS[name] if column not in table.columns]
    if not missing:
        return []
    return [
        f"{name}: missing column(s) {', '.join(missing)}; the header must contain "
        f"{', '.join(REQUIRED_COLUMNS[name])}."
    ]


def _duplicates(table: pd.DataFrame, keys: list[str]) -> list[tuple[tuple[str, ...], list[int]]]:
    repeated = table[table.duplicated(keys, keep=False)]
    return [
        (key if isinstance(key, tuple) else (key,), [_line(i) for i in rows.index])
        for key, rows in repeated.groupby(keys, sort=True)
    ]


def check_manifest(manifest: pd.DataFrame) -> list[str]:
    """List the problems of a manifest table, one message per problem.

    Checks the columns, empty ids, sequence and split names, image and mask paths,
    boxes, duplicate lesion and sequence rows, lesions in two patients and patients
    in more than one split.
    """
    problems = _missing_columns(manifest, MANIFEST)
    if "mask" not in manifest.columns and "box" not in manifest.columns:
        problems.append(f"{MANIFEST}: missing column mask or box; add at least one of them.")
    if problems:
        return problems
    if manifest.empty:
        return [f"{MANIFEST}: no rows; add one row per lesion and sequence."]

    for index, row in manifest.iterrows():
        where = f"{MANIFEST} line {_line(index)}"
        for column in ("patient_id", "lesion_id", "split", "sequence", "image"):
            if not row[column]:
                problems.append(f"{where}: empty {column}; fill it in.")
        if row["sequence"] and row["sequence"] not in SEQUENCES:
            problems.append(_unknown(where, "sequence", row["sequence"], SEQUENCES))
        if row["split"] and row["split"] not in SPLITS:
            problems.append(_unknown(where, "split", row["split"], SPLITS))
        mask = row.get("mask", "")
        box = row.get("box", "")
        for column, value in (("image", row["image"]), ("mask", mask)):
            if not value:
                continue
            if not value.endswith((".nii", ".nii.gz")):
                problems.append(
                    f"{where}: {column} {value!r} is not a NIfTI file; convert it to .nii(.gz)."
                )
            if value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":"):
                problems.append(
                    f"{where}: {column} {value!r} is an absolute path; "
                    f"give the path relative to {MANIFEST}."
                )
        if not mask and not box:
            problems.append(f"{where}: neither mask nor box is given; give one of them.")
        if box and not mask:
            try:
                parse_box(box)
            except ValueError as error:
                problems.append(
                    f"{where}: {error}; write inclusive voxel indices, e.g. 10,12,3,20,22,6."
                )

    for (lesion_id, sequence), lines in _duplicates(manifest, ["lesion_id", "sequence"]):
        problems.append(
            f"{MANIFEST} lines {', '.join(map(str, lines))}: lesion {lesion_id!r} has "
            f"{len(lines)} rows for sequence {sequence!r}; keep one."
        )
    for lesion_id, rows in manifest.groupby("lesion_id", sort=True):
        if rows["patient_id"].nunique() > 1:
            found = ", ".join(
                f"{p!r} (line {_line(i)})" for i, p in _first_lines(rows, "patient_id")
            )
            problems.append(
                f"{MANIFEST}: lesion {lesion_id!r} belongs to patients {found}; "
                "correct the patient_id or give the lesions distinct ids."
            )
    for patient_id, rows in manifest.groupby("patient_id", sort=True):
        if rows["split"].nunique() > 1:
            found = ", ".join(f"{s!r} (line {_line(i)})" for i, s in _first_lines(rows, "split"))
            problems.append(
                f"{MANIFEST}: patient {patient_id!r} is in splits {found}; put all rows of "
                "a patient in one split, so that no exemplar comes from an evaluation patient."
            )
    return problems


def _first_lines(rows: pd.DataFrame, column: str) -> list[tuple[int, str]]:
    first = rows.drop_duplicates(column)
    return list(zip(first.index, first[column], strict=True))


def check_files(manifest: pd.DataFrame, root: Path) -> list[str]:
    """List image and mask paths of a checked manifest that are not files under ``root``."""
    problems = []
    for index, row in manifest.iterrows():
        for column in ("image", "mask"):
            value = row.get(column, "")
            if value and not (root / value).is_file():
                problems.append(
                    f"{MANIFEST} line {_line(index)}: {column} {value!r} not found in {root}; "
                    "fix the path or add the file."
                )
    return problems


def check_answers(
    table: pd.DataFrame, name: str, lesion_ids: set[str], *, with_reader: bool
) -> list[str]:
    """List the problems of a reads or truth table, one message per problem.

    Checks the columns, lesions missing from the manifest, feature names, answers
    outside the feature's categories, duplicate rows and, for reads, numeric
    ``confidence`` and ``size_mm``.
    """
    problems = _missing_columns(table, name)
    if problems:
        return problems

    problems += _unknown_lesions(table, name, lesion_ids)
    for index, row in table.iterrows():
        where = f"{name} line {_line(index)}"
        if with_reader and not row["reader"]:
            problems.append(f"{where}: empty reader; fill in the reader's id.")
        feature = FEATURES.get(row["feature"])
        if feature is None:
            problems.append(_unknown(where, "feature", row["feature"], tuple(FEATURES)))
        elif row["answer"] not in feature.answers:
            problems.append(
                f"{where}: answer {row['answer']!r} is not a category of {feature.name}; "
                f"use one of {', '.join(feature.answers)}."
            )
        for column in ("confidence", "size_mm") if with_reader else ():
            value = row.get(column, "")
            if value and pd.isna(pd.to_numeric(value, errors="coerce")):
                problems.append(f"{where}: {column} {value!r} is not a number; fix or clear it.")

    keys = ["lesion_id", "reader", "feature"] if with_reader else ["lesion_id", "feature"]
    for key, lines in _duplicates(table, keys):
        problems.append(
            f"{name} lines {', '.join(map(str, lines))}: {len(lines)} rows for "
            f"{', '.join(f'{k}={v!r}' for k, v in zip(keys, key, strict=True))}; keep one."
        )
    return problems


def check_pathology(pathology: pd.DataFrame, lesion_ids: set[str]) -> list[str]:
    """List the problems of a pathology table, one message per problem.

    Checks the columns, lesions missing from the manifest, diagnoses, empty methods
    and lesions with more than one row.
    """
    problems = _missing_columns(pathology, PATHOLOGY)
    if problems:
        return problems

    problems += _unknown_lesions(pathology, PATHOLOGY, lesion_ids)
    for index, row in pathology.iterrows():
        where = f"{PATHOLOGY} line {_line(index)}"
        if row["diagnosis"] not in DIAGNOSES:
            problems.append(_unknown(where, "diagnosis", row["diagnosis"], DIAGNOSES))
        if not row["method"]:
            problems.append(
                f"{where}: empty method; say how the diagnosis was made, "
                "e.g. histopathology or imaging follow-up."
            )
    for (lesion_id,), lines in _duplicates(pathology, ["lesion_id"]):
        problems.append(
            f"{PATHOLOGY} lines {', '.join(map(str, lines))}: lesion {lesion_id!r} has "
            f"{len(lines)} diagnoses; keep one."
        )
    return problems
