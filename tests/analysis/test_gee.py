"""GEE (statsmodels) against R geepack's geeglm on dietox."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.gee import gee
from study.errors import UserInputError

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"

# tests/analysis/r/dietox_geeglm.R (R 4.2.2, geepack 1.3.9). Terms: Intercept, Cu035, Cu175, Time.
GEEPACK = {
    "exchangeable": {
        "estimate": [15.422374318001, -0.835439643333, 1.773495964461, 6.942520383384],
        "se": [1.0250354471014, 1.5643402732825, 1.8766381127755, 0.0796124396295],
        "alpha": 0.7749971965372,
        "scale": 50.057632817,
    },
    "independence": {
        "estimate": [15.415625074316, -0.858999719877, 1.757666801458, 6.947183355727],
        "se": [1.0261915922162, 1.5656032243536, 1.8817747960912, 0.0799949067553],
        "alpha": np.nan,
        "scale": 50.0571817987,
    },
}
GEEPACK_BINOMIAL = {
    "estimate": [-11.3328145745592, -0.0628857434334, 0.9060005498244, 1.7008785384173],
    "se": [1.627062694434, 0.467137461746, 0.499636509659, 0.242288840189],
    "alpha": 0.12216013945,
}


@pytest.fixture(scope="module")
def dietox() -> pd.DataFrame:
    data = pd.read_csv(REFERENCE / "statsmodels_dietox.csv", index_col=0)
    data["heavy"] = (data["Weight"] > 60).astype(int)
    return data[["Weight", "heavy", "Time", "Cu", "Pig"]]


@pytest.mark.parametrize("correlation", ["exchangeable", "independence"])
def test_dietox_gaussian_matches_geepack(dietox, correlation):
    fit = gee(
        "Weight ~ C(Cu) + Time", dietox, groups="Pig", family="gaussian", correlation=correlation
    )
    expected = GEEPACK[correlation]
    np.testing.assert_allclose(fit.coefficients["estimate"], expected["estimate"], rtol=1e-5)
    np.testing.assert_allclose(fit.coefficients["se"], expected["se"], rtol=1e-5)
    assert fit.scale == pytest.approx(expected["scale"], rel=1e-6)
    np.testing.assert_allclose(fit.working_correlation, expected["alpha"], rtol=1e-5)
    assert fit.n_clusters == 72
    assert fit.n_obs == 861


def test_dietox_binomial_matches_geepack(dietox):
    fit = gee("heavy ~ C(Cu) + Time", dietox, groups="Pig", family="binomial")
    np.testing.assert_allclose(
        fit.coefficients["estimate"], GEEPACK_BINOMIAL["estimate"], rtol=1e-4
    )
    np.testing.assert_allclose(fit.coefficients["se"], GEEPACK_BINOMIAL["se"], rtol=1e-4)
    assert fit.working_correlation == pytest.approx(GEEPACK_BINOMIAL["alpha"], rel=1e-4)
    np.testing.assert_allclose(fit.coefficients["odds_ratio"], np.exp(fit.coefficients["estimate"]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"family": "gamma"}, "family must be one of"),
        ({"correlation": "ar1"}, "correlation must be one of"),
        ({"groups": "litter"}, "groups column"),
    ],
)
def test_invalid_options_rejected(dietox, options, message):
    arguments = {"groups": "Pig", **options}
    with pytest.raises(UserInputError, match=message):
        gee("Weight ~ Time", dietox, **arguments)


def test_random_term_rejected(dietox):
    with pytest.raises(UserInputError, match="random term"):
        gee("Weight ~ Time + (1|Pig)", dietox, groups="Pig")


def test_missing_values_dropped():
    # Feed is missing for the first visit of each of the 72 pigs.
    data = pd.read_csv(REFERENCE / "statsmodels_dietox.csv", index_col=0)
    fit = gee("Weight ~ Feed + Time", data, groups="Pig", family="gaussian")
    assert fit.n_obs == 861 - 72
    assert fit.n_clusters == 72
