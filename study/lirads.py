"""The LI-RADS vocabulary shared by ``study`` and ``analysis``.

Sequence names, imaging features with their answer categories, the group of
each feature and the sequences a reader needs to judge it. Nothing else in the
project spells these names; both packages import them from here.

The feature definitions follow the ACR CT/MRI LI-RADS v2018 Core document
(American College of Radiology, 2018). Every categorical feature also accepts
``indeterminate``: the reader could not tell, or the sequences it needs were
not shown. LI-RADS itself says to call an uncertain major feature absent;
the analysis decides that mapping and states it, so the raw answer keeps
``indeterminate`` apart from ``absent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

SEQUENCES: tuple[str, ...] = (
    "t1_pre",
    "arterial",
    "portal_venous",
    "delayed",
    "transitional",
    "hepatobiliary",
    "t2",
    "dwi",
    "adc",
    "in_phase",
    "opposed_phase",
)
"""Short names of the MRI sequences a cohort may contain."""

INDETERMINATE = "indeterminate"
ABSENT = "absent"
PRESENT = "present"
BINARY = (ABSENT, PRESENT)

OUTCOMES: tuple[str, ...] = ("valid", "parse_failure", "refusal", "infra_failure")
"""How a reader call ended; ``answer`` is empty unless the outcome is ``valid``."""

DIAGNOSES: tuple[str, ...] = (
    "HCC",
    "intrahepatic cholangiocarcinoma",
    "metastasis",
    "hemangioma",
    "FNH",
    "adenoma",
    "cyst",
    "abscess",
    "other",
)
"""Diagnoses a reader may name and a pathology table may hold."""


@dataclass(frozen=True)
class Feature:
    """An imaging feature a reader judges per lesion.

    Attributes
    ----------
    name
        Identifier used in protocols, prompts and the predictions table.
    label
        The LI-RADS term, as shown to readers and in reports.
    group
        ``major``, ``ancillary_malignancy``, ``ancillary_hcc``,
        ``ancillary_benign`` or ``lr_m``.
    categories
        Answer categories in a fixed order, without ``indeterminate``.
    needs
        Sequences that must all be shown for the feature to be judged.
    """

    name: str
    label: str
    group: str
    categories: tuple[str, ...]
    needs: tuple[str, ...]

    @property
    def answers(self) -> tuple[str, ...]:
        """Return every accepted answer, ``indeterminate`` last."""
        return (*self.categories, INDETERMINATE)

    def judgeable(self, shown: tuple[str, ...] | list[str]) -> bool:
        """Return whether the sequences ``shown`` include all that the feature needs.

        Examples
        --------
        >>> FEATURES["washout"].judgeable(["t1_pre", "arterial", "portal_venous"])
        True
        >>> FEATURES["fat_in_mass"].judgeable(["in_phase"])
        False
        """
        return set(self.needs) <= set(shown)


_FEATURE_LIST = (
    Feature(
        "aphe",
        "arterial phase hyperenhancement",
        "major",
        ("absent", "nonrim", "rim"),
        ("t1_pre", "arterial"),
    ),
    Feature(
        "washout",
        "washout",
        "major",
        ("absent", "nonperipheral", "peripheral"),
        ("portal_venous",),
    ),
    Feature(
        "enhancing_capsule", "enhancing capsule", "major", BINARY, ("portal_venous",)
    ),
    Feature(
        "restricted_diffusion",
        "restricted diffusion",
        "ancillary_malignancy",
        BINARY,
        ("dwi", "adc"),
    ),
    Feature(
        "t2_hyperintensity",
        "mild-moderate T2 hyperintensity",
        "ancillary_malignancy",
        BINARY,
        ("t2",),
    ),
    Feature(
        "fat_in_mass",
        "fat in mass, more than adjacent liver",
        "ancillary_hcc",
        BINARY,
        ("in_phase", "opposed_phase"),
    ),
    Feature(
        "iron_in_mass",
        "iron in mass, more than liver",
        "ancillary_benign",
        BINARY,
        ("in_phase", "opposed_phase"),
    ),
    Feature(
        "marked_t2_hyperintensity",
        "marked T2 hyperintensity",
        "ancillary_benign",
        BINARY,
        ("t2",),
    ),
    Feature(
        "threshold_growth",
        "threshold growth",
        "major",
        BINARY,
        (),
    ),
)

FEATURES: MappingProxyType[str, Feature] = MappingProxyType(
    {feature.name: feature for feature in _FEATURE_LIST}
)
"""Every feature the project knows, by name."""


def feature(name: str) -> Feature:
    """Return the feature called ``name``.

    Raises
    ------
    KeyError
        With the known names, when ``name`` is not one of them.

    Examples
    --------
    >>> feature("aphe").categories
    ('absent', 'nonrim', 'rim')
    """
    try:
        return FEATURES[name]
    except KeyError:
        known = ", ".join(FEATURES)
        raise KeyError(f"unknown feature {name!r}; known features: {known}") from None
