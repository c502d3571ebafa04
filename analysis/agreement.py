"""Chance-corrected agreement between raters: Cohen's kappa and Fleiss' kappa.

Every function takes the category set explicitly, so a category no rater chose
still counts, and a label outside the set is an error rather than a new
category. Undefined values (expected agreement 1, no pairable ratings) are NaN
with an :class:`UndefinedStatisticWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

_PERFECT_CHANCE_TOLERANCE = 1e-12
"""Expected agreement within this of 1 leaves kappa undefined (0/0)."""


class UndefinedStatisticWarning(UserWarning):
    """A statistic is undefined for the data given and was returned as NaN."""


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


def _warn_undefined(message: str) -> None:
    warnings.warn(message, UndefinedStatisticWarning, stacklevel=3)


def _check_confidence(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return float(confidence)


def _codes(values: Sequence, categories: Sequence, *, allow_missing: bool) -> np.ndarray:
    """Map labels to their index in ``categories``; missing labels become -1."""
    index = {category: position for position, category in enumerate(categories)}
    if len(index) != len(categories):
        raise ValueError(f"categories must be unique, got {list(categories)!r}")
    codes = np.empty(len(values), dtype=np.int64)
    for position, value in enumerate(values):
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            if not allow_missing:
                raise ValueError(
                    f"missing rating at position {position}; drop incomplete pairs before "
                    "computing Cohen's kappa"
                )
            codes[position] = -1
        elif value in index:
            codes[position] = index[value]
        else:
            raise ValueError(
                f"rating {value!r} is not one of the categories {list(categories)!r}; "
                "add it to categories or recode it"
            )
    return codes


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
        (p * (w - weight_sum * (1.0 - kappa)) ** 2).sum() - (kappa - expected * (1.0 - kappa)) ** 2
    ) / scale
    variance0 = ((chance * (w - weight_sum) ** 2).sum() - expected**2) / scale
    # Rounding can leave -1e-17 where the exact value is 0.
    se = float(np.sqrt(max(variance, 0.0)))
    se0 = float(np.sqrt(max(variance0, 0.0)))

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
