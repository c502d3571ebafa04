"""The LI-RADS vocabulary and category engine shared by ``study`` and ``analysis``.

Sequence names, imaging features with their answer categories, the group of
each feature and the sequences a reader needs to judge it
(:mod:`study.lirads.vocabulary`), and the CT/MRI LI-RADS v2018 category
computed from features (:mod:`study.lirads.category`). Nothing else in the
project spells these names; both packages import them from here.
"""

from study.lirads.category import (
    APHE_VALUES,
    WASHOUT_VALUES,
    adjust_for_ancillary,
    category_from_answers,
    diagnostic_table,
    lirads_category,
)
from study.lirads.vocabulary import (
    ABSENT,
    BINARY,
    DIAGNOSES,
    FEATURES,
    GROUPS,
    INDETERMINATE,
    LIRADS_CATEGORIES,
    OUTCOMES,
    PRESENT,
    SEQUENCES,
    Feature,
    feature,
    features_in_group,
)

__all__ = [
    "ABSENT",
    "APHE_VALUES",
    "BINARY",
    "DIAGNOSES",
    "FEATURES",
    "GROUPS",
    "INDETERMINATE",
    "LIRADS_CATEGORIES",
    "OUTCOMES",
    "PRESENT",
    "SEQUENCES",
    "WASHOUT_VALUES",
    "Feature",
    "adjust_for_ancillary",
    "category_from_answers",
    "diagnostic_table",
    "feature",
    "features_in_group",
    "lirads_category",
]
