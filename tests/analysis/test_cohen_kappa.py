"""Cohen's kappa against SAS PROC FREQ, scikit-learn and hand-worked tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from analysis.agreement import (
    UndefinedStatisticWarning,
    cohen_kappa,
    cohen_kappa_table,
    kappa_from_tables,
    percent_agreement,
)

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"


@pytest.fixture(scope="module")
def sas_table() -> np.ndarray:
    return pd.read_csv(REFERENCE / "sas_kappa_table10_3x3.csv", index_col=0).to_numpy()


def test_sas_unweighted(sas_table):
    # SAS PROC FREQ printout, 4 decimals: tolerance 5e-5.
    result = cohen_kappa_table(sas_table)
    assert result.estimate == pytest.approx(0.4842, abs=5e-5)
    assert result.se == pytest.approx(0.1380, abs=5e-5)
    assert result.ci_low == pytest.approx(0.2137, abs=5e-5)
    assert result.ci_high == pytest.approx(0.7547, abs=5e-5)
    assert result.se0 == pytest.approx(0.1484, abs=5e-5)
    assert result.z == pytest.approx(3.2626, abs=5e-5)
    assert result.p_value == pytest.approx(0.0011, abs=5e-5)
    assert result.n == 19


def test_sas_linear_weighted(sas_table):
    result = cohen_kappa_table(sas_table, weights="linear")
    assert result.estimate == pytest.approx(0.4701, abs=5e-5)
    assert result.se == pytest.approx(0.1457, abs=5e-5)
    assert result.ci_low == pytest.approx(0.1845, abs=5e-5)
    assert result.ci_high == pytest.approx(0.7558, abs=5e-5)
    assert result.se0 == pytest.approx(0.1426, abs=5e-5)
    assert result.z == pytest.approx(3.2971, abs=5e-5)


def test_weight_matrix_equals_named(sas_table):
    linear = np.array([[1, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 1]])
    assert cohen_kappa_table(sas_table, weights=linear) == cohen_kappa_table(
        sas_table, weights="linear"
    )
    assert cohen_kappa_table(sas_table, weights=np.eye(3)) == cohen_kappa_table(sas_table)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_labels_match_scikit_learn(weights):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 60)
    b = np.where(rng.random(60) < 0.6, a, rng.integers(0, 4, 60))
    ours = cohen_kappa(a.tolist(), b.tolist(), categories=[0, 1, 2, 3], weights=weights)
    assert ours.estimate == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)


def test_unused_category_changes_nothing_unweighted():
    a = ["x", "y", "y", "x", "y"]
    b = ["x", "y", "x", "x", "y"]
    small = cohen_kappa(a, b, categories=["x", "y"])
    large = cohen_kappa(a, b, categories=["x", "y", "z"])
    assert small.estimate == pytest.approx(large.estimate)
    assert small.se == pytest.approx(large.se)


def test_label_outside_categories_rejected():
    with pytest.raises(
        ValueError, match=r"'maybe' is not one of the categories \['absent', 'present'\]"
    ):
        cohen_kappa(["absent", "maybe"], ["absent", "present"], categories=["absent", "present"])


def test_missing_label_rejected():
    with pytest.raises(ValueError, match="missing rating at position 1"):
        cohen_kappa(["absent", None], ["absent", "present"], categories=["absent", "present"])


def test_length_mismatch_rejected():
    with pytest.raises(ValueError, match="same length"):
        cohen_kappa(["a"], ["a", "b"], categories=["a", "b"])


def test_bad_weights_rejected():
    with pytest.raises(ValueError, match="'cubic'"):
        cohen_kappa_table(np.eye(2), weights="cubic")
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        cohen_kappa_table(np.eye(2), weights=np.eye(3))


def test_single_category_is_nan_with_warning():
    with pytest.warns(UndefinedStatisticWarning, match="expected agreement is 1"):
        result = cohen_kappa(["a", "a"], ["a", "a"], categories=["a", "b"])
    assert np.isnan(result.estimate)
    assert np.isnan(result.se)


def test_empty_table_is_nan_with_warning():
    with pytest.warns(UndefinedStatisticWarning):
        result = cohen_kappa_table(np.zeros((2, 2)))
    assert np.isnan(result.estimate)


def test_perfect_agreement():
    # Two categories, all on the diagonal: kappa 1 and an ASE of 0 by the formula.
    result = cohen_kappa_table([[3, 0], [0, 5]])
    assert result.estimate == 1.0
    assert result.se == pytest.approx(0.0, abs=1e-12)


def test_hand_worked_2x2():
    # po = (20+15)/50 = 0.7; pe = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.2/0.5 = 0.4.
    result = cohen_kappa_table([[20, 5], [10, 15]])
    assert result.estimate == pytest.approx(0.4)


def test_batch_matches_single(sas_table):
    rng = np.random.default_rng(1)
    tables = rng.integers(0, 9, size=(5, 4, 3, 3)).astype(float)
    batch = kappa_from_tables(tables)
    assert batch.shape == (5, 4)
    for index in np.ndindex(5, 4):
        assert batch[index] == pytest.approx(cohen_kappa_table(tables[index]).estimate)
    assert kappa_from_tables(sas_table) == pytest.approx(0.4841628959276017)


def test_batch_fractional_counts():
    # Doubling every count (bootstrap multiplicity 2) leaves kappa unchanged.
    table = np.array([[4.0, 1.0], [2.0, 3.0]])
    assert kappa_from_tables(table * 2.5) == pytest.approx(kappa_from_tables(table))


def test_batch_undefined_is_nan():
    tables = np.array([[[2.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    assert np.isnan(kappa_from_tables(tables)).all()


def test_percent_agreement_values():
    assert percent_agreement(["a", "b", "c"], ["a", "b", "b"]) == pytest.approx(2 / 3)
    with pytest.warns(UndefinedStatisticWarning):
        assert np.isnan(percent_agreement([], []))
