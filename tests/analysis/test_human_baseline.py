"""The human baseline from the real mLI-RADS reads (Becker et al. 2017).

For context only: the paper reports an overall Fleiss' kappa of 0.45 for the
LI-RADS v2014 category among the same four readers. The per-feature kappas
below are not in the paper; this test states the values this code computes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from analysis.agreement import fleiss_kappa
from analysis.baseline import (
    BLANK_AS_ABSENT,
    COMPLETE_CASES,
    MLIRADS_CSV,
    MLIRADS_FEATURES,
    human_baseline,
    load_mlirads_reads,
)
from study.lirads import ABSENT, PRESENT

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PUBLISHED_SHA256 = "b4b7b181590c8fbba17bce73c3ba2c8065e1a8582db57c15b55ce5574f765462"

# feature, handling, observations, Fleiss' kappa, 95% percentile CI (2000 resamples of
# observations, seed 20261204, numpy PCG64 multinomial draws).
STATED = [
    ("aphe", COMPLETE_CASES, 59, 0.512927314345754, 0.34346762438956036, 0.6594616992022653),
    ("aphe", BLANK_AS_ABSENT, 104, 0.5923852183650617, 0.4881627723497115, 0.6909074022476084),
    ("washout", COMPLETE_CASES, 59, 0.43336515375047, 0.27296336944511834, 0.5731307497544671),
    ("washout", BLANK_AS_ABSENT, 104, 0.6066468253968252, 0.5022615432340428, 0.708349396458894),
    (
        "enhancing_capsule",
        COMPLETE_CASES,
        59,
        0.36350014983518136,
        0.22400232554054422,
        0.4999596496320956,
    ),
    (
        "enhancing_capsule",
        BLANK_AS_ABSENT,
        104,
        0.418241208594906,
        0.2928510977412904,
        0.5327833933619919,
    ),
    (
        "threshold_growth",
        COMPLETE_CASES,
        59,
        0.4215686274509802,
        0.26210792131844757,
        0.5609676331529605,
    ),
    (
        "threshold_growth",
        BLANK_AS_ABSENT,
        104,
        0.45345345345345317,
        0.3207338198766266,
        0.5655399027879996,
    ),
]


@pytest.fixture(scope="module")
def reads() -> pd.DataFrame:
    return load_mlirads_reads()


@pytest.fixture(scope="module")
def baseline(reads) -> pd.DataFrame:
    return human_baseline(
        reads, features=list(MLIRADS_FEATURES.values()), n_resamples=2000, seed=20261204
    )


def test_resource_kept_byte_for_byte():
    data = MLIRADS_CSV.read_bytes()
    assert hashlib.sha256(data).hexdigest() == PUBLISHED_SHA256
    shared_copy = SHARED / "data" / "mlirads" / "lirads.1-5.csv"
    if shared_copy.exists():
        assert data == shared_copy.read_bytes()


def test_reads_shape(reads):
    assert len(reads) == 104 * 4 * 4
    assert reads["observation"].nunique() == 104
    assert sorted(reads["reader"].unique()) == ["R1", "R2", "R3", "R4"]
    assert sorted(reads["feature"].unique()) == sorted(MLIRADS_FEATURES.values())


def test_reads_answer_counts(reads):
    counts = reads["answer"].value_counts(dropna=False)
    assert counts["present"] == 645
    assert counts["absent"] == 563
    assert reads["answer"].isna().sum() == 456


def test_reads_spot_values(reads):
    indexed = reads.set_index(["observation", "reader", "feature"])["answer"]
    # Observation 1, first reader: ART_HYP 1, WASHOUT 0.
    assert indexed[(1, "R1", "aphe")] == "present"
    assert indexed[(1, "R1", "washout")] == "absent"
    # Observation 101: the first reader left features blank; the second scored
    # ART_HYP2 0 and WASHOUT2 1.
    assert pd.isna(indexed[(101, "R1", "aphe")])
    assert indexed[(101, "R2", "aphe")] == "absent"
    assert indexed[(101, "R2", "washout")] == "present"


def test_bad_cell_rejected(tmp_path):
    text = (
        MLIRADS_CSV.read_bytes()
        .decode()
        .replace("\r1,2,11,05:43,3,12,00:45,1,1,", "\r1,2,11,05:43,3,12,00:45,1,x,", 1)
    )
    broken = tmp_path / "broken.csv"
    broken.write_text(text)
    with pytest.raises(ValueError, match="observation 1, column ART_HYP: expected 1, 0"):
        load_mlirads_reads(broken)


@pytest.mark.parametrize("stated", STATED, ids=[f"{s[0]}-{s[1]}" for s in STATED])
def test_stated_numbers(baseline, stated):
    feature, handling, n_observations, kappa, low, high = stated
    row = baseline[(baseline["feature"] == feature) & (baseline["handling"] == handling)].iloc[0]
    assert row["n_observations"] == n_observations
    assert row["n_not_scored"] == 45
    assert row["fleiss_kappa"] == pytest.approx(kappa, abs=1e-12)
    assert row["ci_low"] == pytest.approx(low, abs=1e-9)
    assert row["ci_high"] == pytest.approx(high, abs=1e-9)


def test_complete_cases_match_statsmodels(reads, baseline):
    for feature in MLIRADS_FEATURES.values():
        wide = reads[reads["feature"] == feature].pivot(
            index="observation", columns="reader", values="answer"
        )
        table, _ = aggregate_raters(wide.dropna().to_numpy())
        row = baseline[(baseline["feature"] == feature) & (baseline["handling"] == COMPLETE_CASES)]
        assert row["fleiss_kappa"].iloc[0] == pytest.approx(statsmodels_fleiss(table), abs=1e-12)


def test_columns(baseline):
    assert list(baseline.columns) == [
        "feature",
        "n_observations",
        "n_not_scored",
        "fleiss_kappa",
        "ci_low",
        "ci_high",
        "handling",
    ]
    assert np.all(baseline["ci_low"] < baseline["fleiss_kappa"])


def test_unknown_feature_rejected(reads):
    with pytest.raises(ValueError, match="no reads for feature 'rim'"):
        human_baseline(reads, features=["rim"], n_resamples=10, seed=1)


# Missing ratings allowed (Gwet's generalised Fleiss' kappa, every rating kept): feature,
# Fleiss' kappa, Gwet's SE, 95% Wald interval. 89 of the 104 observations have at least one
# read (15 none, 10 one, 4 two, 16 three, 59 four).
STATED_MISSING_ALLOWED = [
    ("aphe", 0.5442192194057197, 0.07780843988963196, 0.3917174795287914, 0.696720959282648),
    ("washout", 0.5465283414675038, 0.06610921637901189, 0.41695665831847506, 0.6761000246165326),
    (
        "enhancing_capsule",
        0.340962162353962,
        0.07297638717778046,
        0.19793107176366168,
        0.4839932529442623,
    ),
    (
        "threshold_growth",
        0.4578544351483916,
        0.07207254415454907,
        0.3165948443313026,
        0.5991140259654806,
    ),
]


def wide_reads(reads: pd.DataFrame, feature: str) -> pd.DataFrame:
    return reads[reads["feature"] == feature].pivot(
        index="observation", columns="reader", values="answer"
    )


@pytest.mark.parametrize(
    "stated", STATED_MISSING_ALLOWED, ids=[s[0] for s in STATED_MISSING_ALLOWED]
)
def test_stated_numbers_missing_allowed(reads, stated):
    feature, kappa, se, low, high = stated
    result = fleiss_kappa(wide_reads(reads, feature), categories=[ABSENT, PRESENT])
    assert result.n_subjects == 89
    assert result.n_raters == 4
    assert result.estimate == pytest.approx(kappa, abs=1e-12)
    assert result.se == pytest.approx(se, abs=1e-12)
    assert result.ci_low == pytest.approx(low, abs=1e-12)
    assert result.ci_high == pytest.approx(high, abs=1e-12)


@pytest.mark.parametrize("feature", list(MLIRADS_FEATURES.values()))
def test_missing_allowed_by_hand(reads, feature):
    # Gwet (2014): p_a over the observations with two or more reads, prevalence over all
    # observations with a read, each observation weighted equally.
    wide = wide_reads(reads, feature)
    agreement, prevalence, pairable, rated = 0.0, 0.0, 0, 0
    for _, row in wide.iterrows():
        answers = row.dropna().tolist()
        if not answers:
            continue
        rated += 1
        prevalence += answers.count(PRESENT) / len(answers)
        if len(answers) >= 2:
            pairable += 1
            same = sum(answers.count(a) * (answers.count(a) - 1) for a in (ABSENT, PRESENT))
            agreement += same / (len(answers) * (len(answers) - 1))
    share = prevalence / rated
    expected = share**2 + (1 - share) ** 2
    by_hand = (agreement / pairable - expected) / (1 - expected)
    result = fleiss_kappa(wide, categories=[ABSENT, PRESENT])
    assert result.estimate == pytest.approx(by_hand, abs=1e-12)


@pytest.mark.parametrize("feature", list(MLIRADS_FEATURES.values()))
def test_complete_rows_of_missing_table_match_complete_cases(reads, baseline, feature):
    complete = wide_reads(reads, feature).dropna()
    row = baseline[(baseline["feature"] == feature) & (baseline["handling"] == COMPLETE_CASES)]
    result = fleiss_kappa(complete, categories=[ABSENT, PRESENT])
    assert len(complete) == 59
    assert result.estimate == pytest.approx(row["fleiss_kappa"].iloc[0], abs=1e-12)
