"""Fleiss' kappa among several raters, with missing ratings allowed.

This module contains :func:`fleiss_kappa` with its large-sample standard
errors, :func:`fleiss_kappa_from_counts` for many reweightings of the subjects
at once (as a statistic for :func:`analysis.bootstrap.cluster_bootstrap`) and
the :class:`FleissResult` record. :mod:`analysis.agreement` re-exports all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis._agreement_common import (
    _PERFECT_CHANCE_TOLERANCE,
    _check_confidence,
    _codes,
    _warn_undefined,
)

__all__ = ["FleissResult", "fleiss_kappa", "fleiss_kappa_from_counts", "rating_counts"]


@dataclass(frozen=True)
class FleissResult:
    """Fleiss' kappa among several raters with its large-sample inference.

    Attributes
    ----------
    estimate
        Fleiss' kappa (Gwet's generalisation when ratings are missing).
    se
        Standard error of the estimate (Gwet 2014); the confidence interval uses it.
    se0
        Standard error under H0 kappa = 0 (Fleiss, Nee & Landis 1979); ``z`` uses it.
    z, p_value
        ``estimate / se0`` and its two-sided normal p-value.
    ci_low, ci_high
        Wald interval ``estimate -/+ z_(1-alpha/2) * se``.
    n_subjects
        Subjects with at least one rating.
    n_raters
        Raters (columns) in the ratings table.
    """

    estimate: float
    se: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    n_subjects: int
    n_raters: int
    se0: float


def _rating_counts(ratings: pd.DataFrame | np.ndarray, categories: Sequence) -> np.ndarray:
    """Count, per subject, how many raters chose each category (subjects x categories)."""
    table = ratings.to_numpy(dtype=object) if isinstance(ratings, pd.DataFrame) else ratings
    table = np.asarray(table, dtype=object)
    if table.ndim != 2:
        raise ValueError(f"ratings must be a subjects x raters table, got shape {table.shape}")
    codes = _codes(list(table.ravel()), categories, allow_missing=True).reshape(table.shape)
    counts = np.zeros((table.shape[0], len(categories)))
    for column in codes.T:
        rated = column >= 0
        counts[np.flatnonzero(rated), column[rated]] += 1.0
    return counts


def rating_counts(ratings: pd.DataFrame | np.ndarray, *, categories: Sequence) -> np.ndarray:
    """Count, per subject, how many raters chose each category.

    This is the subjects x categories table that Fleiss' kappa, Gwet's AC1 and
    Krippendorff's alpha start from (statsmodels ``aggregate_raters``).

    Parameters
    ----------
    ratings : DataFrame or ndarray, shape (n_subjects, n_raters)
        Category labels; NaN or None where a rater did not rate a subject.
    categories : sequence
        Every allowed label, in the order of the columns returned.

    Returns
    -------
    ndarray, shape (n_subjects, n_categories)

    Examples
    --------
    >>> rating_counts([["a", "b", "a"], ["b", None, "b"]], categories=["a", "b"])
    array([[2., 1.],
           [0., 2.]])
    """
    return _rating_counts(ratings, categories)


def _subject_agreement(counts: np.ndarray) -> np.ndarray:
    """Share of agreeing rater pairs per subject; 0 for subjects with fewer than two ratings."""
    raters = counts.sum(axis=1)
    pairs = raters * (raters - 1)
    agreeing = (counts * (counts - 1)).sum(axis=1)
    return np.divide(agreeing, pairs, out=np.zeros_like(agreeing), where=pairs > 0)


def _fleiss_point(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Gwet's generalised Fleiss' kappa per row of subject multiplicities ``weights``."""
    raters = counts.sum(axis=1)
    pairable = raters >= 2
    agreement = _subject_agreement(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / raters[:, None]
        prevalence = (weights @ shares) / weights.sum(axis=1, keepdims=True)
        observed = (weights @ agreement) / (weights @ pairable.astype(float))
        expected = (prevalence**2).sum(axis=1)
        kappa = (observed - expected) / (1.0 - expected)
    undefined = ~np.isfinite(observed) | (1.0 - expected <= _PERFECT_CHANCE_TOLERANCE)
    return np.where(undefined, np.nan, kappa)


def fleiss_kappa_from_counts(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Compute Fleiss' kappa for many reweightings of the subjects at once.

    Each row of ``weights`` gives every subject's multiplicity (for example how
    often a bootstrap resample drew it); the formula is the one in
    :func:`fleiss_kappa` with sums over subjects weighted. Undefined values are
    NaN without a warning, because the caller counts them.

    Parameters
    ----------
    counts : ndarray, shape (n_subjects, n_categories)
        Number of raters who chose each category for each subject.
    weights : ndarray, shape (n_resamples, n_subjects)

    Returns
    -------
    ndarray, shape (n_resamples,)

    Examples
    --------
    >>> counts = np.array([[3, 0], [0, 3], [2, 1], [1, 2]])
    >>> np.round(fleiss_kappa_from_counts(counts, np.ones((1, 4))), 4)
    array([0.3333])
    """
    counts = np.asarray(counts, dtype=float)
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    if counts.ndim != 2 or weights.shape[1] != counts.shape[0]:
        raise ValueError(
            f"weights must have shape (n_resamples, {counts.shape[0]}) for counts of shape "
            f"{counts.shape}, got {weights.shape}"
        )
    rated = counts.sum(axis=1) > 0
    return _fleiss_point(counts[rated], weights[:, rated])


def fleiss_kappa(
    ratings: pd.DataFrame | np.ndarray,
    *,
    categories: Sequence,
    confidence: float = 0.95,
) -> FleissResult:
    """Compute Fleiss' kappa for many raters, allowing missing ratings.

    With :math:`r_{ik}` raters putting subject *i* in category *k*,
    :math:`r_i = \\sum_k r_{ik}`, the :math:`n'` subjects with :math:`r_i \\ge 2`
    give :math:`p_a = \\frac{1}{n'}\\sum_i \\sum_k r_{ik}(r_{ik}-1)/(r_i(r_i-1))`;
    all *n* rated subjects give :math:`\\pi_k = \\frac1n \\sum_i r_{ik}/r_i` and
    :math:`p_e = \\sum_k \\pi_k^2`; :math:`\\kappa = (p_a - p_e)/(1 - p_e)`.
    This is Gwet's generalisation (Gwet 2014, ch. 2; R irrCAC
    ``fleiss.kappa.raw``) and equals Fleiss (1971) when every subject has all ratings.

    ``se`` is Gwet's linearised standard error
    :math:`\\sqrt{\\sum_i(\\kappa_i^* - \\kappa)^2/(n(n-1))}` with
    :math:`\\kappa_i^* = \\frac{n}{n'}\\frac{p_{a|i} - p_e[r_i\\ge2]}{1-p_e}
    - 2(1-\\kappa)\\frac{p_{e|i} - p_e}{1-p_e}` and
    :math:`p_{e|i} = \\sum_k r_{ik}\\pi_k/r_i` (no finite-population correction).
    ``se0`` is the H0 standard error of Fleiss, Nee & Landis (1979), as R
    ``irr::kappam.fleiss`` computes it:
    :math:`\\sqrt{2[(\\sum\\pi q)^2 - \\sum \\pi q (q - \\pi)]} / \\sum \\pi q
    \\cdot \\sqrt{\\sum_i 1/(r_i(r_i-1))} / n'` with :math:`q = 1 - \\pi`, which
    for *m* ratings on every subject is irr's
    :math:`\\sqrt{2/(n m (m-1))}\\,\\sqrt{\\cdot}/\\sum\\pi q`.

    Parameters
    ----------
    ratings : DataFrame or ndarray, shape (n_subjects, n_raters)
        Category labels; NaN or None where a rater did not rate a subject.
    categories : sequence
        Every allowed label.
    confidence : float
        Level of the Wald interval, built from ``se`` with a normal quantile and
        not truncated at 1 (irrCAC uses a t quantile with n - 1 degrees of
        freedom and truncates).

    Notes
    -----
    Subjects without any rating are dropped. The H0 standard error with missing
    ratings sums each subject's variance under H0 over its own number of raters;
    irr defines it only for complete data.

    References
    ----------
    Fleiss J.L. (1971) Psychological Bulletin 76:378-382.
    Fleiss J.L., Nee J.C.M., Landis J.R. (1979) Psychological Bulletin 86:974-977.
    Gwet K.L. (2014) Handbook of Inter-Rater Reliability, 4th ed.

    Examples
    --------
    >>> ratings = [["a", "a", "a"], ["b", "b", "b"], ["a", "a", "b"], ["a", "b", "b"]]
    >>> round(fleiss_kappa(ratings, categories=["a", "b"]).estimate, 4)
    0.3333
    """
    confidence = _check_confidence(confidence)
    n_raters = np.shape(ratings)[1] if np.ndim(ratings) == 2 else 0
    counts = _rating_counts(ratings, categories)
    counts = counts[counts.sum(axis=1) > 0]
    n = counts.shape[0]
    nan = float("nan")

    kappa = float(_fleiss_point(counts, np.ones((1, n)))[0]) if n else nan
    if not np.isfinite(kappa):
        _warn_undefined(
            "Fleiss' kappa is undefined: no subject has two ratings or every rating is in "
            "one category; returning NaN"
        )
        return FleissResult(nan, nan, nan, nan, nan, nan, n, n_raters, nan)

    raters = counts.sum(axis=1)
    pairable = raters >= 2
    n_pairable = int(pairable.sum())
    prevalence = (counts / raters[:, None]).mean(axis=0)
    expected = float((prevalence**2).sum())
    agreement = _subject_agreement(counts)

    subject_kappa = (n / n_pairable) * (agreement - expected * pairable) / (1.0 - expected)
    subject_expected = (counts @ prevalence) / raters
    correction = 2 * (1.0 - kappa) * (subject_expected - expected) / (1.0 - expected)
    linearised = subject_kappa - correction
    if n > 1:
        se = float(np.sqrt(((linearised - kappa) ** 2).sum() / (n * (n - 1))))
    else:
        _warn_undefined("the standard error of Fleiss' kappa needs two subjects; NaN")
        se = nan

    spread = prevalence * (1.0 - prevalence)
    inverse_pairs = (1.0 / (raters[pairable] * (raters[pairable] - 1))).sum()
    se0 = float(
        np.sqrt(2 * (spread.sum() ** 2 - (spread * (1.0 - 2 * prevalence)).sum()))
        / spread.sum()
        * np.sqrt(inverse_pairs)
        / n_pairable
    )

    quantile = stats.norm.ppf(0.5 + confidence / 2)
    z = kappa / se0 if se0 > 0 else nan
    return FleissResult(
        estimate=kappa,
        se=se,
        z=float(z),
        p_value=float(2 * stats.norm.sf(abs(z))),
        ci_low=float(kappa - quantile * se),
        ci_high=float(kappa + quantile * se),
        n_subjects=n,
        n_raters=int(n_raters),
        se0=se0,
    )
