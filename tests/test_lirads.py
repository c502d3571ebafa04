"""The LI-RADS vocabulary: sequences, features, groups and the sequences each feature needs."""

from __future__ import annotations

import pytest

import study.lirads as lirads
from study.lirads import (
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

# Names other modules import from study.lirads; they must keep working.
IMPORTED_ELSEWHERE = (
    "FEATURES SEQUENCES INDETERMINATE ABSENT PRESENT DIAGNOSES BINARY OUTCOMES Feature feature"
).split()


def test_public_names_exported():
    for name in IMPORTED_ELSEWHERE:
        assert hasattr(lirads, name), name
    assert set(lirads.__all__) >= set(IMPORTED_ELSEWHERE)


def test_sequences_fixed():
    assert SEQUENCES == (
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


def test_outcomes_and_diagnoses():
    assert OUTCOMES == ("valid", "parse_failure", "refusal", "infra_failure")
    assert DIAGNOSES == (
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
    assert set(LIRADS_CATEGORIES) == {
        "LR-1", "LR-2", "LR-3", "LR-4", "LR-5", "LR-M", "LR-TIV", "LR-NC"
    }  # fmt: skip


def test_first_features_keep_their_order():
    assert list(FEATURES)[:9] == [
        "aphe",
        "washout",
        "enhancing_capsule",
        "restricted_diffusion",
        "t2_hyperintensity",
        "fat_in_mass",
        "iron_in_mass",
        "marked_t2_hyperintensity",
        "threshold_growth",
    ]


@pytest.mark.parametrize("item", FEATURES.values(), ids=list(FEATURES))
def test_feature_well_formed(item: Feature):
    assert item.group in GROUPS
    assert INDETERMINATE not in item.categories
    assert item.answers[-1] == INDETERMINATE
    assert set(item.needs) <= set(SEQUENCES)
    for option in item.alternatives:
        assert set(option) <= set(SEQUENCES)
    assert item.needs or item.prior_exam
    assert not item.targetoid or item.group == "lr_m"


def test_major_feature_categories():
    assert feature("aphe").categories == ("absent", "nonrim", "rim")
    assert feature("washout").categories == ("absent", "nonperipheral", "peripheral")
    assert feature("enhancing_capsule").categories == BINARY == (ABSENT, PRESENT)
    assert features_in_group("major") == (
        "aphe",
        "washout",
        "enhancing_capsule",
        "threshold_growth",
    )


def test_groups_cover_v2018_lists():
    assert set(features_in_group("ancillary_hcc")) == {
        "fat_in_mass",
        "nonenhancing_capsule",
        "nodule_in_nodule",
        "mosaic_architecture",
        "blood_products",
    }
    assert {"iron_in_mass", "marked_t2_hyperintensity", "hepatobiliary_isointensity"} <= set(
        features_in_group("ancillary_benign")
    )
    targetoid = {name for name in features_in_group("lr_m") if FEATURES[name].targetoid}
    assert targetoid == {"delayed_central_enhancement", "targetoid_restriction", "targetoid_tp_hbp"}


@pytest.mark.parametrize(
    ("name", "shown", "judgeable"),
    [
        ("aphe", ["arterial"], False),
        ("aphe", ["t1_pre", "arterial"], True),
        ("washout", ["portal_venous"], True),
        ("washout", ["delayed"], True),
        ("washout", ["transitional"], False),  # gadoxetate: washout on portal venous only
        ("enhancing_capsule", ["transitional"], True),
        ("restricted_diffusion", ["dwi"], False),
        ("restricted_diffusion", ["dwi", "adc"], True),
        ("fat_in_mass", ["in_phase", "opposed_phase"], True),
        ("hepatobiliary_hypointensity", ["transitional"], False),
        ("marked_t2_hyperintensity", ["t2"], True),
    ],
)
def test_judgeable(name, shown, judgeable):
    assert feature(name).judgeable(shown) is judgeable


def test_prior_exam_features():
    needing = {name for name, item in FEATURES.items() if item.prior_exam}
    assert needing == {
        "threshold_growth",
        "subthreshold_growth",
        "size_stability",
        "size_reduction",
    }


def test_unknown_feature_lists_known():
    with pytest.raises(KeyError, match="known features: aphe"):
        feature("apHE")
    with pytest.raises(ValueError, match="invalid feature group"):
        features_in_group("ancillary")
