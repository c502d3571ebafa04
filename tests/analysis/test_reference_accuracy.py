"""Accuracy, ROC, paired tests and p-value adjustment against pROC, R and statsmodels."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import cochrans_q as statsmodels_cochrans_q
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from analysis._agreement_common import StatisticInputError, UndefinedStatisticWarning
from analysis.accuracy import diagnostic_accuracy, proportion_ci
from analysis.multiplicity import ADJUSTMENTS, adjust_pvalues
from analysis.paired_tests import cochran_q, mcnemar
from analysis.roc import delong_test, roc_auc

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"
PROC_TOL = 1.5e-8  # testthat's expect_equal default, used by pROC's tests


@pytest.fixture(scope="module")
def asah() -> pd.DataFrame:
    data = pd.read_csv(REFERENCE / "pROC_aSAH.csv")
    data["case"] = (data["outcome"] == "Poor").astype(int)
    return data


def test_asah_counts(asah):
    assert int(asah["case"].sum()) == 41
    assert int((asah["case"] == 0).sum()) == 72


@pytest.mark.parametrize(
    ("marker", "expected"),
    [("wfns", 0.823678861788618), ("ndka", 0.611957994579946), ("s100b", 0.731368563685637)],
)
def test_proc_auc(asah, marker, expected):
    result = roc_auc(asah["case"], asah[marker])
    assert result.estimate == pytest.approx(expected, abs=PROC_TOL)
    assert result.ci_low < result.estimate < result.ci_high


@pytest.mark.parametrize(
    ("first", "second", "z", "p_value", "low", "high"),
    [
        (
            "wfns",
            "s100b",
            2.20898359144091,
            0.0271757822291882,
            0.0104061769564846,
            0.174214419249478,
        ),
        (
            "wfns",
            "ndka",
            2.79777591868904,
            0.00514557970691098,
            0.0634011709339876,
            0.3600405634833566,
        ),
        (
            "ndka",
            "s100b",
            -1.39077002573558,
            0.164295175223054,
            -0.2876917446341914,
            0.0488706064228094,
        ),
    ],
)
def test_proc_paired_delong(asah, first, second, z, p_value, low, high):
    result = delong_test(asah["case"], asah[first], asah[second])
    assert result.z == pytest.approx(z, abs=PROC_TOL)
    assert result.p_value == pytest.approx(p_value, abs=PROC_TOL)
    assert result.ci_low == pytest.approx(low, abs=PROC_TOL)
    assert result.ci_high == pytest.approx(high, abs=PROC_TOL)
    assert result.paired


def test_proc_paired_one_sided(asah):
    result = delong_test(asah["case"], asah["wfns"], asah["s100b"], alternative="greater")
    assert result.p_value == pytest.approx(0.0135878911145941, abs=PROC_TOL)
    less = delong_test(asah["case"], asah["wfns"], asah["s100b"], alternative="less")
    assert less.p_value == pytest.approx(1 - 0.0135878911145941, abs=PROC_TOL)


def test_unpaired_delong_welch_df(asah):
    result = delong_test(asah["case"], asah["wfns"], asah["s100b"], paired=False)
    v1 = roc_auc(asah["case"], asah["wfns"]).se ** 2
    v2 = roc_auc(asah["case"], asah["s100b"]).se ** 2
    # pROC R/delong.R: df = (V1 + V2)^2 / (V1^2/(N1 - 1) + V2^2/(N2 - 1)), N = 113 cases.
    assert result.df == pytest.approx((v1 + v2) ** 2 / ((v1**2 + v2**2) / 112), rel=1e-12)
    assert result.z == pytest.approx(
        (0.823678861788618 - 0.731368563685637) / np.sqrt(v1 + v2), abs=1e-12
    )
    # Ignoring the pairing inflates the variance, so the unpaired p-value is larger.
    assert result.p_value > delong_test(asah["case"], asah["wfns"], asah["s100b"]).p_value
    assert np.isnan(result.ci_low)


def test_unpaired_delong_separate_samples(asah):
    first, second = asah.iloc[:60], asah.iloc[60:]
    result = delong_test(
        first["case"], first["wfns"], second["wfns"], y_true2=second["case"], paired=False
    )
    assert result.auc1 == pytest.approx(roc_auc(first["case"], first["wfns"]).estimate)
    assert result.auc2 == pytest.approx(roc_auc(second["case"], second["wfns"]).estimate)
    assert 0 < result.p_value < 1


def test_auc_matches_mann_whitney(asah):
    from scipy.stats import mannwhitneyu

    cases = asah.loc[asah["case"] == 1, "wfns"]
    controls = asah.loc[asah["case"] == 0, "wfns"]
    u = mannwhitneyu(cases, controls).statistic
    assert roc_auc(asah["case"], asah["wfns"]).estimate == pytest.approx(u / (41 * 72))


def test_delong_rejects_single_class():
    with pytest.raises(StatisticInputError, match="at least 2 cases and 2 controls"):
        roc_auc([1, 1, 1], [0.2, 0.4, 0.5])


@pytest.fixture(scope="module")
def presidential() -> np.ndarray:
    data = pd.read_csv(REFERENCE / "mcnemar_agresti_presidential.csv")
    return data.pivot(index="first", columns="second", values="count").to_numpy()


def test_mcnemar_corrected(presidential):
    result = mcnemar(presidential)
    assert result.statistic == pytest.approx(16.818, abs=5e-4)
    assert result.p_value == pytest.approx(4.115e-05, abs=5e-8)
    assert result.df == 1


def test_mcnemar_uncorrected(presidential):
    result = mcnemar(presidential, correction=False)
    assert result.statistic == pytest.approx(17.356, abs=5e-4)
    assert result.p_value == pytest.approx(3.099e-05, abs=5e-8)


def test_mcnemar_exact(presidential):
    result = mcnemar(presidential, exact=True)
    assert result.p_value == pytest.approx(3.716e-05, abs=5e-8)
    assert result.statistic == 86


def test_mcnemar_no_discordant_pairs():
    assert mcnemar([[5, 0], [0, 7]]).p_value == 1.0
    assert mcnemar([[5, 0], [0, 7]], exact=True).p_value == 1.0


def test_mcnemar_rejects_bad_table():
    with pytest.raises(StatisticInputError, match="2x2 table"):
        mcnemar([[1, 2, 3], [4, 5, 6]])


def test_cochran_q_matches_statsmodels():
    rng = np.random.default_rng(20261204)
    outcomes = (rng.random((40, 4)) < [0.5, 0.6, 0.7, 0.4]).astype(int)
    ours = cochran_q(outcomes)
    theirs = statsmodels_cochrans_q(outcomes)
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-12)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-12)
    assert ours.df == theirs.df


def test_cochran_q_two_conditions_is_uncorrected_mcnemar():
    rng = np.random.default_rng(7)
    outcomes = (rng.random((50, 2)) < [0.4, 0.7]).astype(int)
    table = pd.crosstab(outcomes[:, 0], outcomes[:, 1]).to_numpy()
    assert cochran_q(outcomes).statistic == pytest.approx(
        mcnemar(table, correction=False).statistic, rel=1e-12
    )


def test_cochran_q_constant_rows_undefined():
    with pytest.warns(UndefinedStatisticWarning):
        result = cochran_q([[1, 1, 1], [0, 0, 0]])
    assert np.isnan(result.statistic)


@pytest.fixture(scope="module")
def raw_p() -> np.ndarray:
    return pd.read_csv(REFERENCE / "multtest_pvals10.csv")["p"].to_numpy()


# multtest::mt.rawp2adjp on the ten p-values, sorted (statsmodels res_multtest1).
MULTTEST = np.array(
    [
        [
            5.23656777208e-4,
            5.23656777208e-4,
            5.23656777208e-4,
            5.2353339704891422e-4,
            5.2353339704891422e-4,
            5.23656777208e-4,
            1.5337740764175588e-3,
        ],
        [
            2.8140506198e-3,
            2.53264555782e-3,
            2.53264555782e-3,
            2.8104897961789277e-3,
            2.5297966317768816e-3,
            1.4070253099e-3,
            4.1211324652269442e-3,
        ],
        [
            1.49877310796e-1,
            1.199018486368e-1,
            1.199018486368e-1,
            1.4016246580579017e-1,
            1.1379719679449507e-1,
            4.995910359866667e-2,
            1.4632862843720582e-1,
        ],
        [
            2.02732688798e-1,
            1.419128821586e-1,
            1.419128821586e-1,
            1.8520270949069695e-1,
            1.3356756197485375e-1,
            5.06831721995e-2,
            1.4844940238274187e-1,
        ],
        [1, 1, 0.967833824309, 0.8576076342605613, 0.6894782512235664, 0.354193905446, 1],
    ]
)
MULTTEST_COLUMNS = ["bonferroni", "holm", "hochberg", "sidak", "sidak_stepdown", "bh", "by"]


@pytest.mark.parametrize("method", MULTTEST_COLUMNS)
def test_multtest_reference(raw_p, method):
    adjusted = adjust_pvalues(np.sort(raw_p), method=method)
    column = MULTTEST_COLUMNS.index(method)
    np.testing.assert_allclose(adjusted[:5], MULTTEST[:, column], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(
    ("method", "tail"),
    [
        ("bonferroni", [1, 1, 1, 1, 1]),
        ("holm", [1, 1, 1, 1, 1]),
        ("hochberg", [0.967833824309] * 5),
        (
            "bh",
            [0.895336727975, 0.895336727975, 0.895336727975, 0.9317126306144445, 0.967833824309],
        ),
        ("by", [1, 1, 1, 1, 1]),
    ],
)
def test_multtest_reference_tail(raw_p, method, tail):
    adjusted = adjust_pvalues(np.sort(raw_p), method=method)
    np.testing.assert_allclose(adjusted[5:], tail, rtol=1e-12)


STATSMODELS_NAMES = {
    "bonferroni": "bonferroni",
    "holm": "holm",
    "hochberg": "simes-hochberg",
    "sidak": "sidak",
    "sidak_stepdown": "holm-sidak",
    "bh": "fdr_bh",
    "by": "fdr_by",
}


@pytest.mark.parametrize("method", ADJUSTMENTS)
def test_adjust_keeps_input_order(raw_p, method):
    adjusted = adjust_pvalues(raw_p, method=method)
    expected = multipletests(raw_p, method=STATSMODELS_NAMES[method])[1]
    np.testing.assert_allclose(adjusted, expected, rtol=1e-12)


@pytest.mark.parametrize("method", ADJUSTMENTS)
def test_adjust_nan_stays_nan(raw_p, method):
    with_nan = np.concatenate([raw_p[:4], [np.nan], raw_p[4:], [np.nan]])
    adjusted = adjust_pvalues(with_nan, method=method)
    assert np.isnan(adjusted[4])
    assert np.isnan(adjusted[-1])
    kept = np.delete(adjusted, [4, with_nan.size - 1])
    np.testing.assert_allclose(kept, adjust_pvalues(raw_p, method=method), rtol=1e-15)


def test_adjust_all_nan():
    assert np.isnan(adjust_pvalues([np.nan, np.nan], method="bh")).all()


def test_adjust_rejects_bad_input():
    with pytest.raises(StatisticInputError, match="method must be one of"):
        adjust_pvalues([0.1], method="fdr")
    with pytest.raises(StatisticInputError, match=r"must lie in \[0, 1\]"):
        adjust_pvalues([0.1, 1.5], method="holm")


@pytest.mark.parametrize(
    ("method", "statsmodels_method"), [("wilson", "wilson"), ("exact", "beta")]
)
@pytest.mark.parametrize(("successes", "n"), [(0, 10), (3, 10), (10, 10), (41, 113), (1, 1)])
def test_proportion_ci_matches_statsmodels(method, statsmodels_method, successes, n):
    result = proportion_ci(successes, n, method=method)
    low, high = proportion_confint(successes, n, alpha=0.05, method=statsmodels_method)
    assert result.ci_low == pytest.approx(low, abs=1e-12)
    assert result.ci_high == pytest.approx(high, abs=1e-12)


def test_proportion_ci_empty_is_nan():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = proportion_ci(0, 0)
    assert np.isnan(result.estimate)
    assert any(issubclass(w.category, UndefinedStatisticWarning) for w in caught)


def test_diagnostic_accuracy_counts(asah):
    # wfns >= 3 as a positive test for a poor outcome.
    table = diagnostic_accuracy(asah["case"], (asah["wfns"] >= 3).astype(int), method="exact")
    rows = table.set_index("statistic")
    tp = int(((asah["case"] == 1) & (asah["wfns"] >= 3)).sum())
    tn = int(((asah["case"] == 0) & (asah["wfns"] < 3)).sum())
    assert rows.loc["sensitivity", "successes"] == tp
    assert rows.loc["sensitivity", "n"] == 41
    assert rows.loc["specificity", "successes"] == tn
    assert rows.loc["specificity", "n"] == 72
    assert rows.loc["accuracy", "estimate"] == pytest.approx((tp + tn) / 113)
    assert list(rows.index) == ["sensitivity", "specificity", "ppv", "npv", "accuracy"]
    assert (rows["ci_low"] <= rows["estimate"]).all()
    assert (rows["estimate"] <= rows["ci_high"]).all()


def test_diagnostic_accuracy_rejects_missing():
    with pytest.raises(StatisticInputError, match="missing value at position 1"):
        diagnostic_accuracy([1, None, 0], [1, 0, 0])
