"""Cohort data: the cohort folder contract, loading, validation, importers and the phantom.

The public names are re-exported here; see :mod:`study.data.cohort` for the
table layout, :mod:`study.data.validation` for ``vlmstudy data validate``,
:mod:`study.data.lldmmri`, :mod:`study.data.reads_wide` and
:mod:`study.data.dicom` for the importers, and :mod:`study.data.phantom` for the
synthetic cohort.
"""

from study.data.cohort import (
    SPLITS,
    Cohort,
    Lesion,
    SequenceImage,
    cohort_sha256,
    load_cohort,
    read_cohort_tables,
)
from study.data.phantom import build_phantom, plan_phantom
from study.data.validation import validate_cohort

__all__ = [
    "SPLITS",
    "Cohort",
    "Lesion",
    "SequenceImage",
    "build_phantom",
    "cohort_sha256",
    "load_cohort",
    "plan_phantom",
    "read_cohort_tables",
    "validate_cohort",
]
