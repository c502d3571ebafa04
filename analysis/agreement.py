"""Chance-corrected agreement between raters: Cohen's kappa and Fleiss' kappa.

Every function takes the category set explicitly, so a category no rater chose
still counts, and a label outside the set is an error rather than a new
category. Undefined values (expected agreement 1, no pairable ratings) are NaN
with an :class:`UndefinedStatisticWarning`. Fleiss' kappa is computed in
:mod:`analysis.fleiss` and re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from analysis._agreement_common import (
    _PERFECT_CHANCE_TOLERANCE,
    UndefinedStatisticWarning,
    _check_confidence,
    _codes,
    _warn_undefined,
)
from analysis.fleiss import FleissResult, fleiss_kappa, fleiss_kappa_from_counts

__all__ = [
    "FleissResult",
    "KappaResult",
    "UndefinedStatisticWarning",
    "cohen_kappa",
    "cohen_kappa_table",
    "fleiss_kappa",
    "fleiss_kappa_from_counts",
    "kappa_from_tables",
    "pabak",
    "percent_agreement",
]


@dataclass(frozen=True)
class KappaResult:
    """Cohen's kappa with its large-sample inference.

    Attributes
    ----------
    estimate
        Kappa (weighted when weights were given).
    se
        Asymptotic standard error (ASE) of the estimate; the confidence interval uses it.
    se0
        Asymptotic standard error under H0 kappa = 0; ``z`` uses it.
    ci_low, ci_high
        Wald interval ``estimate -/+ z_(1-alpha/2) * se``.
    z, p_value
        ``estimate / se0`` and its two-sided normal p-value.
    n
        Number of rated cases.
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    n: int
    se0: float


def _agreement_weights(weights: str | np.ndarray | None, k: int) -> np.ndarray:
    """Agreement weights: identity, Cicchetti-Allison linear, Fleiss-Cohen quadratic, or given."""
    if weights is None:
        return np.eye(k)
    if isinstance(weights, str):
        distance = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / max(k - 1, 1)
        if weights == "linear":
            return 1.0 - distance
        if weights == "quadratic":
            return 1.0 - distance**2
        raise ValueError(
            f"weights must be None, 'linear', 'quadratic' or a {k}x{k} matrix, got {weights!r}"
        )
    matrix = np.asarray(weights, dtype=float)
    if matrix.shape != (k, k):
        raise ValueError(f"weights matrix must have shape ({k}, {k}), got {matrix.shape}")
    return matrix


def _difference_or_zero(first: float, second: float) -> float:
    """Return ``first - second``, or 0 where the difference is within rounding of zero.

    The variance formulas subtract two sums of order one, so a true variance of
    0 comes out as about ±1e-17, and its square root would be a spurious 1e-8.
    """
    difference = float(first - second)
    if difference <= 64 * np.finfo(float).eps * max(abs(first), abs(second), 1.0):
        return 0.0
    return difference


def cohen_kappa_table(
    table: np.ndarray | Sequence[Sequence[float]],
    *,
    weights: str | np.ndarray | None = None,
    confidence: float = 0.95,
) -> KappaResult:
    """Compute Cohen's kappa and its asymptotic standard errors from a k x k count table.

    With proportions :math:`p_{ij}` (rows rater A, columns rater B), margins
    :math:`p_{i.}, p_{.j}` and agreement weights :math:`w_{ij}` (identity when
    unweighted), :math:`P_o = \\sum w_{ij} p_{ij}`,
    :math:`P_e = \\sum w_{ij} p_{i.} p_{.j}` and
    :math:`\\kappa = (P_o - P_e) / (1 - P_e)`. With
    :math:`\\bar w_{i.} = \\sum_j p_{.j} w_{ij}` and
    :math:`\\bar w_{.j} = \\sum_i p_{i.} w_{ij}`, the ASE is
    :math:`\\sqrt{\\sum p_{ij}[w_{ij} - (\\bar w_{i.} + \\bar w_{.j})(1-\\kappa)]^2
    - [\\kappa - P_e(1-\\kappa)]^2} / ((1 - P_e)\\sqrt n)` and under H0
    :math:`\\sqrt{\\sum p_{i.}p_{.j}[w_{ij} - (\\bar w_{i.} + \\bar w_{.j})]^2 - P_e^2}
    / ((1 - P_e)\\sqrt n)`, as in Fleiss, Cohen & Everitt (1969) and SAS PROC FREQ.

    Parameters
    ----------
    table : array_like, shape (k, k)
        Counts, rows for rater A and columns for rater B, categories in the same order.
    weights : {None, "linear", "quadratic"} or ndarray of shape (k, k)
        Agreement weights. ``"linear"`` is :math:`1 - |i-j|/(k-1)` (Cicchetti-Allison),
        ``"quadratic"`` is :math:`1 - (i-j)^2/(k-1)^2` (Fleiss-Cohen).
    confidence : float
        Level of the Wald interval.

    Returns
    -------
    KappaResult

    Notes
    -----
    The ASE is 0 when agreement is perfect, so the Wald interval collapses to a
    point; prefer a bootstrap interval for small or near-perfect tables.

    References
    ----------
    Fleiss J.L., Cohen J., Everitt B.S. (1969) Large sample standard errors of
    kappa and weighted kappa. Psychological Bulletin 72:323-327.

    Examples
    --------
    >>> result = cohen_kappa_table([[0, 4, 1], [0, 8, 0], [0, 1, 5]])
    >>> round(result.estimate, 4), round(result.se, 4), round(result.z, 4)
    (0.4842, 0.138, 3.2626)
    """
    confidence = _check_confidence(confidence)
    counts = np.asarray(table, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"table must be square (k x k), got shape {counts.shape}")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ValueError("table must contain finite, non-negative counts")
    w = _agreement_weights(weights, counts.shape[0])

    n = counts.sum()
    nan = float("nan")
    if n == 0:
        _warn_undefined("Cohen's kappa is undefined for an empty table; returning NaN")
        return KappaResult(nan, nan, nan, nan, nan, nan, 0, nan)

    p = counts / n
    row = p.sum(axis=1)
    col = p.sum(axis=0)
    chance = np.outer(row, col)
    observed = float((w * p).sum())
    expected = float((w * chance).sum())
    if 1.0 - expected <= _PERFECT_CHANCE_TOLERANCE:
        _warn_undefined(
            "Cohen's kappa is undefined because expected agreement is 1 "
            "(both raters used a single category); returning NaN"
        )
        return KappaResult(nan, nan, nan, nan, nan, nan, int(round(n)), nan)
    kappa = (observed - expected) / (1.0 - expected)

    # Fleiss, Cohen & Everitt (1969), equations for the weighted case; with identity
    # weights they reduce to the unweighted ASE printed by SAS PROC FREQ.
    mean_row_weight = w @ col
    mean_col_weight = row @ w
    weight_sum = mean_row_weight[:, None] + mean_col_weight[None, :]
    scale = (1.0 - expected) ** 2 * n
    variance = (
        _difference_or_zero(
            (p * (w - weight_sum * (1.0 - kappa)) ** 2).sum(),
            (kappa - expected * (1.0 - kappa)) ** 2,
        )
        / scale
    )
    variance0 = _difference_or_zero((chance * (w - weight_sum) ** 2).sum(), expected**2) / scale
    se = float(np.sqrt(variance))
    se0 = float(np.sqrt(variance0))

    quantile = stats.norm.ppf(0.5 + confidence / 2)
    if se0 > 0:
        z = kappa / se0
        p_value = float(2 * stats.norm.sf(abs(z)))
    else:
        _warn_undefined("the standard error of kappa under H0 is 0, so z is undefined; NaN")
        z, p_value = nan, nan
    return KappaResult(
        estimate=float(kappa),
        se=se,
        ci_low=float(kappa - quantile * se),
        ci_high=float(kappa + quantile * se),
        z=float(z),
        p_value=p_value,
        n=int(round(n)),
        se0=se0,
    )


def cohen_kappa(
    rater_a: Sequence,
    rater_b: Sequence,
    *,
    categories: Sequence,
    weights: str | np.ndarray | None = None,
    confidence: float = 0.95,
) -> KappaResult:
    """Compute Cohen's kappa between two raters who rated the same cases.

    Builds the k x k table in the order of ``categories`` and calls
    :func:`cohen_kappa_table`, which gives the formulas.

    Parameters
    ----------
    rater_a, rater_b : sequence
        One label per case, same length, no missing values.
    categories : sequence
        Every allowed label, in the order that defines the weights.
    weights : {None, "linear", "quadratic"} or ndarray of shape (k, k)
        Agreement weights, see :func:`cohen_kappa_table`.
    confidence : float
        Level of the Wald interval.

    Raises
    ------
    ValueError
        When the lengths differ, a label is missing, or a label is not in ``categories``.

    Examples
    --------
    >>> a = ["absent", "present", "present", "absent", "present"]
    >>> b = ["absent", "present", "absent", "absent", "present"]
    >>> round(cohen_kappa(a, b, categories=["absent", "present"]).estimate, 4)
    0.6154
    """
    if len(rater_a) != len(rater_b):
        raise ValueError(
            f"rater_a and rater_b must have the same length, got {len(rater_a)} and {len(rater_b)}"
        )
    k = len(categories)
    codes_a = _codes(list(rater_a), categories, allow_missing=False)
    codes_b = _codes(list(rater_b), categories, allow_missing=False)
    table = np.zeros((k, k))
    np.add.at(table, (codes_a, codes_b), 1.0)
    return cohen_kappa_table(table, weights=weights, confidence=confidence)


def kappa_from_tables(tables: np.ndarray) -> np.ndarray:
    """Compute unweighted Cohen's kappa for each of many k x k tables at once.

    Same formula as :func:`cohen_kappa_table` without weights; counts may be
    fractional (for example bootstrap multiplicities). Tables whose expected
    agreement is 1 or whose total is 0 give NaN without a warning, because the
    caller (typically :func:`analysis.bootstrap.cluster_bootstrap`) counts them.

    Parameters
    ----------
    tables : ndarray, shape (..., k, k)

    Returns
    -------
    ndarray, shape (...)

    Examples
    --------
    >>> tables = np.array([[[0, 4, 1], [0, 8, 0], [0, 1, 5]], [[3, 0, 0], [0, 0, 0], [0, 0, 0]]])
    >>> np.round(kappa_from_tables(tables), 4)
    array([0.4842,    nan])
    """
    counts = np.asarray(tables, dtype=float)
    if counts.ndim < 2 or counts.shape[-1] != counts.shape[-2]:
        raise ValueError(f"tables must have shape (..., k, k), got {counts.shape}")
    total = counts.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / total[..., None, None]
        observed = np.trace(p, axis1=-2, axis2=-1)
        expected = (p.sum(axis=-1) * p.sum(axis=-2)).sum(axis=-1)
        kappa = (observed - expected) / (1.0 - expected)
    undefined = (total <= 0) | (1.0 - expected <= _PERFECT_CHANCE_TOLERANCE)
    return np.where(undefined, np.nan, kappa)


def percent_agreement(rater_a: Sequence, rater_b: Sequence) -> float:
    """Return the proportion of cases on which two raters gave the same label.

    Examples
    --------
    >>> percent_agreement(["a", "b", "b", "a"], ["a", "b", "a", "a"])
    0.75
    """
    if len(rater_a) != len(rater_b):
        raise ValueError(
            f"rater_a and rater_b must have the same length, got {len(rater_a)} and {len(rater_b)}"
        )
    if len(rater_a) == 0:
        _warn_undefined("percent agreement is undefined without cases; returning NaN")
        return float("nan")
    same = sum(a == b for a, b in zip(rater_a, rater_b, strict=True))
    return same / len(rater_a)


def pabak(rater_a: Sequence, rater_b: Sequence, *, categories: Sequence) -> float:
    """Compute the prevalence- and bias-adjusted kappa (PABAK) of two raters.

    :math:`\\mathrm{PABAK} = (q P_o - 1)/(q - 1)` for *q* categories and observed
    agreement :math:`P_o`, which is :math:`2P_o - 1` for two categories (Byrt,
    Bishop & Carlin 1993). It is kappa with chance agreement fixed at 1/q, so
    unlike Cohen's kappa it does not depend on prevalence or on the raters' bias,
    and declaring an unused category changes it.

    Parameters
    ----------
    rater_a, rater_b : sequence
        One label per case, same length, no missing values.
    categories : sequence
        Every allowed label (at least two).

    References
    ----------
    Byrt T., Bishop J., Carlin J.B. (1993) Bias, prevalence and kappa. J Clin
    Epidemiol 46:423-429.

    Examples
    --------
    >>> pabak(["a", "b", "b", "a"], ["a", "b", "a", "a"], categories=["a", "b"])
    0.5
    """
    if len(categories) < 2:
        raise ValueError(f"PABAK needs at least two categories, got {list(categories)!r}")
    _codes(list(rater_a), categories, allow_missing=False)
    _codes(list(rater_b), categories, allow_missing=False)
    q = len(categories)
    return (q * percent_agreement(rater_a, rater_b) - 1.0) / (q - 1.0)
