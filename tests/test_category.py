"""The CT/MRI LI-RADS v2018 category engine: diagnostic table, LR-M, ancillary rules, properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from study.lirads import (
    adjust_for_ancillary,
    category_from_answers,
    diagnostic_table,
    features_in_group,
    lirads_category,
)

# Representative sizes for the columns < 10, 10-19 and >= 20 mm, with both edges of each.
NO_APHE_SMALL = (5, 9.9, 10, 19, 19.9)
NO_APHE_LARGE = (20, 35)
NONRIM_SMALL = (5, 9.9)
NONRIM_MID = (10, 15, 19.9)
NONRIM_LARGE = (20, 45)

# (aphe, sizes, capsule, washout, threshold growth, expected): every cell of the v2018
# diagnostic table, with each way of counting one and two additional major features.
TABLE = [
    # No APHE, < 20 mm: LR-3, LR-3, LR-4.
    ("absent", NO_APHE_SMALL, False, "absent", False, "LR-3"),
    ("absent", NO_APHE_SMALL, True, "absent", False, "LR-3"),
    ("absent", NO_APHE_SMALL, False, "nonperipheral", False, "LR-3"),
    ("absent", NO_APHE_SMALL, False, "absent", True, "LR-3"),
    ("absent", NO_APHE_SMALL, True, "nonperipheral", False, "LR-4"),
    ("absent", NO_APHE_SMALL, True, "nonperipheral", True, "LR-4"),
    # No APHE, >= 20 mm: LR-3, LR-4, LR-4.
    ("absent", NO_APHE_LARGE, False, "absent", False, "LR-3"),
    ("absent", NO_APHE_LARGE, True, "absent", False, "LR-4"),
    ("absent", NO_APHE_LARGE, False, "nonperipheral", False, "LR-4"),
    ("absent", NO_APHE_LARGE, False, "absent", True, "LR-4"),
    ("absent", NO_APHE_LARGE, False, "nonperipheral", True, "LR-4"),
    # Nonrim APHE, < 10 mm: LR-3, LR-4, LR-4.
    ("nonrim", NONRIM_SMALL, False, "absent", False, "LR-3"),
    ("nonrim", NONRIM_SMALL, True, "absent", False, "LR-4"),
    ("nonrim", NONRIM_SMALL, False, "nonperipheral", False, "LR-4"),
    ("nonrim", NONRIM_SMALL, False, "absent", True, "LR-4"),
    ("nonrim", NONRIM_SMALL, True, "nonperipheral", True, "LR-4"),
    # Nonrim APHE, 10-19 mm: LR-3; LR-4 for capsule alone, LR-5 for washout or growth; LR-5.
    ("nonrim", NONRIM_MID, False, "absent", False, "LR-3"),
    ("nonrim", NONRIM_MID, True, "absent", False, "LR-4"),
    ("nonrim", NONRIM_MID, False, "nonperipheral", False, "LR-5"),
    ("nonrim", NONRIM_MID, False, "absent", True, "LR-5"),
    ("nonrim", NONRIM_MID, True, "nonperipheral", False, "LR-5"),
    ("nonrim", NONRIM_MID, True, "absent", True, "LR-5"),
    # Nonrim APHE, >= 20 mm: LR-4, LR-5, LR-5.
    ("nonrim", NONRIM_LARGE, False, "absent", False, "LR-4"),
    ("nonrim", NONRIM_LARGE, True, "absent", False, "LR-5"),
    ("nonrim", NONRIM_LARGE, False, "nonperipheral", False, "LR-5"),
    ("nonrim", NONRIM_LARGE, False, "absent", True, "LR-5"),
    ("nonrim", NONRIM_LARGE, True, "nonperipheral", True, "LR-5"),
]


@pytest.mark.parametrize(
    ("aphe", "size_mm", "capsule", "washout", "growth", "expected"),
    [(a, size, c, w, g, e) for a, sizes, c, w, g, e in TABLE for size in sizes],
)
def test_diagnostic_table_cell(aphe, size_mm, capsule, washout, growth, expected):
    assert lirads_category(size_mm, aphe, washout, capsule, growth) == expected


def test_table_lookup_rejects_unknown_feature():
    with pytest.raises(ValueError, match="invalid major feature"):
        diagnostic_table(15, True, ["corona"])


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"aphe": "rim"}, "LR-M"),
        ({"washout": "peripheral"}, "LR-M"),
        ({"aphe": "rim", "capsule": True, "washout": "nonperipheral"}, "LR-M"),
        ({"lr_m_features": ["targetoid_restriction"]}, "LR-M"),
        (
            {
                "lr_m_features": ["delayed_central_enhancement"],
                "aphe": "nonrim",
                "size_mm": 25,
                "washout": "nonperipheral",
            },
            "LR-M",
        ),
        # Nontargetoid LR-M features give LR-M unless the observation meets LR-5.
        ({"lr_m_features": ["infiltrative_appearance"]}, "LR-M"),
        (
            {
                "lr_m_features": ["necrosis_or_severe_ischemia"],
                "aphe": "nonrim",
                "size_mm": 25,
                "washout": "nonperipheral",
            },
            "LR-5",
        ),
        # Tumour in vein comes before everything else.
        ({"tumour_in_vein": True, "aphe": "rim"}, "LR-TIV"),
        ({"tumour_in_vein": True, "aphe": "nonrim", "size_mm": 25, "capsule": True}, "LR-TIV"),
    ],
)
def test_lr_m_and_tiv(arguments, expected):
    options = {"size_mm": 15, "aphe": "absent", "washout": "absent", "capsule": False}
    options.update(arguments)
    assert lirads_category(**options) == expected


@pytest.mark.parametrize(
    ("base", "malignancy", "benignity", "expected"),
    [
        ("LR-3", True, False, "LR-4"),
        ("LR-4", True, False, "LR-4"),  # never upgraded to LR-5
        ("LR-5", True, False, "LR-5"),
        ("LR-5", False, True, "LR-4"),
        ("LR-4", False, True, "LR-3"),
        ("LR-3", False, True, "LR-2"),
        ("LR-2", False, True, "LR-2"),
        ("LR-3", True, True, "LR-3"),  # both kinds: no adjustment
        ("LR-4", True, True, "LR-4"),
        ("LR-4", False, False, "LR-4"),
    ],
)
def test_ancillary_adjustment(base, malignancy, benignity, expected):
    assert adjust_for_ancillary(base, malignancy=malignancy, benignity=benignity) == expected


def test_ancillary_in_engine():
    assert lirads_category(15, "absent", "absent", False, ancillary_hcc=["fat_in_mass"]) == "LR-4"
    assert (
        lirads_category(15, "nonrim", "absent", True, ancillary_malignancy=["restricted_diffusion"])
        == "LR-4"
    )
    assert (
        lirads_category(25, "nonrim", "nonperipheral", False, ancillary_benign=["iron_in_mass"])
        == "LR-4"
    )
    assert (
        lirads_category(
            15,
            "absent",
            "absent",
            False,
            ancillary_malignancy=["t2_hyperintensity"],
            ancillary_benign=["marked_t2_hyperintensity"],
        )
        == "LR-3"
    )
    # Ancillary features do not move LR-M.
    assert (
        lirads_category(15, "rim", "absent", False, ancillary_benign=["marked_t2_hyperintensity"])
        == "LR-M"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"size_mm": 0}, "positive"),
        ({"size_mm": float("nan")}, "positive"),
        ({"size_mm": "15"}, "number"),
        ({"aphe": "present"}, "aphe"),
        ({"washout": "present"}, "washout"),
        ({"capsule": "yes"}, "capsule"),
        ({"ancillary_benign": ["restricted_diffusion"]}, "ancillary_benign"),
        ({"lr_m_features": ["fat_in_mass"]}, "lr_m_features"),
    ],
)
def test_invalid_input_rejected(arguments, message):
    options = {"size_mm": 15, "aphe": "absent", "washout": "absent", "capsule": False}
    options.update(arguments)
    with pytest.raises(ValueError, match=message):
        lirads_category(**options)


def test_category_from_answers():
    answers = {"aphe": "nonrim", "washout": "nonperipheral", "enhancing_capsule": "absent"}
    assert category_from_answers(answers, 15) == "LR-5"
    # indeterminate major features count as absent, as LI-RADS prescribes.
    assert category_from_answers({**answers, "washout": "indeterminate"}, 15) == "LR-3"
    assert category_from_answers({**answers, "restricted_diffusion": "present"}, 15) == "LR-5"
    assert category_from_answers({**answers, "iron_in_mass": "present"}, 15) == "LR-4"
    assert category_from_answers({**answers, "iron_in_mass": "indeterminate"}, 15) == "LR-5"
    assert category_from_answers({"aphe": "nonrim", "washout": "absent"}, 15) is None


# --------------------------------------------------------------------------- properties

SIZES = st.floats(min_value=1, max_value=150, allow_nan=False)
MAJOR = st.fixed_dictionaries(
    {
        "aphe": st.sampled_from(["absent", "nonrim"]),
        "washout": st.sampled_from(["absent", "nonperipheral"]),
        "capsule": st.booleans(),
        "threshold_growth": st.booleans(),
    }
)
ANCILLARY = st.fixed_dictionaries(
    {
        "ancillary_malignancy": st.lists(
            st.sampled_from(features_in_group("ancillary_malignancy")), max_size=2
        ),
        "ancillary_hcc": st.lists(st.sampled_from(features_in_group("ancillary_hcc")), max_size=2),
        "ancillary_benign": st.lists(
            st.sampled_from(features_in_group("ancillary_benign")), max_size=2
        ),
    }
)
RANK = {"LR-2": 2, "LR-3": 3, "LR-4": 4, "LR-5": 5}
ADDED = [
    ("aphe", "absent", "nonrim"),
    ("washout", "absent", "nonperipheral"),
    ("capsule", False, True),
    ("threshold_growth", False, True),
]


@given(size_mm=SIZES, major=MAJOR, ancillary=ANCILLARY)
def test_adding_major_feature_never_lowers(size_mm, major, ancillary):
    before = RANK[lirads_category(size_mm, **major, **ancillary)]
    for name, absent, present in ADDED:
        if major[name] == absent:
            after = lirads_category(size_mm, **{**major, name: present}, **ancillary)
            assert RANK[after] >= before, name


@given(
    size_mm=SIZES,
    major=MAJOR,
    ancillary=ANCILLARY,
    extra=st.sampled_from(features_in_group("ancillary_benign")),
)
def test_benign_ancillary_never_raises(size_mm, major, ancillary, extra):
    before = RANK[lirads_category(size_mm, **major, **ancillary)]
    benign = [*ancillary["ancillary_benign"], extra]
    after = lirads_category(size_mm, **major, **{**ancillary, "ancillary_benign": benign})
    assert RANK[after] <= before


@given(major=MAJOR, ancillary=ANCILLARY, sizes=st.lists(SIZES, min_size=2, max_size=6))
def test_size_monotone_within_row(major, ancillary, sizes):
    ranks = [RANK[lirads_category(size, **major, **ancillary)] for size in sorted(sizes)]
    assert ranks == sorted(ranks)


@given(size_mm=SIZES, major=MAJOR, ancillary=ANCILLARY)
def test_ancillary_never_reaches_lr5(size_mm, major, ancillary):
    table = lirads_category(size_mm, **major)
    adjusted = lirads_category(size_mm, **major, **ancillary)
    if table != "LR-5":
        assert adjusted != "LR-5"
