"""Area under the ROC curve with DeLong's standard error, and DeLong's test of two AUCs.

Follows R ``pROC`` (Robin et al. 2011): DeLong et al. (1988) placement values
computed as in Sun & Xu (2014), covariances with ddof = 1. Higher scores mean
"case" (pROC's ``direction = "<"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from analysis._agreement_common import StatisticInputError, _check_confidence

__all__ = ["AUCResult", "DeLongResult", "delong_test", "roc_auc"]

ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class AUCResult:
    """An AUC with its DeLong standard error and Wald interval.

    Attributes
    ----------
    estimate
        Area under the empirical ROC curve (ties count half).
    se
        DeLong standard error.
    ci_low, ci_high
        ``estimate -/+ z * se``, clipped to [0, 1].
    n_cases, n_controls
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    n_cases: int
    n_controls: int


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's test of two AUCs.

    Attributes
    ----------
    estimate
        ``auc1 - auc2``.
    se
        Standard error of the difference.
    ci_low, ci_high
        Wald interval of the difference (paired test; NaN for unpaired, as pROC gives none).
    z
        The statistic: a normal deviate when paired, Student's t when unpaired.
    p_value
        For the chosen alternative.
    df
        Degrees of freedom of the unpaired t statistic; NaN when paired.
    auc1, auc2
    paired
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    df: float
    auc1: float
    auc2: float
    paired: bool


def _split(y_true: Sequence, scores: Sequence) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(y_true)
    values = np.asarray(scores, dtype=float)
    if truth.shape != values.shape or truth.ndim != 1:
        raise StatisticInputError(
            f"y_true and scores must be 1-D of the same length, got {truth.shape} and "
            f"{values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise StatisticInputError("scores contain NaN or infinity; drop those cases first")
    labels = set(truth.tolist())
    if not labels <= {0, 1}:
        raise StatisticInputError(f"y_true must be 0/1 or boolean, got labels {sorted(labels)!r}")
    cases, controls = values[truth == 1], values[truth == 0]
    if cases.size < 2 or controls.size < 2:
        raise StatisticInputError(
            f"DeLong's variance needs at least 2 cases and 2 controls, got {cases.size} and "
            f"{controls.size}"
        )
    return cases, controls


def _placements(cases: np.ndarray, controls: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's placement values V10 (per case) and V01 (per control)."""
    # psi(case, control) = 1 if case > control, 1/2 if equal; by midranks (Sun & Xu 2014).
    m, n = cases.size, controls.size
    pooled = stats.rankdata(np.concatenate([cases, controls]))
    case_ranks = stats.rankdata(cases)
    control_ranks = stats.rankdata(controls)
    v10 = (pooled[:m] - case_ranks) / n
    v01 = 1.0 - (pooled[m:] - control_ranks) / m
    return float(v10.mean()), v10, v01


def roc_auc(y_true: Sequence, scores: Sequence, *, confidence: float = 0.95) -> AUCResult:
    """Compute the ROC AUC with DeLong's standard error.

    :math:`\\hat A = \\frac{1}{mn}\\sum_{i,j}\\psi(X_i, Y_j)` over the *m* cases
    *X* and *n* controls *Y*, with :math:`\\psi = 1, 1/2, 0` when
    :math:`X > Y, X = Y, X < Y`; :math:`V_{10}(X_i) = \\frac1n\\sum_j\\psi(X_i, Y_j)`,
    :math:`V_{01}(Y_j) = \\frac1m\\sum_i\\psi(X_i, Y_j)` and
    :math:`\\mathrm{Var}(\\hat A) = s^2_{10}/m + s^2_{01}/n` (DeLong, DeLong &
    Clarke-Pearson 1988; R ``pROC::var(method = "delong")``).

    Parameters
    ----------
    y_true : sequence of {0, 1}
        1 for a case, 0 for a control.
    scores : sequence of float
        Higher means more likely a case.
    confidence : float

    Returns
    -------
    AUCResult

    Examples
    --------
    >>> result = roc_auc([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    >>> round(result.estimate, 4), round(result.se, 4)
    (0.8889, 0.1571)
    """
    confidence = _check_confidence(confidence)
    cases, controls = _split(y_true, scores)
    auc, v10, v01 = _placements(cases, controls)
    se = float(np.sqrt(v10.var(ddof=1) / cases.size + v01.var(ddof=1) / controls.size))
    quantile = stats.norm.ppf(0.5 + confidence / 2)
    return AUCResult(
        estimate=auc,
        se=se,
        ci_low=float(max(0.0, auc - quantile * se)),
        ci_high=float(min(1.0, auc + quantile * se)),
        n_cases=int(cases.size),
        n_controls=int(controls.size),
    )


def _p_value(statistic: float, alternative: str, distribution) -> float:
    if alternative == "two-sided":
        return float(2 * distribution.sf(abs(statistic)))
    if alternative == "greater":
        return float(distribution.sf(statistic))
    return float(distribution.cdf(statistic))


def delong_test(
    y_true: Sequence,
    scores1: Sequence,
    scores2: Sequence,
    *,
    y_true2: Sequence | None = None,
    paired: bool = True,
    alternative: str = "two-sided",
    confidence: float = 0.95,
) -> DeLongResult:
    """Compare two AUCs with DeLong's test, paired or unpaired, as ``pROC::roc.test``.

    Paired (both scores on the same cases): with the 2x2 covariance matrices
    :math:`S_{10}, S_{01}` of the placement values,
    :math:`\\mathrm{Var}(\\hat A_1 - \\hat A_2) = L S_{10} L^T/m + L S_{01} L^T/n`,
    :math:`L = (1, -1)`, and :math:`Z = (\\hat A_1 - \\hat A_2)/\\sqrt{\\mathrm{Var}}`
    is standard normal (DeLong et al. 1988). Unpaired (independent samples):
    :math:`D = (\\hat A_1 - \\hat A_2)/\\sqrt{V_1 + V_2}` is referred to Student's t with
    :math:`(V_1 + V_2)^2/(V_1^2/(N_1 - 1) + V_2^2/(N_2 - 1))` degrees of freedom,
    :math:`N` the number of cases plus controls of each curve (pROC ``R/delong.R``).

    Parameters
    ----------
    y_true : sequence of {0, 1}
        Status for ``scores1`` (and for ``scores2`` when paired).
    scores1, scores2 : sequence of float
        The two markers; higher means more likely a case.
    y_true2 : sequence of {0, 1}, optional
        Status for ``scores2`` when unpaired; defaults to ``y_true``.
    paired : bool
    alternative : {"two-sided", "greater", "less"}
        "greater" tests AUC1 > AUC2.
    confidence : float
        Level of the interval of the difference (paired only).

    Returns
    -------
    DeLongResult

    Examples
    --------
    >>> y = [0, 0, 0, 1, 1, 1, 0, 1]
    >>> result = delong_test(y, [1, 2, 3, 4, 5, 6, 2, 7], [2, 1, 5, 3, 6, 4, 3, 5])
    >>> round(result.estimate, 4), round(result.z, 4)
    (0.1875, 1.1078)
    """
    confidence = _check_confidence(confidence)
    if alternative not in ALTERNATIVES:
        raise StatisticInputError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    nan = float("nan")

    if paired:
        if y_true2 is not None:
            raise StatisticInputError(
                "y_true2 applies to the unpaired test only; pass paired=False"
            )
        cases1, controls1 = _split(y_true, scores1)
        cases2, controls2 = _split(y_true, scores2)
        auc1, v10_1, v01_1 = _placements(cases1, controls1)
        auc2, v10_2, v01_2 = _placements(cases2, controls2)
        s10 = np.cov(np.vstack([v10_1, v10_2]), ddof=1)
        s01 = np.cov(np.vstack([v01_1, v01_2]), ddof=1)
        contrast = np.array([1.0, -1.0])
        variance = (
            contrast @ s10 @ contrast / cases1.size + contrast @ s01 @ contrast / controls1.size
        )
        se = float(np.sqrt(variance))
        difference = auc1 - auc2
        z = difference / se
        quantile = stats.norm.ppf(0.5 + confidence / 2)
        return DeLongResult(
            estimate=difference,
            se=se,
            ci_low=float(difference - quantile * se),
            ci_high=float(difference + quantile * se),
            z=float(z),
            p_value=_p_value(z, alternative, stats.norm),
            df=nan,
            auc1=auc1,
            auc2=auc2,
            paired=True,
        )

    second_truth = y_true if y_true2 is None else y_true2
    first = roc_auc(y_true, scores1)
    second = roc_auc(second_truth, scores2)
    v1, v2 = first.se**2, second.se**2
    n1 = first.n_cases + first.n_controls
    n2 = second.n_cases + second.n_controls
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    se = float(np.sqrt(v1 + v2))
    difference = first.estimate - second.estimate
    statistic = difference / se
    return DeLongResult(
        estimate=difference,
        se=se,
        ci_low=nan,
        ci_high=nan,
        z=float(statistic),
        p_value=_p_value(statistic, alternative, stats.t(df)),
        df=float(df),
        auc1=first.estimate,
        auc2=second.estimate,
        paired=False,
    )
