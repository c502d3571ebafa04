"""Generalised estimating equations: the population-average alternative to a GLMM.

A GLMM coefficient is conditional on the patient: the odds ratio for the same
patient. A GEE coefficient is marginal, the odds ratio averaged over patients, and
its sandwich standard errors stay valid when the working correlation is wrong
(Liang & Zeger 1986, Biometrika 73:13, doi:10.1093/biomet/73.1.13). The fit is
statsmodels ``GEE``, which agrees with R geepack's ``geeglm`` on ``dietox``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from study.errors import UserInputError

FAMILIES = ("binomial", "gaussian", "poisson")
CORRELATIONS = ("exchangeable", "independence")
"""Working correlations that match geepack; statsmodels' AR(1) estimator differs from geepack's."""


@dataclass(frozen=True)
class GeeResult:
    """A fitted GEE.

    Attributes
    ----------
    coefficients
        ``term``, ``estimate``, ``se`` (robust sandwich), ``z``, ``p_value``,
        ``ci_low``, ``ci_high`` (Wald at ``confidence``); for the binomial family also
        ``odds_ratio``, ``or_ci_low``, ``or_ci_high``.
    working_correlation
        The estimated correlation parameter (NaN for independence).
    scale
        The dispersion estimate (geepack's ``Scale``).
    family, correlation
        The fitted family and working correlation structure.
    n_obs, n_clusters
        Rows and clusters.
    confidence
        Level of the intervals.
    """

    coefficients: pd.DataFrame
    working_correlation: float
    scale: float
    family: str
    correlation: str
    n_obs: int
    n_clusters: int
    confidence: float


def gee(
    formula: str,
    data: pd.DataFrame,
    *,
    groups: str,
    family: str = "binomial",
    correlation: str = "exchangeable",
    confidence: float = 0.95,
) -> GeeResult:
    """Fit a GEE with robust (sandwich) standard errors.

    Solves :math:`\\sum_i D_i^\\top V_i^{-1} (y_i - \\mu_i) = 0` with
    :math:`V_i = \\phi A_i^{1/2} R(\\alpha) A_i^{1/2}` (Liang & Zeger 1986);
    the robust covariance is :math:`B^{-1} M B^{-1}`, with :math:`B` the model-based
    information and :math:`M` the empirical covariance of the cluster scores. Rows
    with a missing value in the formula's variables are dropped.

    Parameters
    ----------
    formula : str
        A patsy formula without random terms, for example ``"correct ~ strategy + feature"``.
    data : pandas.DataFrame
    groups : str
        Cluster column (patient id).
    family : {"binomial", "gaussian", "poisson"}
        Logit, identity and log links respectively.
    correlation : {"exchangeable", "independence"}
        Working correlation structure.
    confidence : float
        Level of the Wald intervals.

    Returns
    -------
    GeeResult

    Raises
    ------
    study.errors.UserInputError
        For an unknown family or correlation, a random term in the formula, or a missing column.

    Examples
    --------
    >>> rng = np.random.default_rng(4)
    >>> data = pd.DataFrame({"patient_id": np.repeat(np.arange(40), 5),
    ...                      "strategy": np.tile(["a", "b"], 100)})
    >>> data["correct"] = rng.binomial(1, 0.7, 200)
    >>> fit = gee("correct ~ strategy", data, groups="patient_id")
    >>> fit.n_clusters, list(fit.coefficients["term"])
    (40, ['Intercept', 'strategy[T.b]'])
    """
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    if family not in FAMILIES:
        raise UserInputError(f"family must be one of {FAMILIES}, got {family!r}")
    if correlation not in CORRELATIONS:
        raise UserInputError(f"correlation must be one of {CORRELATIONS}, got {correlation!r}")
    if "|" in formula:
        raise UserInputError(
            f"formula {formula!r} has a random term; GEE takes the cluster as groups=, not (1|g)"
        )
    if groups not in data.columns:
        raise UserInputError(
            f"groups column {groups!r} is missing; available: {list(data.columns)}"
        )
    if not 0 < confidence < 1:
        raise UserInputError(f"confidence must be strictly between 0 and 1, got {confidence!r}")

    families = {
        "binomial": sm.families.Binomial(),
        "gaussian": sm.families.Gaussian(),
        "poisson": sm.families.Poisson(),
    }
    structures = {
        "exchangeable": sm.cov_struct.Exchangeable,
        "independence": sm.cov_struct.Independence,
    }
    # Rows with a missing value in the formula's variables or the cluster are dropped, as
    # geepack's na.omit does.
    model = smf.gee(
        formula,
        groups=groups,
        data=data,
        missing="drop",
        family=families[family],
        cov_struct=structures[correlation](),
    )
    # geepack divides the Pearson chi-square by N, not N - p.
    fit = model.fit(ddof_scale=0)

    estimate = fit.params.to_numpy()
    se = fit.bse.to_numpy()
    z = estimate / se
    critical = stats.norm.ppf(0.5 + confidence / 2.0)
    table = pd.DataFrame(
        {
            "term": model.exog_names,
            "estimate": estimate,
            "se": se,
            "z": z,
            "p_value": 2.0 * stats.norm.sf(np.abs(z)),
            "ci_low": estimate - critical * se,
            "ci_high": estimate + critical * se,
        }
    )
    if family == "binomial":
        table["odds_ratio"] = np.exp(table["estimate"])
        table["or_ci_low"] = np.exp(table["ci_low"])
        table["or_ci_high"] = np.exp(table["ci_high"])

    dependence = (
        float(np.ravel(model.cov_struct.dep_params)[0]) if correlation != "independence" else np.nan
    )
    return GeeResult(
        coefficients=table,
        working_correlation=dependence,
        scale=float(fit.scale),
        family=family,
        correlation=correlation,
        n_obs=int(fit.nobs),
        n_clusters=len(model.group_labels),
        confidence=confidence,
    )
