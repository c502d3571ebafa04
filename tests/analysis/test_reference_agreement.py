"""Agreement and reliability statistics against published values (irr, irrCAC, SAS, psych).

Tolerances are half a unit in the last published decimal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.inter_rater import aggregate_raters

from analysis.agreement import cohen_kappa_table, fleiss_kappa
from analysis.fleiss import rating_counts
from analysis.gwet import conger_kappa, gwet_ac1, gwet_ac2
from analysis.icc import ICC_FORMS, icc, icc_table
from analysis.krippendorff import krippendorff_alpha

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"
FIVE = [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def four_coders() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "krippendorff2011_4coders_12units.csv").set_index("unit")


@pytest.fixture(scope="module")
def four_coders_irrcac(four_coders) -> pd.DataFrame:
    # irrCAC's cac.raw4raters puts unit 12's single rating under Rater3, not Rater2.
    # Only Conger's kappa, which uses each rater's own marginals, sees the difference.
    moved = four_coders.copy()
    moved.loc[12, "Rater3"] = moved.loc[12, "Rater2"]
    moved.loc[12, "Rater2"] = np.nan
    return moved


def test_fleiss1971_category_totals():
    diagnoses = pd.read_csv(REFERENCE / "fleiss1971_diagnoses.csv").set_index("subject")
    totals = rating_counts(diagnoses, categories=FIVE).sum(axis=0)
    assert totals.tolist() == [26, 26, 30, 55, 43]
    statsmodels_totals = aggregate_raters(diagnoses.to_numpy())[0].sum(axis=0)
    assert totals.tolist() == statsmodels_totals.tolist()


def test_sas_one_sided_p():
    table = pd.read_csv(REFERENCE / "sas_kappa_table10_3x3.csv", index_col=0).to_numpy()
    result = cohen_kappa_table(table)
    # SAS prints one-sided Pr > Z 0.0006 and two-sided 0.0011.
    assert result.p_value / 2 == pytest.approx(0.0006, abs=5e-5)
    assert result.p_value == pytest.approx(0.0011, abs=5e-5)


@pytest.mark.parametrize(
    ("level", "expected"),
    [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)],
)
def test_krippendorff2011_alpha(four_coders, level, expected):
    result = krippendorff_alpha(four_coders, level=level)
    assert result.estimate == pytest.approx(expected, abs=5e-4)
    assert result.n_units == 11
    assert result.n_values == 40


def test_krippendorff2011_nominal_irrcac(four_coders):
    # irrCAC R prints 0.74342.
    assert krippendorff_alpha(four_coders).estimate == pytest.approx(0.74342, abs=5e-6)


def test_gwet_ac1_irrcac(four_coders):
    result = gwet_ac1(four_coders, categories=FIVE)
    assert result.percent_agreement == pytest.approx(0.8181818, abs=5e-8)
    assert result.chance_agreement == pytest.approx(0.1903212, abs=5e-8)
    assert result.estimate == pytest.approx(0.77544, abs=5e-6)
    assert result.se == pytest.approx(0.14295, abs=5e-6)
    assert result.ci_low == pytest.approx(0.461, abs=5e-4)
    assert result.ci_high == 1.0
    assert result.df == 11


def test_gwet_ac1_p_values(four_coders):
    result = gwet_ac1(four_coders, categories=FIVE)
    # Python irrCAC prints the two-sided 0.00021, R irrCAC the one-sided 0.0001043605.
    assert result.p_value == pytest.approx(0.00021, abs=5e-6)
    assert result.p_value / 2 == pytest.approx(0.0001043605, abs=5e-11)


@pytest.mark.parametrize(
    ("weights", "pa", "pe", "coefficient", "se"),
    [("linear", 0.939, 0.571, 0.859, 0.117), ("quadratic", 0.975, 0.714, 0.914, 0.104)],
)
def test_gwet_ac2_irrcac(four_coders, weights, pa, pe, coefficient, se):
    result = gwet_ac2(four_coders, categories=FIVE, weights=weights)
    assert result.percent_agreement == pytest.approx(pa, abs=5e-4)
    assert result.chance_agreement == pytest.approx(pe, abs=5e-4)
    assert result.estimate == pytest.approx(coefficient, abs=5e-4)
    assert result.se == pytest.approx(se, abs=5e-4)


def test_fleiss_gwet_version_irrcac(four_coders):
    # irrCAC fleiss.kappa.raw prints pa 0.8181818 and pe 0.2387153; kappa = (pa - pe)/(1 - pe).
    result = fleiss_kappa(four_coders, categories=FIVE)
    pe = 0.2387153
    assert (0.8181818 - pe) / (1 - pe) == pytest.approx(result.estimate, abs=5e-7)
    assert result.estimate == pytest.approx(0.76117, abs=5e-6)
    assert result.se == pytest.approx(0.15302, abs=5e-6)


def test_conger_kappa_irrcac(four_coders_irrcac):
    result = conger_kappa(four_coders_irrcac, categories=FIVE)
    assert result.estimate == pytest.approx(0.76282, abs=5e-6)
    assert result.chance_agreement == pytest.approx(0.2334252, abs=5e-8)
    assert result.se == pytest.approx(0.14917, abs=5e-6)
    assert result.percent_agreement == pytest.approx(0.8181818, abs=5e-8)


def test_conger_sees_rater_of_single_rating(four_coders, four_coders_irrcac):
    as_shipped = conger_kappa(four_coders, categories=FIVE)
    moved = conger_kappa(four_coders_irrcac, categories=FIVE)
    assert as_shipped.estimate != pytest.approx(moved.estimate, abs=1e-4)
    assert gwet_ac1(four_coders, categories=FIVE).estimate == pytest.approx(
        gwet_ac1(four_coders_irrcac, categories=FIVE).estimate, abs=1e-15
    )


# Shrout & Fleiss (1979) Table 4 / psych::ICC: estimate (4 dp computed, 2 dp published), F,
# df1, df2, p, CI.
SHROUT_FLEISS = {
    "ICC1": (0.1657, 1.8, 5, 18, 0.16472, -0.13, 0.72),
    "ICC2": (0.2898, 11.0, 5, 15, 0.00013, 0.02, 0.76),
    "ICC3": (0.7148, 11.0, 5, 15, 0.00013, 0.34, 0.95),
    "ICC1k": (0.4428, 1.8, 5, 18, 0.16472, -0.88, 0.91),
    "ICC2k": (0.6201, 11.0, 5, 15, 0.00013, 0.07, 0.93),
    "ICC3k": (0.9093, 11.0, 5, 15, 0.00013, 0.68, 0.99),
}
PUBLISHED_2DP = {
    "ICC1": 0.17,
    "ICC2": 0.29,
    "ICC3": 0.71,
    "ICC1k": 0.44,
    "ICC2k": 0.62,
    "ICC3k": 0.91,
}


@pytest.fixture(scope="module")
def judges() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "shrout_fleiss1979_icc.csv").set_index("target")


@pytest.mark.parametrize("form", ICC_FORMS)
def test_shrout_fleiss_icc(judges, form):
    estimate, f, df1, df2, p_value, low, high = SHROUT_FLEISS[form]
    result = icc(judges, form=form)
    assert result.estimate == pytest.approx(estimate, abs=5e-5)
    assert result.estimate == pytest.approx(PUBLISHED_2DP[form], abs=5e-3)
    assert result.f == pytest.approx(f, abs=0.05)
    assert (result.df1, result.df2) == (df1, df2)
    # The listed 0.16472 is the F tail at F rounded to 1.795; the unrounded F = 1.79468
    # gives 0.164769, so the p-values are compared within 5e-5.
    assert result.p_value == pytest.approx(p_value, abs=5e-5)
    assert result.p_value == pytest.approx(stats.f.sf(result.f, df1, df2), rel=1e-12)
    assert result.ci_low == pytest.approx(low, abs=5e-3)
    assert result.ci_high == pytest.approx(high, abs=5e-3)


def test_shrout_fleiss_mean_squares(judges):
    # BMS 11.2417, WMS 6.2639, JMS 32.4861, EMS 1.0194: F1 = BMS/WMS, F3 = BMS/EMS.
    table = icc_table(judges).set_index("form")
    assert table.loc["ICC1", "f"] == pytest.approx(11.2417 / 6.2639, rel=1e-4)
    assert table.loc["ICC3", "f"] == pytest.approx(11.2417 / 1.0194, rel=1e-4)
    assert list(table.index) == list(ICC_FORMS)
