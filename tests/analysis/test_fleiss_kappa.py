"""Fleiss' kappa against R irr, irrCAC and statsmodels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

from analysis.agreement import UndefinedStatisticWarning, fleiss_kappa, fleiss_kappa_from_counts

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"


@pytest.fixture(scope="module")
def diagnoses() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "fleiss1971_diagnoses.csv").drop(columns="subject")


@pytest.fixture(scope="module")
def four_coders() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "krippendorff2011_4coders_12units.csv").drop(columns="unit")


def test_fleiss1971_irr(diagnoses):
    # R irr::kappam.fleiss(diagnoses): kappa 0.4302445 (7 decimals), z 17.65183 (5 decimals).
    result = fleiss_kappa(diagnoses, categories=[1, 2, 3, 4, 5])
    assert result.estimate == pytest.approx(0.4302445, abs=5e-8)
    assert result.z == pytest.approx(17.65183, abs=5e-6)
    assert result.n_subjects == 30
    assert result.n_raters == 6


def test_fleiss1971_statsmodels(diagnoses):
    table, _ = aggregate_raters(diagnoses.to_numpy())
    expected = statsmodels_fleiss(table, method="fleiss")
    assert fleiss_kappa(diagnoses, categories=[1, 2, 3, 4, 5]).estimate == pytest.approx(
        expected, abs=1e-12
    )


def test_missing_ratings_irrcac(four_coders):
    # irrCAC fleiss.kappa.raw on Krippendorff's 4-coder example: coef 0.76117, SE 0.15302.
    result = fleiss_kappa(four_coders, categories=[1, 2, 3, 4, 5])
    assert result.estimate == pytest.approx(0.76117, abs=5e-6)
    assert result.se == pytest.approx(0.15302, abs=5e-6)
    assert result.n_subjects == 12


def test_complete_data_h0_se_matches_irr_formula(diagnoses):
    # irr: SE = sqrt(2) / (sum pq * sqrt(n m (m-1))) * sqrt((sum pq)^2 - sum pq (1 - 2p)).
    result = fleiss_kappa(diagnoses, categories=[1, 2, 3, 4, 5])
    table, _ = aggregate_raters(diagnoses.to_numpy())
    p = table.sum(axis=0) / table.sum()
    pq = p * (1 - p)
    expected = (
        np.sqrt(2)
        / (pq.sum() * np.sqrt(30 * 6 * 5))
        * np.sqrt(pq.sum() ** 2 - (pq * (1 - 2 * p)).sum())
    )
    assert result.se0 == pytest.approx(expected, rel=1e-12)


def test_all_missing_subject_dropped(four_coders):
    padded = pd.concat([four_coders, pd.DataFrame([[np.nan] * 4], columns=four_coders.columns)])
    assert fleiss_kappa(padded, categories=[1, 2, 3, 4, 5]).estimate == pytest.approx(
        fleiss_kappa(four_coders, categories=[1, 2, 3, 4, 5]).estimate
    )


def test_counts_with_unit_weights_match(four_coders):
    counts = np.stack([(four_coders == c).sum(axis=1).to_numpy() for c in [1, 2, 3, 4, 5]], 1)
    batch = fleiss_kappa_from_counts(counts, np.ones((3, 12)))
    assert batch == pytest.approx([0.7611692754224112] * 3, abs=1e-12)


def test_counts_weights_equal_repeated_subjects(diagnoses):
    counts, _ = aggregate_raters(diagnoses.to_numpy())
    multiplicity = np.arange(30) % 3
    repeated = diagnoses.loc[np.repeat(np.arange(30), multiplicity)]
    expected = fleiss_kappa(repeated, categories=[1, 2, 3, 4, 5]).estimate
    assert fleiss_kappa_from_counts(counts, multiplicity[None, :]) == pytest.approx([expected])


def test_counts_weights_shape_checked():
    with pytest.raises(ValueError, match="weights must have shape"):
        fleiss_kappa_from_counts(np.ones((4, 2)), np.ones((2, 3)))


def test_one_category_is_nan_with_warning():
    with pytest.warns(UndefinedStatisticWarning, match="undefined"):
        result = fleiss_kappa([["a", "a"], ["a", "a"]], categories=["a", "b"])
    assert np.isnan(result.estimate)


def test_label_outside_categories_rejected():
    with pytest.raises(ValueError, match="'c' is not one of the categories"):
        fleiss_kappa([["a", "c"], ["b", "b"]], categories=["a", "b"])
