"""Tests of paired binary outcomes: McNemar's test and Cochran's Q."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from analysis._agreement_common import StatisticInputError, _warn_undefined

__all__ = ["TestResult", "cochran_q", "mcnemar"]


@dataclass(frozen=True)
class TestResult:
    """A hypothesis test.

    Attributes
    ----------
    statistic
        Chi-square statistic, or for the exact McNemar test the smaller discordant count.
    p_value
        Two-sided p-value.
    df
        Degrees of freedom of the chi-square reference; NaN for an exact test.
    n
        Pairs (McNemar) or subjects (Cochran's Q).
    method
        Which variant was computed.
    """

    __test__ = False  # a record, not a pytest test class

    statistic: float
    p_value: float
    df: float
    n: int
    method: str


def mcnemar(
    table: np.ndarray | Sequence[Sequence[float]],
    *,
    exact: bool = False,
    correction: bool = True,
) -> TestResult:
    """Compute McNemar's test of marginal homogeneity in a paired 2x2 table.

    With discordant counts *b* (row 1, column 2) and *c* (row 2, column 1):
    asymptotic :math:`\\chi^2 = (|b - c| - 1)^2/(b + c)` with Edwards' continuity
    correction, :math:`(b - c)^2/(b + c)` without, on 1 df (R ``mcnemar.test``);
    exact :math:`p = \\min(1, 2 P(X \\le \\min(b, c)))`, *X* ~ Binomial(b + c, 1/2).

    Parameters
    ----------
    table : array_like, shape (2, 2)
        Paired counts, rows the first rating and columns the second.
    exact : bool
        Use the binomial test on the discordant pairs.
    correction : bool
        Apply the continuity correction (asymptotic test only).

    Returns
    -------
    TestResult

    References
    ----------
    McNemar Q. (1947) Psychometrika 12:153-157. Agresti A. (1990) Categorical
    Data Analysis, p. 350.

    Examples
    --------
    >>> result = mcnemar([[794, 150], [86, 570]])
    >>> round(result.statistic, 3), result.df
    (16.818, 1.0)
    """
    counts = np.asarray(table, dtype=float)
    if counts.shape != (2, 2) or np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise StatisticInputError(
            f"McNemar's test needs a 2x2 table of non-negative counts, got {counts.tolist()!r}"
        )
    b, c = counts[0, 1], counts[1, 0]
    n = int(round(counts.sum()))
    if b + c == 0:
        # No discordant pair: no evidence against homogeneity.
        return TestResult(0.0, 1.0, float("nan") if exact else 1.0, n, _name(exact, correction))
    if exact:
        if b != int(b) or c != int(c):
            raise StatisticInputError(f"the exact test needs integer counts, got b={b}, c={c}")
        smaller = min(b, c)
        p_value = min(1.0, 2 * stats.binom.cdf(smaller, int(b + c), 0.5))
        return TestResult(float(smaller), float(p_value), float("nan"), n, "exact")
    difference = abs(b - c) - (1.0 if correction else 0.0)
    statistic = max(difference, 0.0) ** 2 / (b + c) if correction else (b - c) ** 2 / (b + c)
    return TestResult(
        float(statistic), float(stats.chi2.sf(statistic, 1)), 1.0, n, _name(exact, correction)
    )


def _name(exact: bool, correction: bool) -> str:
    if exact:
        return "exact"
    return "asymptotic, continuity-corrected" if correction else "asymptotic"


def cochran_q(outcomes: np.ndarray | Sequence[Sequence[float]]) -> TestResult:
    """Compute Cochran's Q test that k paired binary outcomes have equal success rates.

    With subject totals :math:`R_i`, condition totals :math:`C_j` and grand total *N*,
    :math:`Q = (k - 1)\\frac{k\\sum_j C_j^2 - N^2}{kN - \\sum_i R_i^2}` on k - 1 df
    (Cochran 1950; statsmodels ``cochrans_q``, R ``RVAideMemoire::cochran.qtest``).

    Parameters
    ----------
    outcomes : array_like, shape (n_subjects, k)
        0/1 outcome of every subject under every condition (for example whether
        each of k readers was correct on each lesion).

    Returns
    -------
    TestResult

    Notes
    -----
    Q and its p-value are NaN, with an :class:`UndefinedStatisticWarning`, when
    every subject has the same outcome under all conditions, because the
    denominator is then 0.

    References
    ----------
    Cochran W.G. (1950) The comparison of percentages in matched samples.
    Biometrika 37:256-266.

    Examples
    --------
    >>> result = cochran_q([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0], [1, 0, 1], [1, 1, 0]])
    >>> round(result.statistic, 4), result.df
    (3.5, 2.0)
    """
    x = np.asarray(outcomes, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise StatisticInputError(
            f"Cochran's Q needs a subjects x conditions table with 2 or more conditions, got "
            f"shape {x.shape}"
        )
    if not np.all(np.isin(x, [0.0, 1.0])):
        raise StatisticInputError("Cochran's Q needs 0/1 outcomes without missing values")
    n, k = x.shape
    rows = x.sum(axis=1)
    columns = x.sum(axis=0)
    total = x.sum()
    denominator = k * total - (rows**2).sum()
    if denominator == 0:
        _warn_undefined(
            "Cochran's Q is undefined because every subject has the same outcome under all "
            "conditions; returning NaN"
        )
        return TestResult(float("nan"), float("nan"), float(k - 1), n, "cochran_q")
    statistic = (k - 1) * (k * (columns**2).sum() - total**2) / denominator
    return TestResult(
        float(statistic), float(stats.chi2.sf(statistic, k - 1)), float(k - 1), n, "cochran_q"
    )
