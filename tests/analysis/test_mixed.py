"""The formula interface and lmer (statsmodels MixedLM) against lme4 on sleepstudy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.glmm import fit_glmm
from analysis.mixed import RandomTerm, glmer, lmer, odds_ratios, parse_formula
from study.errors import UserInputError

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"


@pytest.fixture(scope="module")
def sleepstudy() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "lme4_sleepstudy.csv")


@pytest.fixture(scope="module")
def reml_fit(sleepstudy):
    return lmer("Reaction ~ Days + (Days|Subject)", sleepstudy)


@pytest.fixture(scope="module")
def ml_fit(sleepstudy):
    return lmer("Reaction ~ Days + (Days|Subject)", sleepstudy, reml=False)


def component(fit, var1: str, var2: str = "") -> pd.Series:
    table = fit.variance_components
    return table[(table["var1"] == var1) & (table["var2"] == var2)].iloc[0]


@pytest.mark.parametrize(
    ("formula", "response", "fixed", "random"),
    [
        (
            "correct ~ strategy + sequences + feature + (1|patient_id)",
            "correct",
            "strategy + sequences + feature",
            (RandomTerm("1", "patient_id"),),
        ),
        ("y ~ (1|a) + x + (1 | b)", "y", "x", (RandomTerm("1", "a"), RandomTerm("1", "b"))),
        ("y ~ (Days|Subject)", "y", "1", (RandomTerm("Days", "Subject"),)),
    ],
)
def test_parse_formula(formula, response, fixed, random):
    parsed = parse_formula(formula)
    assert parsed.response == response
    assert parsed.fixed == fixed
    assert parsed.random == random


@pytest.mark.parametrize(
    ("formula", "message"),
    [("y + x", "exactly one"), (" ~ x + (1|g)", "no response"), ("y ~ x", "no random term")],
)
def test_parse_formula_rejects(formula, message):
    with pytest.raises(UserInputError, match=message):
        parse_formula(formula)


def test_sleepstudy_reml_fixef(reml_fit):
    # lme4 tests/lmer-1.R (tol 1e-13 there; statsmodels' optimiser gives about 1e-6).
    estimates = reml_fit.fixed_effects["estimate"].to_numpy()
    np.testing.assert_allclose(estimates, [251.405104848485, 10.467285959595], atol=1e-5)


def test_sleepstudy_reml_criterion(reml_fit):
    # lme4 tests/REMLdev.R.
    assert reml_fit.criterion == pytest.approx(1743.6282722424, abs=1e-4)
    assert reml_fit.reml


def test_sleepstudy_reml_standard_deviations(reml_fit):
    # lme4 man/utilities.Rd, 3 decimals. Its 24.740 is lme4 1.1-31's own 24.74066 cut, not
    # rounded (tests/analysis/r/sleepstudy_lmer.R), so the intercept SD is held to that value.
    assert component(reml_fit, "(Intercept)")["sdcor"] == pytest.approx(24.7406579949841, abs=2e-4)
    assert component(reml_fit, "Days")["sdcor"] == pytest.approx(5.922, abs=5e-4)
    assert component(reml_fit, "(Intercept)", "Days")["sdcor"] == pytest.approx(0.066, abs=5e-4)
    assert component(reml_fit, "")["sdcor"] == pytest.approx(25.592, abs=5e-4)


def test_sleepstudy_reml_standard_errors(reml_fit):
    # tests/analysis/r/sleepstudy_lmer.R (lme4 1.1-31).
    np.testing.assert_allclose(
        reml_fit.fixed_effects["se"], [6.82459669495, 1.54578964391], rtol=1e-5
    )
    covariance = reml_fit.covariance
    correlation = covariance[0, 1] / np.sqrt(covariance[0, 0] * covariance[1, 1])
    # lme4 tests/lmer-1.R: corr(fixef) -0.1375 (tol 4e-4).
    assert correlation == pytest.approx(-0.1375, abs=4e-4)


def test_sleepstudy_ml(ml_fit):
    # lme4 tests/REMLdev.R and the MixedModels.jl documentation.
    assert ml_fit.criterion == pytest.approx(1751.939, abs=5e-4)
    assert ml_fit.log_likelihood == pytest.approx(-875.96967, abs=5e-5)
    assert component(ml_fit, "(Intercept)")["vcov"] == pytest.approx(565.51066, rel=5e-5)
    assert component(ml_fit, "Days")["vcov"] == pytest.approx(32.68212, rel=5e-5)
    assert component(ml_fit, "")["vcov"] == pytest.approx(654.94145, rel=5e-6)
    assert component(ml_fit, "(Intercept)", "Days")["sdcor"] == pytest.approx(0.08, abs=5e-3)
    np.testing.assert_allclose(ml_fit.fixed_effects["se"], [6.63226, 1.50224], atol=5e-5)


def test_sleepstudy_ml_information_criteria(ml_fit):
    # lme4 tests/lmer-1.R: AIC 1763.94, BIC 1783.1 for m1.
    assert ml_fit.aic == pytest.approx(1763.94, abs=5e-3)
    assert ml_fit.bic == pytest.approx(1783.1, abs=5e-2)


def test_sleepstudy_random_intercept(sleepstudy):
    fit = lmer("Reaction ~ Days + (1|Subject)", sleepstudy)
    # Published: fixef 251.4051, 10.4673; SE 9.7467, 0.8042; REML criterion 1786.5.
    np.testing.assert_allclose(fit.fixed_effects["estimate"], [251.4051, 10.4673], atol=5e-5)
    np.testing.assert_allclose(fit.fixed_effects["se"], [9.7467, 0.8042], atol=5e-5)
    assert fit.criterion == pytest.approx(1786.5, abs=0.05)
    # tests/analysis/r/sleepstudy_lmer.R: variances 1378.17851381 and 960.45657856.
    assert component(fit, "(Intercept)")["vcov"] == pytest.approx(1378.17851381, rel=1e-5)
    assert component(fit, "")["vcov"] == pytest.approx(960.45657856, rel=1e-5)


def test_lmer_rejects_two_random_terms(sleepstudy):
    with pytest.raises(UserInputError, match="one random term"):
        lmer("Reaction ~ Days + (1|Subject) + (0 + Days|Subject)", sleepstudy)


def test_glmer_equals_fit_glmm():
    rng = np.random.default_rng(9)
    data = pd.DataFrame(
        {"patient_id": np.repeat(np.arange(60), 6), "strategy": np.tile(["cot", "zero"], 180)}
    )
    eta = 0.4 + 0.5 * (data["strategy"] == "zero") + rng.normal(0, 1, 60)[data["patient_id"]]
    data["correct"] = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    formula_fit = glmer("correct ~ strategy + (1|patient_id)", data)
    X = np.column_stack([np.ones(len(data)), (data["strategy"] == "zero").astype(float)])
    direct = fit_glmm(data["correct"], X, {"patient_id": data["patient_id"]})
    np.testing.assert_allclose(
        formula_fit.fixed_effects["estimate"], direct.fixed_effects["estimate"], atol=1e-8
    )
    assert list(formula_fit.fixed_effects["term"]) == ["Intercept", "strategy[T.zero]"]


def test_odds_ratios_exponentiate():
    rng = np.random.default_rng(10)
    data = pd.DataFrame({"g": np.repeat(np.arange(30), 5), "x": rng.normal(size=150)})
    data["y"] = rng.binomial(1, 1 / (1 + np.exp(-data["x"])))
    fit = glmer("y ~ x + (1|g)", data)
    table = odds_ratios(fit)
    np.testing.assert_allclose(table["odds_ratio"], np.exp(fit.fixed_effects["estimate"]))
    np.testing.assert_allclose(table["ci_low"], np.exp(fit.fixed_effects["ci_low"]))
    assert (table["ci_low"] < table["odds_ratio"]).all()
    assert (table["odds_ratio"] < table["ci_high"]).all()


def test_glmer_rejects_random_slope():
    data = pd.DataFrame({"y": [0, 1, 1, 0], "x": [1.0, 2, 3, 4], "g": [1, 1, 2, 2]})
    with pytest.raises(UserInputError, match="random intercepts only"):
        glmer("y ~ x + (x|g)", data)


def test_glmer_rejects_missing_column():
    data = pd.DataFrame({"y": [0, 1, 1, 0], "g": [1, 1, 2, 2]})
    with pytest.raises(UserInputError, match="missing"):
        glmer("y ~ 1 + (1|patient_id)", data)


def test_glmer_rejects_text_response():
    data = pd.DataFrame({"y": ["yes", "no", "yes", "no"], "g": [1, 1, 2, 2]})
    with pytest.raises(UserInputError, match="numeric or boolean"):
        glmer("y ~ 1 + (1|g)", data)
