"""Gwet's AC1 and AC2 and Conger's kappa for several raters, with missing ratings allowed.

All three share the observed agreement of Gwet (2014, ch. 2 and 3) and differ
in the chance agreement. Standard errors are Gwet's linearisation conditional
on the raters (no finite-population correction), as R ``irrCAC`` computes
them. Intervals and p-values use Student's t with n - 1 degrees of freedom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis._agreement_common import (
    _PERFECT_CHANCE_TOLERANCE,
    StatisticInputError,
    _check_confidence,
    _codes,
    _t_interval,
    _warn_undefined,
)
from analysis.agreement import _agreement_weights

__all__ = ["ChanceCorrectedResult", "conger_kappa", "gwet_ac1", "gwet_ac2"]


@dataclass(frozen=True)
class ChanceCorrectedResult:
    """A chance-corrected agreement coefficient among several raters.

    Attributes
    ----------
    estimate
        The coefficient :math:`(p_a - p_e)/(1 - p_e)`.
    se
        Gwet's linearised standard error, conditional on the raters.
    ci_low, ci_high
        ``estimate -/+ t_(n-1) * se``; the upper bound is capped at 1 as in irrCAC.
    t, p_value, df
        ``estimate / se``, its two-sided Student t p-value and the degrees of
        freedom n - 1. R irrCAC prints the one-sided value, ``p_value / 2``.
    percent_agreement, chance_agreement
        :math:`p_a` and :math:`p_e`.
    n_subjects
        Subjects with at least one rating.
    n_raters
        Raters (columns) in the ratings table.
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    t: float
    p_value: float
    df: int
    percent_agreement: float
    chance_agreement: float
    n_subjects: int
    n_raters: int


def _rating_codes(
    ratings: pd.DataFrame | np.ndarray | Sequence, categories: Sequence
) -> np.ndarray:
    table = ratings.to_numpy(dtype=object) if isinstance(ratings, pd.DataFrame) else ratings
    table = np.asarray(table, dtype=object)
    if table.ndim != 2:
        raise StatisticInputError(
            f"ratings must be a subjects x raters table, got shape {table.shape}"
        )
    codes = _codes(list(table.ravel()), categories, allow_missing=True).reshape(table.shape)
    return codes[(codes >= 0).any(axis=1)]


def _counts(codes: np.ndarray, k: int) -> np.ndarray:
    counts = np.zeros((codes.shape[0], k))
    for column in codes.T:
        rated = column >= 0
        counts[np.flatnonzero(rated), column[rated]] += 1.0
    return counts


def _observed(counts: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Return the observed agreement, per-subject agreement (0 below two ratings), pairable mask."""
    raters = counts.sum(axis=1)
    weighted = counts @ weights.T
    agreeing = (counts * (weighted - 1.0)).sum(axis=1)
    pairs = raters * (raters - 1.0)
    pairable = raters >= 2
    subject = np.divide(agreeing, pairs, out=np.zeros_like(agreeing), where=pairable)
    observed = float(subject[pairable].mean()) if pairable.any() else float("nan")
    return observed, subject, pairable


def _finish(
    name: str,
    counts: np.ndarray,
    n_raters: int,
    observed: float,
    subject_observed: np.ndarray,
    pairable: np.ndarray,
    expected: float,
    subject_expected: np.ndarray,
    confidence: float,
) -> ChanceCorrectedResult:
    """Turn agreement terms into the coefficient, its linearised SE and a t interval."""
    n = counts.shape[0]
    nan = float("nan")
    if not pairable.any():
        _warn_undefined(f"{name} is undefined because no subject has two ratings; returning NaN")
        return ChanceCorrectedResult(
            nan, nan, nan, nan, nan, nan, max(n - 1, 0), nan, expected, n, n_raters
        )
    if 1.0 - expected <= _PERFECT_CHANCE_TOLERANCE:
        _warn_undefined(f"{name} is undefined because chance agreement is 1; returning NaN")
        return ChanceCorrectedResult(
            nan, nan, nan, nan, nan, nan, n - 1, observed, expected, n, n_raters
        )
    coefficient = (observed - expected) / (1.0 - expected)

    # Gwet's linearisation: each subject's contribution, corrected for estimating p_e.
    n_pairable = int(pairable.sum())
    contribution = (n / n_pairable) * (subject_observed - expected * pairable) / (1.0 - expected)
    contribution -= 2 * (1.0 - coefficient) * (subject_expected - expected) / (1.0 - expected)
    if n < 2:
        _warn_undefined(f"the standard error of {name} needs two subjects; NaN")
        se = nan
    else:
        se = float(np.sqrt(((contribution - coefficient) ** 2).sum() / (n * (n - 1))))

    df = n - 1
    if se > 0:
        t = coefficient / se
        p_value = float(2 * stats.t.sf(abs(t), df))
    else:
        t, p_value = nan, nan
    low, high = _t_interval(coefficient, se, df, confidence, upper=1.0)
    return ChanceCorrectedResult(
        estimate=float(coefficient),
        se=se,
        ci_low=low,
        ci_high=high,
        t=float(t),
        p_value=p_value,
        df=df,
        percent_agreement=observed,
        chance_agreement=expected,
        n_subjects=n,
        n_raters=n_raters,
    )


def gwet_ac2(
    ratings: pd.DataFrame | np.ndarray | Sequence,
    *,
    categories: Sequence,
    weights: str | np.ndarray | None = "quadratic",
    confidence: float = 0.95,
) -> ChanceCorrectedResult:
    """Compute Gwet's weighted agreement coefficient AC2 among several raters.

    With :math:`r_{ik}` raters putting subject *i* in category *k* (of *q*),
    :math:`r_i = \\sum_k r_{ik}`, agreement weights :math:`w_{kl}` and
    :math:`r^*_{ik} = \\sum_l w_{kl} r_{il}`, the :math:`n'` subjects with
    :math:`r_i \\ge 2` give
    :math:`p_a = \\frac{1}{n'} \\sum_i \\sum_k r_{ik}(r^*_{ik} - 1)/(r_i(r_i - 1))`.
    With :math:`\\pi_k = \\frac1n \\sum_i r_{ik}/r_i` over all *n* rated subjects,
    :math:`p_e = \\frac{\\sum_{kl} w_{kl}}{q(q-1)} \\sum_k \\pi_k(1 - \\pi_k)` and
    :math:`AC_2 = (p_a - p_e)/(1 - p_e)` (Gwet 2014, ch. 3; R ``irrCAC::gwet.ac1.raw``
    with ``weights``). The standard error is Gwet's linearisation
    :math:`\\sqrt{\\sum_i (AC^*_i - AC)^2/(n(n-1))}`.

    Parameters
    ----------
    ratings : DataFrame or array_like, shape (n_subjects, n_raters)
        Category labels; NaN or None where a rater did not rate a subject.
    categories : sequence
        Every allowed label, ordered as the weights are.
    weights : {None, "linear", "quadratic"} or ndarray of shape (q, q)
        Agreement weights from the category positions (equal spacing); None gives AC1.
    confidence : float
        Level of the t interval.

    Returns
    -------
    ChanceCorrectedResult

    Notes
    -----
    irrCAC builds linear and quadratic weights from the category values; for
    equally spaced numeric categories this is the same. Pass a weight matrix for
    unequally spaced values.

    References
    ----------
    Gwet K.L. (2008) Computing inter-rater reliability and its variance in the
    presence of high agreement. Br J Math Stat Psychol 61:29-48.
    Gwet K.L. (2014) Handbook of Inter-Rater Reliability, 4th ed.

    Examples
    --------
    >>> ratings = [[1, 1, 2], [2, 2, 2], [3, 3, 3], [1, 2, None]]
    >>> round(gwet_ac2(ratings, categories=[1, 2, 3]).estimate, 4)
    0.7087
    """
    confidence = _check_confidence(confidence)
    codes = _rating_codes(ratings, categories)
    q = len(categories)
    w = _agreement_weights(weights, q)
    counts = _counts(codes, q)
    observed, subject_observed, pairable = _observed(counts, w)

    raters = counts.sum(axis=1)
    prevalence = (counts / raters[:, None]).mean(axis=0)
    scale = w.sum() / (q * (q - 1)) if q >= 2 else 0.0
    expected = float(scale * (prevalence * (1.0 - prevalence)).sum())
    subject_expected = scale * (counts @ (1.0 - prevalence)) / raters
    name = "Gwet's AC1" if weights is None else "Gwet's AC2"
    return _finish(
        name,
        counts,
        codes.shape[1],
        observed,
        subject_observed,
        pairable,
        expected,
        subject_expected,
        confidence,
    )


def gwet_ac1(
    ratings: pd.DataFrame | np.ndarray | Sequence,
    *,
    categories: Sequence,
    confidence: float = 0.95,
) -> ChanceCorrectedResult:
    """Compute Gwet's first-order agreement coefficient AC1 among several raters.

    AC1 is :func:`gwet_ac2` with identity weights:
    :math:`p_e = \\frac{1}{q-1} \\sum_k \\pi_k (1 - \\pi_k)` (Gwet 2008, 2014;
    R ``irrCAC::gwet.ac1.raw``). Unlike kappa it stays high when agreement is
    high and one category is rare (the Feinstein–Cicchetti paradox).

    Parameters
    ----------
    ratings : DataFrame or array_like, shape (n_subjects, n_raters)
        Category labels; NaN or None where a rater did not rate a subject.
    categories : sequence
        Every allowed label.
    confidence : float
        Level of the t interval.

    Returns
    -------
    ChanceCorrectedResult

    Examples
    --------
    >>> ratings = [["a", "a"], ["a", "a"], ["a", "b"], ["b", "b"]]
    >>> round(gwet_ac1(ratings, categories=["a", "b"]).estimate, 4)
    0.5294
    """
    return gwet_ac2(ratings, categories=categories, weights=None, confidence=confidence)


def conger_kappa(
    ratings: pd.DataFrame | np.ndarray | Sequence,
    *,
    categories: Sequence,
    weights: str | np.ndarray | None = None,
    confidence: float = 0.95,
) -> ChanceCorrectedResult:
    """Compute Conger's kappa, Cohen's kappa generalised to several raters.

    The observed agreement is that of :func:`gwet_ac2`. With :math:`p_{gk}` the
    share of the subjects rated by rater *g* that *g* put in category *k*,
    :math:`\\bar p_k` its mean over the *r* raters and :math:`s^2_{kl}` the
    covariance of :math:`p_{gk}` and :math:`p_{gl}` across raters,
    :math:`p_e = \\sum_{kl} w_{kl}(\\bar p_k \\bar p_l - s^2_{kl}/r)`
    (Conger 1980; Gwet 2014, ch. 2; R ``irrCAC::conger.kappa.raw``).

    Parameters
    ----------
    ratings : DataFrame or array_like, shape (n_subjects, n_raters)
        Category labels; NaN or None where a rater did not rate a subject.
    categories : sequence
        Every allowed label, ordered as the weights are.
    weights : {None, "linear", "quadratic"} or ndarray of shape (q, q)
        Agreement weights; None gives the unweighted coefficient.
    confidence : float
        Level of the t interval.

    Returns
    -------
    ChanceCorrectedResult

    Notes
    -----
    Unlike Fleiss' kappa, Conger's kappa uses each rater's own marginal
    distribution, so it depends on which rater gave which rating (it treats the
    raters as fixed). Raters without any rating are left out of *r*. The
    standard error follows irrCAC's linearisation, which includes each rater's
    marginal.

    References
    ----------
    Conger A.J. (1980) Integration and generalization of kappas for multiple
    raters. Psychological Bulletin 88:322-328.

    Examples
    --------
    >>> ratings = [["a", "a", "a"], ["b", "b", "b"], ["a", "a", "b"], ["a", "b", "b"]]
    >>> round(conger_kappa(ratings, categories=["a", "b"]).estimate, 4)
    0.3846
    """
    confidence = _check_confidence(confidence)
    codes = _rating_codes(ratings, categories)
    q = len(categories)
    w = _agreement_weights(weights, q)
    counts = _counts(codes, q)
    observed, subject_observed, pairable = _observed(counts, w)
    n_raters = codes.shape[1]
    codes = codes[:, (codes >= 0).any(axis=0)]
    n, r = codes.shape
    if r < 2:
        _warn_undefined("Conger's kappa needs two raters with ratings; returning NaN")
        nan = float("nan")
        return ChanceCorrectedResult(
            nan, nan, nan, nan, nan, nan, max(n - 1, 0), observed, nan, n, n_raters
        )

    # Rater x category classification shares; the ratings' presence indicator per cell.
    rated = (codes >= 0).astype(float)
    indicator = np.stack([(codes == k).astype(float) for k in range(q)], axis=2)
    classified = indicator.sum(axis=0)
    rated_by = classified.sum(axis=1)
    shares = classified / rated_by[:, None]
    mean_share = shares.mean(axis=0)
    covariance = (shares.T @ shares - r * np.outer(mean_share, mean_share)) / (r - 1)
    expected = float((w * (np.outer(mean_share, mean_share) - covariance / r)).sum())

    # irrCAC's linearisation of p_e: lambda_ig summed over categories k.
    centred = rated - (rated_by / n)[None, :]
    lam = np.zeros((n, r))
    for k in range(q):
        lam_k = np.zeros((n, r))
        for category in range(q):
            lam_k += w[k, category] * (
                indicator[:, :, category] - centred * shares[None, :, category]
            )
        lam_k *= (n / rated_by)[None, :]
        lam += lam_k * (r * mean_share[k] - shares[None, :, k])
    subject_expected = lam.sum(axis=1) / (r * (r - 1))
    return _finish(
        "Conger's kappa",
        counts,
        n_raters,
        observed,
        subject_observed,
        pairable,
        expected,
        subject_expected,
        confidence,
    )
