"""Cohort data: the cohort folder contract, its loader and the phantom generator.

The public names are re-exported here; see :mod:`study.data.cohort` for the
table layout and :mod:`study.data.phantom` for the synthetic cohort.
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
from study.data.phantom import build_phantom

__all__ = [
    "SPLITS",
    "Cohort",
    "Lesion",
    "SequenceImage",
    "build_phantom",
    "cohort_sha256",
    "load_cohort",
    "read_cohort_tables",
]
