"""Reader-versus-model non-inferiority: kappas, the clustered bootstrap and the decision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.agreement import cohen_kappa
from analysis.bootstrap import cluster_bootstrap
from analysis.noninferiority import COLUMNS, POOLED, reader_model_noninferiority
from study.errors import UserInputError

RADIOLOGISTS = ["r1", "r2", "r3"]
CATEGORIES = ["absent", "present"]


@pytest.fixture(scope="module")
def reads() -> pd.DataFrame:
    # 40 patients with 1-3 lesions; readers flip the true label with their own error rate.
    rng = np.random.default_rng(12)
    lesions_per_patient = rng.integers(1, 4, 40)
    patient = np.repeat(np.arange(40), lesions_per_patient)
    truth = rng.integers(0, 2, patient.size)
    rows = []
    for name, error in [("r1", 0.1), ("r2", 0.15), ("r3", 0.1), ("good", 0.1), ("poor", 0.45)]:
        flipped = np.where(rng.random(patient.size) < error, 1 - truth, truth)
        for lesion, (value, owner) in enumerate(zip(flipped, patient, strict=True)):
            rows.append((name, CATEGORIES[value], f"L{lesion}", f"P{owner}"))
    return pd.DataFrame(rows, columns=["reader", "label", "lesion_id", "patient_id"])


@pytest.fixture(scope="module")
def table(reads) -> pd.DataFrame:
    return reader_model_noninferiority(
        reads,
        radiologists=RADIOLOGISTS,
        models=["good", "poor"],
        categories=CATEGORIES,
        margin=0.1,
        seed=5,
        n_resamples=400,
    )


def labels(reads: pd.DataFrame, name: str) -> list:
    return list(reads[reads["reader"] == name].sort_values("lesion_id")["label"])


def kappa(reads, first, second) -> float:
    return cohen_kappa(labels(reads, first), labels(reads, second), categories=CATEGORIES).estimate


def test_layout(table):
    assert list(table.columns) == COLUMNS
    assert list(table["radiologist"]) == [*RADIOLOGISTS, POOLED] * 2
    assert list(table["model"]) == ["good"] * 4 + ["poor"] * 4


def test_kappas_match_cohen_kappa(reads, table):
    row = table[(table["model"] == "good") & (table["radiologist"] == "r2")].iloc[0]
    assert row["model_kappa"] == pytest.approx(kappa(reads, "good", "r2"))
    expected_human = (kappa(reads, "r2", "r1") + kappa(reads, "r2", "r3")) / 2
    assert row["human_kappa"] == pytest.approx(expected_human)
    assert row["difference"] == pytest.approx(row["model_kappa"] - row["human_kappa"])


def test_pooled_row(reads, table):
    row = table[(table["model"] == "poor") & (table["radiologist"] == POOLED)].iloc[0]
    machine = np.mean([kappa(reads, "poor", name) for name in RADIOLOGISTS])
    human = np.mean([kappa(reads, "r1", "r2"), kappa(reads, "r1", "r3"), kappa(reads, "r2", "r3")])
    assert row["model_kappa"] == pytest.approx(machine)
    assert row["human_kappa"] == pytest.approx(human)


def test_decision_follows_interval(table):
    expected = table["ci_low"] > -table["margin"]
    assert (table["noninferior"] == expected).all()
    # A reader that flips 45 % of labels is clearly worse than the panel.
    poor = table[table["model"] == "poor"]
    assert not poor["noninferior"].any()
    assert (poor["ci_high"] < 0).all()


def test_interval_is_the_cluster_bootstrap(reads, table):
    # The same seed resamples the same patients: an independent statistic over the same
    # clusters must reproduce the pooled row's interval.
    wide = reads.pivot_table(
        index=["patient_id", "lesion_id"], columns="reader", values="label", aggfunc="first"
    ).reset_index()
    codes = {name: (wide[name] == "present").to_numpy(float) for name in ["good", *RADIOLOGISTS]}

    def weighted_kappa(weights, a, b):
        total = weights.sum(axis=1)
        p_a = weights @ a / total
        p_b = weights @ b / total
        observed = (weights @ (a * b) + weights @ ((1 - a) * (1 - b))) / total
        expected = p_a * p_b + (1 - p_a) * (1 - p_b)
        return (observed - expected) / (1 - expected)

    def statistic(weights):
        machine = np.mean(
            [weighted_kappa(weights, codes["good"], codes[r]) for r in RADIOLOGISTS], axis=0
        )
        pairs = [("r1", "r2"), ("r1", "r3"), ("r2", "r3")]
        human = np.mean([weighted_kappa(weights, codes[a], codes[b]) for a, b in pairs], axis=0)
        return machine - human

    expected = cluster_bootstrap(statistic, wide["patient_id"].to_numpy(), n_resamples=400, seed=5)
    row = table[(table["model"] == "good") & (table["radiologist"] == POOLED)].iloc[0]
    assert row["ci_low"] == pytest.approx(expected.ci_low)
    assert row["ci_high"] == pytest.approx(expected.ci_high)
    assert row["n_patients"] == 40


def test_reproducible_from_seed(reads, table):
    again = reader_model_noninferiority(
        reads,
        radiologists=RADIOLOGISTS,
        models=["good", "poor"],
        categories=CATEGORIES,
        margin=0.1,
        seed=5,
        n_resamples=400,
    )
    pd.testing.assert_frame_equal(again, table)


def test_incomplete_lesions_dropped(reads):
    fewer = reads[~((reads["reader"] == "good") & (reads["lesion_id"] == "L0"))]
    table = reader_model_noninferiority(
        fewer,
        radiologists=RADIOLOGISTS,
        models=["good"],
        categories=CATEGORIES,
        margin=0.1,
        seed=5,
        n_resamples=50,
    )
    assert (table["n_lesions"] == reads["lesion_id"].nunique() - 1).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"radiologists": ["r1"]}, "at least 2 radiologists"),
        ({"models": ["absent_model"]}, "have no reads"),
        ({"margin": -0.1}, "margin"),
        ({"categories": ["absent"]}, "not in categories"),
    ],
)
def test_invalid_input_rejected(reads, options, message):
    arguments = {
        "radiologists": RADIOLOGISTS,
        "models": ["good"],
        "categories": CATEGORIES,
        "margin": 0.1,
        "seed": 1,
        "n_resamples": 20,
        **options,
    }
    with pytest.raises(UserInputError, match=message):
        reader_model_noninferiority(reads, **arguments)
