"""The formula interface and lmer (statsmodels MixedLM) against lme4 on sleepstudy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

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


# lme4's fm2 in tests/lmer-1.R: random intercept and Days slope with zero correlation.
UNCORRELATED = "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)"


@pytest.fixture(scope="module")
def uncorrelated_reml_fit(sleepstudy):
    return lmer(UNCORRELATED, sleepstudy)


@pytest.fixture(scope="module")
def uncorrelated_ml_fit(sleepstudy):
    return lmer(UNCORRELATED, sleepstudy, reml=False)


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
    # The refined optimum is at least as good as lme4's (2.8e-7 lower here).
    assert reml_fit.criterion <= 1743.6282722424
    assert reml_fit.reml


def test_sleepstudy_reml_standard_deviations(reml_fit):
    # lme4 man/utilities.Rd, 3 decimals. lme4 1.1-31 itself stops at an intercept SD of
    # 24.74066 (tests/analysis/r/sleepstudy_lmer.R), short of the REML optimum at
    # 24.74045 that test_sleepstudy_reml_optimum finds.
    assert component(reml_fit, "(Intercept)")["sdcor"] == pytest.approx(24.740, abs=5e-4)
    assert component(reml_fit, "Days")["sdcor"] == pytest.approx(5.922, abs=5e-4)
    assert component(reml_fit, "(Intercept)", "Days")["sdcor"] == pytest.approx(0.066, abs=5e-4)
    assert component(reml_fit, "")["sdcor"] == pytest.approx(25.592, abs=5e-4)


def profiled_reml_criterion(theta: np.ndarray, data: pd.DataFrame) -> tuple[float, np.ndarray]:
    """Compute lme4's REML criterion of ``Reaction ~ Days + (Days|Subject)`` at ``theta``.

    ``theta`` is lme4's relative Cholesky factor [L11, L21, L22] of the random-effects
    covariance. With each subject's V = I + Z L L' Z' and the fixed effects and the
    residual variance profiled out, the criterion is
    log|V| + log|X' V^-1 X| + (n - p) (1 + log(2 pi r' V^-1 r / (n - p))).
    Also returns the Cholesky factor in the response's units.
    """
    factor = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
    design = np.column_stack([np.ones(len(data)), data["Days"]])
    response = data["Reaction"].to_numpy()
    xvx = np.zeros((2, 2))
    xvy = np.zeros(2)
    yvy = 0.0
    log_det = 0.0
    for rows in data.groupby("Subject").indices.values():
        x = design[rows]
        relative_covariance = np.eye(len(rows)) + x @ factor @ factor.T @ x.T
        log_det += np.linalg.slogdet(relative_covariance)[1]
        vx = np.linalg.solve(relative_covariance, x)
        vy = np.linalg.solve(relative_covariance, response[rows])
        xvx += x.T @ vx
        xvy += x.T @ vy
        yvy += response[rows] @ vy
    beta = np.linalg.solve(xvx, xvy)
    residual_sum = yvy - xvy @ beta
    dof = len(response) - 2
    criterion = (
        log_det + np.linalg.slogdet(xvx)[1] + dof * (1 + np.log(2 * np.pi * residual_sum / dof))
    )
    return criterion, factor * np.sqrt(residual_sum / dof)


def test_sleepstudy_reml_optimum(sleepstudy, reml_fit):
    # An independent maximum of the REML likelihood, without statsmodels.
    result = optimize.minimize(
        lambda theta: profiled_reml_criterion(theta, sleepstudy)[0],
        [1.0, 0.0, 1.0],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000, "maxfev": 10000},
    )
    criterion, factor = profiled_reml_criterion(result.x, sleepstudy)
    covariance = factor @ factor.T
    intercept_sd = np.sqrt(covariance[0, 0])
    assert intercept_sd == pytest.approx(24.740, abs=5e-4)
    assert reml_fit.criterion == pytest.approx(criterion, abs=1e-8)
    assert component(reml_fit, "(Intercept)")["sdcor"] == pytest.approx(intercept_sd, abs=1e-5)
    assert component(reml_fit, "Days")["sdcor"] == pytest.approx(
        np.sqrt(covariance[1, 1]), abs=1e-5
    )


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


def test_sleepstudy_uncorrelated_information_criteria(uncorrelated_ml_fit):
    # lme4 tests/lmer-1.R, fm2ML: AIC 1762, BIC 1777.97 (lmer-1.Rout.save prints them
    # at digits = 2 as 1762 and 1778). Five parameters: 2 fixed, 2 variances, residual.
    assert uncorrelated_ml_fit.aic == pytest.approx(1762, abs=0.5)
    assert uncorrelated_ml_fit.bic == pytest.approx(1777.97, abs=5e-3)
    assert uncorrelated_ml_fit.aic - uncorrelated_ml_fit.criterion == pytest.approx(2 * 5)


def test_sleepstudy_uncorrelated_standard_deviations(uncorrelated_reml_fit):
    # lme4 tests/lmer-1.Rout.save, fm2 (REML): SDs 25.05, 5.99 and residual 25.57.
    table = uncorrelated_reml_fit.variance_components
    assert list(table["group"]) == ["Subject", "Subject.1", "Residual"]
    assert (table["var2"] == "").all()
    assert component(uncorrelated_reml_fit, "(Intercept)")["sdcor"] == pytest.approx(
        25.05, abs=5e-3
    )
    assert component(uncorrelated_reml_fit, "Days")["sdcor"] == pytest.approx(5.99, abs=5e-3)
    assert component(uncorrelated_reml_fit, "")["sdcor"] == pytest.approx(25.57, abs=5e-3)


def test_sleepstudy_uncorrelated_against_correlated(
    uncorrelated_ml_fit, uncorrelated_reml_fit, ml_fit
):
    # fm2 is fm1 with the correlation fixed at 0, so its ML deviance cannot be lower.
    # lme4's anova(fm1, fm2) in tests/lmer-1.Rout.save gives Chisq 0.06.
    difference = uncorrelated_ml_fit.criterion - ml_fit.criterion
    assert difference > 0
    assert difference == pytest.approx(0.06, abs=5e-3)
    # lme4 tests/lmer-1.R: the fixed effects of fm1 and fm2 agree (balanced design).
    np.testing.assert_allclose(
        uncorrelated_reml_fit.fixed_effects["estimate"],
        [251.405104848485, 10.467285959595],
        atol=1e-5,
    )


@pytest.mark.parametrize("reml", [True, False])
def test_sleepstudy_uncorrelated_equals_variance_components(sleepstudy, reml):
    # The same model through statsmodels' separate variance-component code path: a
    # random intercept plus an independent Days coefficient per subject.
    import statsmodels.formula.api as smf

    model = smf.mixedlm(
        "Reaction ~ Days",
        sleepstudy,
        groups="Subject",
        re_formula="1",
        vc_formula={"Days": "0 + Days"},
    )
    direct = model.fit(reml=reml)
    fit = lmer(UNCORRELATED, sleepstudy, reml=reml)
    assert fit.log_likelihood == pytest.approx(direct.llf, abs=1e-6)
    variances = fit.variance_components["vcov"].to_numpy()
    expected = [direct.cov_re.iloc[0, 0], direct.vcomp[0], direct.scale]
    np.testing.assert_allclose(variances, expected, rtol=1e-4)


def test_sleepstudy_full_pattern_equals_unrestricted(sleepstudy, reml_fit):
    # lmer always passes statsmodels a `free` pattern. For one term it is all ones, which
    # must give the same fit as statsmodels without a pattern at the same tolerance.
    import statsmodels.formula.api as smf

    model = smf.mixedlm("Reaction ~ Days", sleepstudy, groups="Subject", re_formula="~Days")
    direct = model.fit(reml=True, method=["bfgs"], gtol=1e-8)
    assert reml_fit.criterion == pytest.approx(-2 * direct.llf, abs=1e-8)
    np.testing.assert_allclose(
        reml_fit.variance_components["vcov"].to_numpy(),
        [
            direct.cov_re.iloc[0, 0],
            direct.cov_re.iloc[1, 1],
            direct.cov_re.iloc[0, 1],
            direct.scale,
        ],
        rtol=1e-5,
    )


def test_lmer_minus_one_drops_intercept(sleepstudy, uncorrelated_ml_fit):
    fit = lmer("Reaction ~ Days + (1|Subject) + (Days - 1|Subject)", sleepstudy, reml=False)
    assert fit.criterion == pytest.approx(uncorrelated_ml_fit.criterion, abs=1e-8)


def test_lmer_rejects_two_grouping_factors(sleepstudy):
    with pytest.raises(UserInputError, match="one grouping factor"):
        lmer("Reaction ~ Days + (1|Subject) + (1|Days)", sleepstudy)


@pytest.mark.parametrize(
    "random", ["(1|Subject) + (1|Subject)", "(Days|Subject) + (0 + Days|Subject)"]
)
def test_lmer_rejects_repeated_effect(sleepstudy, random):
    with pytest.raises(UserInputError, match="more than one term"):
        lmer(f"Reaction ~ Days + {random}", sleepstudy)


def test_lmer_rejects_term_without_effect(sleepstudy):
    with pytest.raises(UserInputError, match="contains no effect"):
        lmer("Reaction ~ Days + (0|Subject)", sleepstudy)


def test_lmer_rejects_missing_response(sleepstudy):
    data = sleepstudy.copy()
    data.loc[3, "Reaction"] = np.nan
    with pytest.raises(UserInputError, match="missing values"):
        lmer("Reaction ~ Days + (Days|Subject)", data)


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
