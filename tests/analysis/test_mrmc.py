"""OR-Hillis MRMC on the Van Dyke data and its invariants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.mrmc import or_mrmc
from study.errors import UserInputError

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"

# tests/analysis/r/vandyke_or.R: AUCs from R pROC 1.18 and the OR-Hillis formulas written out
# in R, an implementation independent of analysis/mrmc.py. RJafroc is not in Debian, so its
# output could not be run here.
AUC = [
    [0.919645732689, 0.858776167472, 0.903864734300, 0.973107890499, 0.829790660225],
    [0.947826086957, 0.905314009662, 0.921739130435, 0.999355877617, 0.929951690821],
]
COVARIANCES = {
    "var": 0.000802288265572,
    "cov1": 0.000346613709441,
    "cov2": 0.000344074828861,
    "cov3": 0.000239028370892,
}
F_STATISTIC, DDF, P_VALUE = 4.45631869316, 15.2596745891, 0.0516656858193
DIFFERENCE, SE, CI = -0.0438003220612, 0.0207486183789, (-0.0879594985666, 0.000358854444171)


@pytest.fixture(scope="module")
def vandyke() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "vandyke_long.csv")


@pytest.fixture(scope="module")
def result(vandyke):
    return or_mrmc(vandyke)


def test_vandyke_aucs(result):
    table = result.auc.pivot(index="modality", columns="reader", values="auc")
    np.testing.assert_allclose(table.to_numpy(), AUC, atol=1e-11)


def test_vandyke_covariances(result):
    for name, value in COVARIANCES.items():
        assert result.variance_components[name] == pytest.approx(value, rel=1e-9), name


def test_vandyke_f_test(result):
    assert result.f_statistic == pytest.approx(F_STATISTIC, rel=1e-9)
    assert result.df_num == 1
    assert result.df_den == pytest.approx(DDF, rel=1e-9)
    assert result.p_value == pytest.approx(P_VALUE, rel=1e-8)


def test_vandyke_difference(result):
    row = result.differences.iloc[0]
    assert row["estimate"] == pytest.approx(DIFFERENCE, abs=1e-11)
    assert row["se"] == pytest.approx(SE, rel=1e-9)
    assert row["ci_low"] == pytest.approx(CI[0], rel=1e-8)
    assert row["ci_high"] == pytest.approx(CI[1], rel=1e-6)
    # With two modalities the squared t of the difference is the F statistic.
    assert row["t"] ** 2 == pytest.approx(result.f_statistic)


def test_vandyke_modality_means(result):
    np.testing.assert_allclose(
        result.modality_auc["estimate"], [0.897037037037, 0.940837359098], atol=1e-11
    )
    assert (result.modality_auc["ci_low"] < result.modality_auc["estimate"]).all()


def test_swapping_modalities_flips_difference(vandyke, result):
    swapped = vandyke.assign(modality=1 - vandyke["modality"])
    other = or_mrmc(swapped)
    assert other.differences["estimate"].iloc[0] == pytest.approx(-DIFFERENCE)
    assert other.f_statistic == pytest.approx(result.f_statistic)


def test_case_order_invariant(vandyke, result):
    shuffled = vandyke.sample(frac=1.0, random_state=np.random.RandomState(3))
    assert or_mrmc(shuffled).f_statistic == pytest.approx(result.f_statistic, rel=1e-12)


def test_incomplete_design_rejected(vandyke):
    with pytest.raises(UserInputError, match="fully crossed"):
        or_mrmc(vandyke.iloc[1:])


def test_inconsistent_truth_rejected(vandyke):
    broken = vandyke.copy()
    broken.loc[0, "truth"] = 1 - broken.loc[0, "truth"]
    with pytest.raises(UserInputError, match="different truth"):
        or_mrmc(broken)


def test_single_reader_rejected(vandyke):
    with pytest.raises(UserInputError, match="at least 2 readers"):
        or_mrmc(vandyke[vandyke["reader"] == 1])
