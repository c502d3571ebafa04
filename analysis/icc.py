"""Intraclass correlation: the six forms of Shrout & Fleiss (1979) with F tests and intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis._agreement_common import StatisticInputError, _check_confidence, _warn_undefined

__all__ = ["ICC_FORMS", "ICCResult", "icc", "icc_table"]

ICC_FORMS = ("ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k")
"""Shrout–Fleiss forms in psych's notation: ICC(1,1), ICC(2,1), ICC(3,1) and their k-rater means."""


@dataclass(frozen=True)
class ICCResult:
    """One Shrout–Fleiss intraclass correlation with its F test and interval.

    Attributes
    ----------
    form
        One of :data:`ICC_FORMS`.
    estimate
        The ICC.
    ci_low, ci_high
        Exact F-based interval (McGraw & Wong 1996; Satterthwaite df for ICC2 and ICC2k).
    f, df1, df2, p_value
        The F statistic for H0 ICC = 0, its degrees of freedom and upper-tail p-value.
    n_targets, n_raters
        Rows and columns of the complete table.
    """

    form: str
    estimate: float
    ci_low: float
    ci_high: float
    f: float
    df1: float
    df2: float
    p_value: float
    n_targets: int
    n_raters: int


_ROUNDING = 1e-12
"""Relative size below which a denominator of mean squares counts as zero."""


def _mean_squares(x: np.ndarray) -> tuple[float, float, float, float]:
    """Two-way ANOVA mean squares: between targets, within targets, between raters, residual."""
    n, k = x.shape
    grand = x.mean()
    ss_total = ((x - grand) ** 2).sum()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_error = ss_total - ss_rows - ss_cols
    msb = ss_rows / (n - 1)
    msw = (ss_total - ss_rows) / (n * (k - 1))
    msj = ss_cols / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    return np.float64(msb), np.float64(msw), np.float64(msj), np.float64(mse)


def icc_table(
    ratings: pd.DataFrame | np.ndarray | Sequence[Sequence[float]], *, confidence: float = 0.95
) -> pd.DataFrame:
    """Compute all six Shrout–Fleiss ICCs of a complete targets x raters table.

    With the two-way ANOVA mean squares MSB (targets), MSW (within targets),
    MSJ (raters) and MSE (residual) for *n* targets and *k* raters:

    - ICC1 = (MSB - MSW)/(MSB + (k-1)MSW), F = MSB/MSW on (n-1, n(k-1)) df;
    - ICC2 = (MSB - MSE)/(MSB + (k-1)MSE + k(MSJ - MSE)/n), F = MSB/MSE on (n-1, (n-1)(k-1));
    - ICC3 = (MSB - MSE)/(MSB + (k-1)MSE), same F;
    - ICC1k = (MSB - MSW)/MSB, ICC2k = (MSB - MSE)/(MSB + (MSJ - MSE)/n), ICC3k = (MSB - MSE)/MSB.

    The intervals are those of Shrout & Fleiss (1979) and McGraw & Wong (1996)
    as R ``psych::ICC`` computes them, with the Satterthwaite degrees of freedom
    for ICC2 and ICC2k.

    Parameters
    ----------
    ratings : DataFrame or array_like, shape (n_targets, n_raters)
        Numeric ratings, complete (no missing values).
    confidence : float
        Level of the intervals.

    Returns
    -------
    DataFrame
        One row per form in :data:`ICC_FORMS`, columns the fields of :class:`ICCResult`.

    Raises
    ------
    StatisticInputError
        When a value is missing or not numeric, or there are fewer than 2 targets or raters.

    References
    ----------
    Shrout P.E., Fleiss J.L. (1979) Intraclass correlations: uses in assessing
    rater reliability. Psychological Bulletin 86:420-428.
    McGraw K.O., Wong S.P. (1996) Forming inferences about some intraclass
    correlation coefficients. Psychological Methods 1:30-46.

    Examples
    --------
    >>> table = icc_table([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8],
    ...                    [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    >>> table.set_index("form")["estimate"].round(2).tolist()
    [0.17, 0.29, 0.71, 0.44, 0.62, 0.91]
    """
    return pd.DataFrame([asdict(result) for result in _icc_results(ratings, confidence)])


def _icc_results(
    ratings: pd.DataFrame | np.ndarray | Sequence[Sequence[float]], confidence: float
) -> list[ICCResult]:
    confidence = _check_confidence(confidence)
    try:
        x = np.asarray(ratings, dtype=float)
    except (TypeError, ValueError) as error:
        raise StatisticInputError(f"ICC ratings must be numeric: {error}") from error
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise StatisticInputError(
            f"ICC needs a targets x raters table with at least 2 of each, got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise StatisticInputError(
            "ICC needs complete ratings; drop targets with a missing rating first"
        )
    n, k = x.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        results = _icc_forms(n, k, *_mean_squares(x), confidence)
    if any(np.isnan(result.estimate) for result in results):
        _warn_undefined(
            "some ICCs are undefined because a mean-square denominator is zero (for example "
            "ratings that do not vary); they are NaN"
        )
    return results


def _icc_forms(
    n: int, k: int, msb: float, msw: float, msj: float, mse: float, confidence: float
) -> list[ICCResult]:
    """Compute the six forms from the mean squares; a zero mean square gives inf or NaN."""
    upper = 0.5 + confidence / 2
    scale = abs(msb) + abs(msw) + abs(msj) + abs(mse)

    def ratio(numerator: float, denominator: float) -> float:
        # A denominator that is zero up to rounding gives NaN, not a huge value of either sign.
        if abs(denominator) <= _ROUNDING * scale:
            return float("nan")
        return numerator / denominator

    f1 = msb / msw
    df1, df21, df3 = n - 1, n * (k - 1), (n - 1) * (k - 1)
    f3 = msb / mse
    icc1 = ratio(msb - msw, msb + (k - 1) * msw)
    icc2 = ratio(msb - mse, msb + (k - 1) * mse + k * (msj - mse) / n)
    icc3 = ratio(msb - mse, msb + (k - 1) * mse)

    f1_low = f1 / stats.f.ppf(upper, df1, df21)
    f1_high = f1 * stats.f.ppf(upper, df21, df1)
    f3_low = f3 / stats.f.ppf(upper, df1, df3)
    f3_high = f3 * stats.f.ppf(upper, df3, df1)

    # Satterthwaite df for the two-way random model (McGraw & Wong 1996).
    fj = msj / mse
    numerator = (k - 1) * (n - 1) * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
    denominator = (n - 1) * k**2 * icc2**2 * fj**2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
    v = numerator / denominator
    f_star_high = stats.f.ppf(upper, n - 1, v)
    f_star_low = stats.f.ppf(upper, v, n - 1)
    icc2_low = (
        n * (msb - f_star_high * mse) / (f_star_high * (k * msj + (k * n - k - n) * mse) + n * msb)
    )
    icc2_high = (
        n * (f_star_low * msb - mse) / (k * msj + (k * n - k - n) * mse + n * f_star_low * msb)
    )

    rows = [
        (
            "ICC1",
            icc1,
            (f1_low - 1) / (f1_low + k - 1),
            (f1_high - 1) / (f1_high + k - 1),
            f1,
            df1,
            df21,
        ),
        ("ICC2", icc2, icc2_low, icc2_high, f3, df1, df3),
        (
            "ICC3",
            icc3,
            (f3_low - 1) / (f3_low + k - 1),
            (f3_high - 1) / (f3_high + k - 1),
            f3,
            df1,
            df3,
        ),
        ("ICC1k", ratio(msb - msw, msb), 1 - 1 / f1_low, 1 - 1 / f1_high, f1, df1, df21),
        (
            "ICC2k",
            ratio(msb - mse, msb + (msj - mse) / n),
            icc2_low * k / (1 + icc2_low * (k - 1)),
            icc2_high * k / (1 + icc2_high * (k - 1)),
            f3,
            df1,
            df3,
        ),
        ("ICC3k", ratio(msb - mse, msb), 1 - 1 / f3_low, 1 - 1 / f3_high, f3, df1, df3),
    ]
    return [
        ICCResult(
            form=form,
            estimate=float(estimate),
            ci_low=float(low),
            ci_high=float(high),
            f=float(f),
            df1=float(d1),
            df2=float(d2),
            p_value=float(stats.f.sf(f, d1, d2)),
            n_targets=n,
            n_raters=k,
        )
        for form, estimate, low, high, f, d1, d2 in rows
    ]


def icc(
    ratings: pd.DataFrame | np.ndarray | Sequence[Sequence[float]],
    *,
    form: str = "ICC2",
    confidence: float = 0.95,
) -> ICCResult:
    """Compute one Shrout–Fleiss intraclass correlation; see :func:`icc_table` for formulas.

    Choose ICC1 when each target has its own random raters, and ICC2 when the
    raters are a random sample and absolute agreement matters. Choose ICC3 when
    these raters are the only ones of interest (consistency). The k forms are
    the reliability of the mean of k raters.

    Parameters
    ----------
    ratings : DataFrame or array_like, shape (n_targets, n_raters)
        Numeric ratings, complete.
    form : {"ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k"}
    confidence : float
        Level of the interval.

    Returns
    -------
    ICCResult

    Examples
    --------
    >>> result = icc([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8],
    ...               [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], form="ICC3")
    >>> round(result.estimate, 4), round(result.f, 2), result.df1, result.df2
    (0.7148, 11.03, 5.0, 15.0)
    """
    if form not in ICC_FORMS:
        raise StatisticInputError(f"form must be one of {ICC_FORMS}, got {form!r}")
    confidence = _check_confidence(confidence)
    return next(result for result in _icc_results(ratings, confidence) if result.form == form)
