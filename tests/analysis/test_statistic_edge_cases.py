"""Undefined statistics give NaN with a named warning; bad input raises a user-facing error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis._agreement_common import StatisticInputError, UndefinedStatisticWarning
from analysis.agreement import pabak
from analysis.fleiss import rating_counts
from analysis.gwet import conger_kappa, gwet_ac1
from analysis.icc import icc, icc_table
from analysis.krippendorff import krippendorff_alpha, krippendorff_alpha_from_counts
from study.errors import UserInputError

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"


def test_input_error_is_user_input_error():
    assert issubclass(StatisticInputError, UserInputError)
    assert issubclass(StatisticInputError, ValueError)


def test_icc_constant_ratings_nan():
    with pytest.warns(UndefinedStatisticWarning, match="ratings that do not vary"):
        table = icc_table([[3, 3], [3, 3], [3, 3]])
    assert table["estimate"].isna().all()


def test_icc_zero_denominator_nan_in_either_rater_order():
    # MSB + (MSJ - MSE) / n is zero here, so ICC2k is 0/0; rounding once gave +-2.5e16.
    ratings = [[1, 2], [1, 2], [1, 2], [2, 2], [3, 1]]
    with pytest.warns(UndefinedStatisticWarning, match="denominator is zero"):
        forward = icc(ratings, form="ICC2k").estimate
    with pytest.warns(UndefinedStatisticWarning, match="denominator is zero"):
        backward = icc([row[::-1] for row in ratings], form="ICC2k").estimate
    assert np.isnan(forward)
    assert np.isnan(backward)


def test_icc_perfect_agreement_is_one():
    result = icc([[1, 1], [2, 2], [5, 5]], form="ICC1")
    assert result.estimate == 1.0
    assert result.p_value == 0.0


def test_icc_missing_rejected():
    with pytest.raises(StatisticInputError, match="drop targets with a missing rating"):
        icc([[1, 2], [3, np.nan]])


def test_icc_unknown_form_rejected():
    with pytest.raises(StatisticInputError, match="form must be one of"):
        icc([[1, 2], [3, 4]], form="ICC4")


def test_gwet_no_pairable_subject_nan():
    with pytest.warns(UndefinedStatisticWarning, match="no subject has two ratings"):
        result = gwet_ac1([["a", None], [None, "b"]], categories=["a", "b"])
    assert np.isnan(result.estimate)


def test_conger_single_rating_rater_nan():
    with pytest.warns(UndefinedStatisticWarning, match="two raters"):
        result = conger_kappa([["a", None], ["b", None]], categories=["a", "b"])
    assert np.isnan(result.estimate)


def test_alpha_without_variation_nan():
    with pytest.warns(UndefinedStatisticWarning, match="no variation"):
        result = krippendorff_alpha([[1, 1], [1, 1]])
    assert np.isnan(result.estimate)


def test_alpha_labels_need_nominal_or_ordinal():
    with pytest.raises(StatisticInputError, match="needs numeric values"):
        krippendorff_alpha([["a", "b"], ["b", "b"]], level="interval")


def test_alpha_unknown_level_rejected():
    with pytest.raises(StatisticInputError, match="level must be one of"):
        krippendorff_alpha([[1, 2], [2, 2]], level="circular")


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_alpha_from_counts_matches(level):
    ratings = pd.read_csv(REFERENCE / "krippendorff2011_4coders_12units.csv").set_index("unit")
    categories = [1, 2, 3, 4, 5]
    counts = rating_counts(ratings, categories=categories)
    weights = np.ones((1, counts.shape[0]))
    from_counts = krippendorff_alpha_from_counts(counts, weights, level=level, values=categories)
    expected = krippendorff_alpha(ratings, level=level).estimate
    assert from_counts[0] == pytest.approx(expected, abs=1e-12)


def test_alpha_from_counts_weights_repeat_units():
    counts = np.array([[2, 0], [1, 1], [0, 3], [2, 1]])
    doubled = np.vstack([counts, counts[:1]])
    weighted = krippendorff_alpha_from_counts(counts, np.array([[2.0, 1.0, 1.0, 1.0]]))
    repeated = krippendorff_alpha_from_counts(doubled, np.ones((1, 5)))
    assert weighted[0] == pytest.approx(repeated[0], abs=1e-12)


def test_pabak_needs_two_categories():
    with pytest.raises(ValueError, match="at least two categories"):
        pabak(["a"], ["a"], categories=["a"])


def test_pabak_three_categories():
    # PABAK = (3 * 0.5 - 1) / 2 with half the cases agreeing.
    assert pabak(["a", "b", "c", "a"], ["a", "b", "a", "c"], categories=["a", "b", "c"]) == 0.25
