"""Sequence names, imaging features and answer categories of CT/MRI LI-RADS v2018.

Every categorical feature also accepts ``indeterminate``: the reader could not
tell, or the sequences it needs were not shown. LI-RADS says to call an
uncertain *major* feature absent; the analysis decides that mapping and
states it, so the raw answer keeps ``indeterminate`` apart from ``absent``.

Sources
-------
ACR CT/MRI LI-RADS v2018 Core (American College of Radiology, 2018), read in a
public copy of the Core document: its diagnostic algorithm page names the
major features (nonrim APHE, nonperipheral "washout", enhancing "capsule",
size, threshold growth) and prints "If unsure about the presence of any major
feature: characterize that feature as absent".

NOTE: the ancillary and LR-M feature lists, and the sequences each of them
needs, come from secondary summaries of v2018, not from the Core document's
own pages. Iron, for example, is taken as judged on the in-phase and
opposed-phase echoes rather than on a dedicated T2* map.
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
"""Outcomes of a reader call; ``answer`` is empty unless the outcome is ``valid``."""

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

LIRADS_CATEGORIES: tuple[str, ...] = (
    "LR-1",
    "LR-2",
    "LR-3",
    "LR-4",
    "LR-5",
    "LR-M",
    "LR-TIV",
    "LR-NC",
)
"""Every CT/MRI LI-RADS v2018 diagnostic category a reader may give."""

GROUPS: tuple[str, ...] = (
    "major",
    "ancillary_malignancy",
    "ancillary_hcc",
    "ancillary_benign",
    "lr_m",
)
"""Feature groups: major features, ancillary features favouring malignancy in
general, favouring HCC in particular, favouring benignity, and LR-M features."""


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
        One of :data:`GROUPS`.
    categories
        Answer categories in a fixed order, without ``indeterminate``.
    needs
        Sequences that must all be shown for the feature to be judged.
    alternatives
        Other sets of sequences, each of which is also enough on its own
        (washout may be judged on the delayed instead of the portal venous phase).
    prior_exam
        Whether judging the feature also needs a prior exam (growth, stability).
    targetoid
        For an LR-M feature, whether it is one of the targetoid features, which
        make an observation LR-M even when it would otherwise meet LR-5.
    """

    name: str
    label: str
    group: str
    categories: tuple[str, ...]
    needs: tuple[str, ...]
    alternatives: tuple[tuple[str, ...], ...] = ()
    prior_exam: bool = False
    targetoid: bool = False

    @property
    def answers(self) -> tuple[str, ...]:
        """Every accepted answer, ``indeterminate`` last."""
        return (*self.categories, INDETERMINATE)

    def judgeable(self, shown: tuple[str, ...] | list[str]) -> bool:
        """Return whether the sequences ``shown`` include one set the feature needs.

        Only sequences are checked: a feature with ``prior_exam`` also needs a
        prior exam, which the caller has to know about.

        Examples
        --------
        >>> FEATURES["washout"].judgeable(["t1_pre", "arterial", "portal_venous"])
        True
        >>> FEATURES["washout"].judgeable(["arterial", "delayed"])
        True
        >>> FEATURES["fat_in_mass"].judgeable(["in_phase"])
        False
        """
        available = set(shown)
        return any(set(option) <= available for option in (self.needs, *self.alternatives))


_POST_CONTRAST_LATE = (("delayed",), ("transitional",))

_FEATURE_LIST = (
    # The first nine keep the order other modules and stored runs were built with.
    Feature(
        "aphe",
        "arterial phase hyperenhancement",
        "major",
        ("absent", "nonrim", "rim"),
        ("t1_pre", "arterial"),
    ),
    # With gadoxetate, washout is read on the portal venous phase only, so the
    # transitional phase is no alternative; "delayed" means an extracellular agent.
    Feature(
        "washout",
        "washout",
        "major",
        ("absent", "nonperipheral", "peripheral"),
        ("portal_venous",),
        (("delayed",),),
    ),
    Feature(
        "enhancing_capsule",
        "enhancing capsule",
        "major",
        BINARY,
        ("portal_venous",),
        _POST_CONTRAST_LATE,
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
    Feature("threshold_growth", "threshold growth", "major", BINARY, (), prior_exam=True),
    # Ancillary features favouring malignancy in general.
    Feature(
        "subthreshold_growth",
        "subthreshold growth",
        "ancillary_malignancy",
        BINARY,
        (),
        prior_exam=True,
    ),
    Feature(
        "corona_enhancement",
        "corona enhancement",
        "ancillary_malignancy",
        BINARY,
        ("arterial",),
        (("portal_venous",),),
    ),
    Feature(
        "fat_sparing",
        "fat sparing in solid mass",
        "ancillary_malignancy",
        BINARY,
        ("in_phase", "opposed_phase"),
    ),
    Feature(
        "iron_sparing",
        "iron sparing in solid mass",
        "ancillary_malignancy",
        BINARY,
        ("in_phase", "opposed_phase"),
    ),
    Feature(
        "transitional_hypointensity",
        "transitional phase hypointensity",
        "ancillary_malignancy",
        BINARY,
        ("transitional",),
    ),
    Feature(
        "hepatobiliary_hypointensity",
        "hepatobiliary phase hypointensity",
        "ancillary_malignancy",
        BINARY,
        ("hepatobiliary",),
    ),
    # Ancillary features favouring HCC in particular.
    Feature(
        "nonenhancing_capsule",
        "nonenhancing capsule",
        "ancillary_hcc",
        BINARY,
        ("portal_venous",),
        _POST_CONTRAST_LATE,
    ),
    # NOTE: nodule-in-nodule and mosaic architecture have no single defining
    # sequence; any one of these phases is taken as enough.
    Feature(
        "nodule_in_nodule",
        "nodule-in-nodule architecture",
        "ancillary_hcc",
        BINARY,
        ("arterial",),
        (("portal_venous",), ("t2",), ("hepatobiliary",)),
    ),
    Feature(
        "mosaic_architecture",
        "mosaic architecture",
        "ancillary_hcc",
        BINARY,
        ("arterial",),
        (("portal_venous",), ("t2",), ("hepatobiliary",)),
    ),
    Feature(
        "blood_products",
        "blood products in mass",
        "ancillary_hcc",
        BINARY,
        ("t1_pre",),
        (("in_phase", "opposed_phase"),),
    ),
    # Ancillary features favouring benignity.
    Feature(
        "size_stability",
        "size stability >= 2 years",
        "ancillary_benign",
        BINARY,
        (),
        prior_exam=True,
    ),
    Feature("size_reduction", "size reduction", "ancillary_benign", BINARY, (), prior_exam=True),
    Feature(
        "parallels_blood_pool",
        "parallels blood pool enhancement",
        "ancillary_benign",
        BINARY,
        ("arterial", "portal_venous", "delayed"),
        (("arterial", "portal_venous", "transitional"),),
    ),
    Feature(
        "undistorted_vessels",
        "undistorted vessels",
        "ancillary_benign",
        BINARY,
        ("portal_venous",),
        (("arterial",), ("delayed",)),
    ),
    Feature(
        "hepatobiliary_isointensity",
        "hepatobiliary phase isointensity",
        "ancillary_benign",
        BINARY,
        ("hepatobiliary",),
    ),
    # LR-M features. Rim APHE and peripheral washout, the other two targetoid
    # features, are answer categories of ``aphe`` and ``washout``.
    Feature(
        "delayed_central_enhancement",
        "delayed central enhancement",
        "lr_m",
        BINARY,
        ("delayed",),
        (("transitional",),),
        targetoid=True,
    ),
    Feature(
        "targetoid_restriction",
        "targetoid diffusion restriction",
        "lr_m",
        BINARY,
        ("dwi",),
        targetoid=True,
    ),
    Feature(
        "targetoid_tp_hbp",
        "targetoid transitional phase or hepatobiliary phase appearance",
        "lr_m",
        BINARY,
        ("transitional",),
        (("hepatobiliary",),),
        targetoid=True,
    ),
    Feature(
        "infiltrative_appearance",
        "infiltrative appearance",
        "lr_m",
        BINARY,
        ("portal_venous",),
        (("arterial",), ("delayed",)),
    ),
    Feature(
        "marked_diffusion_restriction",
        "marked diffusion restriction",
        "lr_m",
        BINARY,
        ("dwi", "adc"),
    ),
    Feature(
        "necrosis_or_severe_ischemia",
        "necrosis or severe ischemia",
        "lr_m",
        BINARY,
        ("portal_venous",),
        (("arterial",), ("delayed",)),
    ),
)

FEATURES: MappingProxyType[str, Feature] = MappingProxyType(
    {feature.name: feature for feature in _FEATURE_LIST}
)
"""Every feature the project defines, by name."""


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


def features_in_group(group: str) -> tuple[str, ...]:
    """Return the names of the features in ``group``, in :data:`FEATURES` order.

    Raises
    ------
    ValueError
        When ``group`` is not one of :data:`GROUPS`.

    Examples
    --------
    >>> features_in_group("major")
    ('aphe', 'washout', 'enhancing_capsule', 'threshold_growth')
    """
    if group not in GROUPS:
        raise ValueError(f"invalid feature group {group!r}; expected one of {', '.join(GROUPS)}")
    return tuple(name for name, item in FEATURES.items() if item.group == group)
