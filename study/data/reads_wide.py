"""Importing wide reader tables (one row per lesion, a column group per reader) as ``reads.csv``.

Spreadsheets of reader studies put each reader's answers side by side:
``ART_HYP, WASHOUT, ... , ART_HYP2, WASHOUT2, ...``. A :class:`WideMapping`
says which column holds which reader's answer to which feature, and how cell
values translate into answer categories. :func:`import_wide_reads` turns such a
table into the long ``reads.csv`` of a cohort folder (see :mod:`study.data.cohort`).

What real exports contain, and how each is handled:

- bare carriage-return line endings and a UTF-8 byte order mark: read as usual;
- empty or repeated header cells: such columns are never mapped, so they are ignored;
- trailing rows of totals, ``#REF!`` cells and empty lines: rows whose id cell
  does not match ``id_pattern`` are skipped and counted;
- an empty cell means "not scored" (the mLI-RADS readers left features blank for
  observations they judged benign), so it writes no row at all, never ``absent``.
  That a reader read the lesion is recorded in ``observations.csv`` (one row per
  lesion and reader with any mapped cell filled, and the size), so a lesion whose
  features nobody scored is still imported;
- any other value without a translation, ``#REF!`` in a kept row included, is an
  error that names the row, the column and the value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import pandas as pd
import yaml

from study.data.tables import read_table
from study.errors import UserInputError
from study.lirads import FEATURES

__all__ = [
    "MLIRADS_MAPPING",
    "WideImport",
    "WideMapping",
    "import_wide_reads",
    "load_mapping",
    "wide_to_reads",
]

logger = logging.getLogger(__name__)

READS_COLUMNS = ("lesion_id", "reader", "feature", "answer", "size_mm")
OBSERVATION_COLUMNS = ("lesion_id", "reader", "size_mm", "confidence", "category_code")
_NUMERIC_FIELDS = ("size_mm", "confidence")
# Copied verbatim into observations.csv: the table's own category code, whatever its scheme.
_TEXT_FIELDS = ("category_code",)
_OTHER_FIELDS = (*_NUMERIC_FIELDS, *_TEXT_FIELDS)


@dataclass(frozen=True)
class WideMapping:
    """How a wide reader table maps onto ``reads.csv``.

    Attributes
    ----------
    id_column
        Column with the lesion (observation) id.
    readers
        Reader name → {feature name, ``size_mm``, ``confidence`` or
        ``category_code`` → column name}. ``category_code`` is copied as text into
        ``observations.csv``.
    values
        Feature name → {cell text → answer category}; the key ``"*"`` applies to
        every feature without its own entry.
    id_pattern
        Regular expression a kept row's id must match in full; other rows are junk.
    lesion_prefix
        Text put before the id to make the ``lesion_id``.
    """

    id_column: str
    readers: Mapping[str, Mapping[str, str]]
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    id_pattern: str = r".+"
    lesion_prefix: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not self.readers:
            problems.append("readers is empty; map at least one reader")
        for reader, columns in self.readers.items():
            for name in columns:
                if name not in FEATURES and name not in _OTHER_FIELDS:
                    problems.append(
                        f"reader {reader!r} maps {name!r}, which is neither a feature "
                        f"nor one of {', '.join(_OTHER_FIELDS)}"
                    )
        for name, table in self.values.items():
            feature = FEATURES.get(name)
            for answer in table.values():
                allowed = feature.answers if feature else ()
                if feature is not None and answer not in allowed:
                    problems.append(
                        f"values of {name!r} map to {answer!r}; use one of {', '.join(allowed)}"
                    )
        try:
            re.compile(self.id_pattern)
        except re.error as error:
            problems.append(f"id_pattern {self.id_pattern!r} is not a regular expression: {error}")
        if problems:
            raise UserInputError(f"Invalid reads mapping: {'; '.join(problems)}.")

    def answer(self, feature: str, cell: str) -> str | None:
        """Translate one cell, or return ``None`` when the value has no translation."""
        table = self.values.get(feature, self.values.get("*", {}))
        return table.get(cell)


def _mlirads_mapping() -> WideMapping:
    stems = {
        "aphe": "ART_HYP",
        "washout": "WASHOUT",
        "enhancing_capsule": "CPS",
        "threshold_growth": "TRESHOLD",  # spelled so in the published file
        "size_mm": "MAX_DM_LR",
        "category_code": "LIRADS_Category",
    }
    readers = {
        f"R{number}": {name: stem + suffix for name, stem in stems.items()}
        for number, suffix in ((1, ""), (2, "2"), (3, "3"), (4, "4"))
    }
    return WideMapping(
        id_column="OBSERV",
        readers=readers,
        # LI-RADS v2014 had no rim category, so hyperenhancement is nonrim and washout
        # nonperipheral, as in v2018's major features.
        values={
            "aphe": {"1": "nonrim", "0": "absent"},
            "washout": {"1": "nonperipheral", "0": "absent"},
            "*": {"1": "present", "0": "absent"},
        },
        id_pattern=r"\d+",
        lesion_prefix="mlirads-",
    )


# NOTE: the LIRADS_Category columns of the mLI-RADS table hold codes 1 to 7, and the file
# does not document what 6 and 7 mean. So the code is kept as category_code in
# observations.csv and never translated into a LI-RADS category.
MLIRADS_MAPPING = _mlirads_mapping()
"""Mapping of the mLI-RADS readout table (Becker et al., Eur J Radiol 2017): four
readers R1–R4 with column suffixes none, 2, 3, 4; APHE, washout, capsule and
threshold growth as 1/0; ``MAX_DM_LR`` as the size in mm."""


def load_mapping(path: str | Path) -> WideMapping:
    """Load a :class:`WideMapping` from a YAML or JSON file with the same keys.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "mapping.yaml"
    >>> _ = path.write_text("id_column: case\\nreaders:\\n  A: {aphe: aphe_a}\\n"
    ...                     "values:\\n  aphe: {'y': nonrim, 'n': absent}\\n")
    >>> load_mapping(path).readers["A"]["aphe"]
    'aphe_a'
    """
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserInputError(f"--mapping {path}: cannot be read ({error.strerror}).") from None
    except yaml.YAMLError as error:
        raise UserInputError(f"--mapping {path}: invalid YAML or JSON ({error}).") from None
    if not isinstance(content, dict) or "id_column" not in content or "readers" not in content:
        raise UserInputError(
            f"--mapping {path}: expected a mapping with keys id_column and readers "
            "(and optionally values, id_pattern, lesion_prefix)."
        )
    unknown = set(content) - {"id_column", "readers", "values", "id_pattern", "lesion_prefix"}
    if unknown:
        raise UserInputError(f"--mapping {path}: unknown key(s) {', '.join(sorted(unknown))}.")

    def texts(table: dict) -> dict[str, str]:
        # YAML reads 1 and 0 as integers; cells are compared as text.
        return {str(key): str(value) for key, value in (table or {}).items()}

    return WideMapping(
        id_column=str(content["id_column"]),
        readers=MappingProxyType(
            {str(r): texts(columns) for r, columns in content["readers"].items()}
        ),
        values=MappingProxyType({str(f): texts(t) for f, t in content.get("values", {}).items()}),
        id_pattern=str(content.get("id_pattern", r".+")),
        lesion_prefix=str(content.get("lesion_prefix", "")),
    )


@dataclass(frozen=True)
class WideImport:
    """What a wide table converts into.

    Attributes
    ----------
    reads
        One row per scored answer: ``lesion_id, reader, feature, answer, size_mm``.
    observations
        One row per lesion and reader that filled any mapped cell:
        ``lesion_id, reader, size_mm, confidence, category_code``.
    skipped_rows
        Rows dropped because their id did not match ``id_pattern``.
    """

    reads: pd.DataFrame
    observations: pd.DataFrame
    skipped_rows: int


def wide_to_reads(table: pd.DataFrame, mapping: WideMapping, *, source: str) -> WideImport:
    """Convert a wide table (text cells) into long reads, one row per scored answer.

    Raises
    ------
    UserInputError
        Listing every mapped column missing from the table and every kept cell whose
        value has no translation.
    """
    needed = [mapping.id_column] + [c for cols in mapping.readers.values() for c in cols.values()]
    missing = sorted({column for column in needed if column not in table.columns})
    if missing:
        raise UserInputError(
            f"{source}: column(s) {', '.join(missing)} not found; the header has "
            f"{', '.join(c for c in table.columns if not c.startswith('Unnamed'))}. "
            "Fix the mapping."
        )

    pattern = re.compile(mapping.id_pattern)
    rows: list[dict[str, object]] = []
    observations: list[tuple[str, str, float, float, str]] = []
    problems: list[str] = []
    skipped = 0
    for index, record in table.iterrows():
        identifier = record[mapping.id_column]
        if not pattern.fullmatch(identifier):
            skipped += 1
            continue
        lesion_id = mapping.lesion_prefix + identifier
        where = f"{source} line {int(index) + 2} ({mapping.id_column} {identifier})"
        for reader, columns in mapping.readers.items():
            size = _number(record, columns.get("size_mm"), where, problems)
            confidence = _number(record, columns.get("confidence"), where, problems)
            code_column = columns.get("category_code")
            code = record[code_column] if code_column else ""
            if any(record[column] for column in columns.values()):
                observations.append((lesion_id, reader, size, confidence, code))
            for name, column in columns.items():
                if name in _OTHER_FIELDS:
                    continue
                cell = record[column]
                if not cell:
                    continue  # not scored
                answer = mapping.answer(name, cell)
                if answer is None:
                    problems.append(
                        f"{where}: column {column} has {cell!r}, which the mapping does not "
                        f"translate for {name}; add it to the mapping's values or fix the cell."
                    )
                    continue
                rows.append(
                    {
                        "lesion_id": lesion_id,
                        "reader": reader,
                        "feature": name,
                        "answer": answer,
                        "size_mm": size,
                    }  # fmt: skip
                )
    if problems:
        listing = "\n".join(f"- {problem}" for problem in problems)
        raise UserInputError(f"{source}: {len(problems)} cell(s) cannot be imported:\n{listing}")
    if skipped:
        logger.info(
            "%s: skipped %d row(s) whose id does not match %r", source, skipped, mapping.id_pattern
        )
    return WideImport(
        reads=pd.DataFrame(rows, columns=list(READS_COLUMNS)),
        observations=pd.DataFrame(observations, columns=list(OBSERVATION_COLUMNS)),
        skipped_rows=skipped,
    )


def _number(record: pd.Series, column: str | None, where: str, problems: list[str]) -> float:
    if column is None or not record[column]:
        return float("nan")
    try:
        return float(record[column])
    except ValueError:
        problems.append(f"{where}: column {column} has {record[column]!r}, not a number.")
        return float("nan")


def import_wide_reads(
    source: str | Path, out_dir: str | Path, mapping: WideMapping = MLIRADS_MAPPING
) -> WideImport:
    """Read a wide reader table and write ``out_dir/reads.csv`` and ``observations.csv``.

    The tables are written only after every cell converted, through temporary files
    renamed into place, so a failed import leaves neither file.

    Raises
    ------
    UserInputError
        When the file cannot be read, the mapping does not fit it, or a table to
        write exists already.

    Examples
    --------
    >>> import tempfile
    >>> from analysis.baseline import MLIRADS_CSV
    >>> imported = import_wide_reads(MLIRADS_CSV, tempfile.mkdtemp())
    >>> observations = imported.observations
    >>> observations["lesion_id"].nunique(), sorted(observations["reader"].unique())
    (104, ['R1', 'R2', 'R3', 'R4'])
    """
    source, out_dir = Path(source), Path(out_dir)
    targets = {"reads.csv": out_dir / "reads.csv", "observations.csv": out_dir / "observations.csv"}
    for target in targets.values():
        if target.exists():
            raise UserInputError(f"{target}: exists already; give another --out folder.")
    if not source.is_file():
        raise UserInputError(f"{source}: not found; give the path of the wide CSV table.")
    imported = wide_to_reads(read_table(source), mapping, source=str(source))

    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"reads.csv": imported.reads, "observations.csv": imported.observations}
    partials = []
    for name, table in tables.items():
        partial = out_dir / f".{name}.partial"
        table.to_csv(partial, index=False, lineterminator="\n")
        partials.append((partial, targets[name]))
    for partial, target in partials:
        partial.replace(target)
    return imported
