"""Consistency check: the v2018 engine on the radiologists' own features in the mLI-RADS reads.

The reads are Becker A.S. et al., Eur J Radiol 86 (2017) 33-40,
doi:10.1016/j.ejrad.2016.11.004 (CC BY-NC-SA 4.0). Four readers scored each
observation. Where a reader scored features, :func:`study.lirads.lirads_category`
computes a category from that reader's size (``MAX_DM_LR``), APHE (``ART_HYP``,
read as nonrim), washout (``WASHOUT``, read as nonperipheral), capsule
(``CPS``) and threshold growth (``TRESHOLD``). A blank threshold growth counts
as absent, as the authors' own R analysis does. The test cross-tabulates that
category against the one the reader recorded.

Decoding ``LIRADS_Category``: the file has no codebook. Codes 1-3 are LR-1 to
LR-3, codes 4 and 5 are LR-4 and codes 6 and 7 are LR-5; the second code of
each pair marks the larger observations (code 6 is always under 20 mm). The
file's own ``LIRADSmc`` columns, which collapse the codes to 1-5, agree with
this decoding in 411 of 416 reads (the other five are codes 1 and 2 that
``LIRADSmc`` puts at 3).

The readers used LI-RADS v2014, so agreement is not expected to be perfect.
Found: the recorded and computed category agree in 230 of 302 scored reads
(76.2 %, Cohen's kappa 0.63). Of the 37 reads recorded LR-4 and computed LR-5,
16 are nonrim APHE, 10-19 mm, with nonperipheral washout as the only
additional feature: v2014 called that cell LR-4 and v2018 calls it LR-5.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from analysis.baseline import MLIRADS_CSV, MLIRADS_READERS, load_mlirads_reads
from study.lirads import PRESENT, lirads_category

RECORDED = {
    "1": "LR-1",
    "2": "LR-2",
    "3": "LR-3",
    "4": "LR-4",
    "5": "LR-4",
    "6": "LR-5",
    "7": "LR-5",
}


def _table() -> pd.DataFrame:
    text = MLIRADS_CSV.read_bytes().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    table = table[table["OBSERV"].str.fullmatch(r"\d+")]
    return table.assign(observation=table["OBSERV"].astype(int)).set_index("observation")


@pytest.fixture(scope="module")
def reads() -> pd.DataFrame:
    """One row per observation and reader: recorded and computed category."""
    table = _table()
    features = load_mlirads_reads().pivot(
        index=["observation", "reader"], columns="feature", values="answer"
    )
    rows = []
    for suffix, reader in MLIRADS_READERS.items():
        for observation, row in table.iterrows():
            answers = features.loc[(observation, reader)]
            size = row["MAX_DM_LR" + suffix].strip()
            computed = None
            if isinstance(answers["aphe"], str) and size:
                computed = lirads_category(
                    float(size),
                    "nonrim" if answers["aphe"] == PRESENT else "absent",
                    "nonperipheral" if answers["washout"] == PRESENT else "absent",
                    answers["enhancing_capsule"] == PRESENT,
                    answers["threshold_growth"] == PRESENT,
                )
            rows.append(
                {
                    "observation": observation,
                    "reader": reader,
                    "size_mm": float(size) if size else None,
                    "recorded": RECORDED[row["LIRADS_Category" + suffix]],
                    "recorded_collapsed": row["LIRADSmc" + suffix],
                    "computed": computed,
                    "aphe": answers["aphe"],
                    "washout": answers["washout"],
                    "capsule": answers["enhancing_capsule"],
                    "growth": answers["threshold_growth"],
                }
            )
    return pd.DataFrame(rows)


def test_decoding_matches_file_collapse(reads):
    collapsed = "LR-" + reads["recorded_collapsed"]
    assert len(reads) == 416
    assert int((collapsed == reads["recorded"]).sum()) == 411


def test_code_six_is_under_20_mm():
    table = _table()
    for suffix in MLIRADS_READERS:
        sizes = pd.to_numeric(table["MAX_DM_LR" + suffix], errors="coerce")
        assert (sizes[table["LIRADS_Category" + suffix] == "6"] < 20).all()


def test_crosstab_recorded_against_computed(reads):
    scored = reads.dropna(subset=["computed"])
    table = pd.crosstab(scored["recorded"], scored["computed"])
    expected = pd.DataFrame(
        [[6, 0, 0], [48, 8, 3], [14, 55, 37], [0, 4, 127]],
        index=pd.Index(["LR-2", "LR-3", "LR-4", "LR-5"], name="recorded"),
        columns=pd.Index(["LR-3", "LR-4", "LR-5"], name="computed"),
    )
    pd.testing.assert_frame_equal(table, expected)


def test_unscored_reads_are_benign(reads):
    unscored = reads[reads["computed"].isna()]
    assert len(unscored) == 114
    assert unscored["recorded"].value_counts().to_dict() == {"LR-1": 69, "LR-2": 44, "LR-3": 1}


def test_agreement_found(reads):
    scored = reads.dropna(subset=["computed"])
    agree = int((scored["recorded"] == scored["computed"]).sum())
    kappa = cohen_kappa_score(scored["recorded"], scored["computed"])

    assert (agree, len(scored)) == (230, 302)
    assert kappa == pytest.approx(0.6265, abs=1e-4)


def test_v2018_change_explains_part_of_upgrades(reads):
    upgraded = reads[(reads["recorded"] == "LR-4") & (reads["computed"] == "LR-5")]
    changed_cell = upgraded[
        (upgraded["aphe"] == PRESENT)
        & upgraded["size_mm"].between(10, 20, inclusive="left")
        & (upgraded["washout"] == PRESENT)
        & (upgraded["capsule"] != PRESENT)
        & (upgraded["growth"] != PRESENT)
    ]
    assert len(upgraded) == 37
    assert len(changed_cell) == 16
