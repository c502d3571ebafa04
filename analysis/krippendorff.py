"""Krippendorff's alpha for nominal, ordinal, interval and ratio data, missing values allowed.

:func:`krippendorff_alpha` gives the estimate; :func:`krippendorff_alpha_from_counts`
computes it for many reweightings of the units at once, so it can serve as the
statistic of :func:`analysis.bootstrap.cluster_bootstrap` (alpha has no
closed-form standard error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis._agreement_common import StatisticInputError, _codes, _warn_undefined

__all__ = ["LEVELS", "AlphaResult", "krippendorff_alpha", "krippendorff_alpha_from_counts"]

LEVELS = ("nominal", "ordinal", "interval", "ratio")


@dataclass(frozen=True)
class AlphaResult:
    """Krippendorff's alpha.

    Attributes
    ----------
    estimate
        :math:`1 - D_o / D_e`; NaN when there is no disagreement to expect.
    observed_disagreement, expected_disagreement
        :math:`D_o` and :math:`D_e`.
    n_units
        Units with at least two values (pairable units).
    n_values
        Values in pairable units (:math:`n_{..}` of the coincidence matrix).
    level
        Level of measurement that chose the difference function.
    """

    estimate: float
    observed_disagreement: float
    expected_disagreement: float
    n_units: int
    n_values: int
    level: str


def _squared_differences(values: np.ndarray, marginals: np.ndarray, level: str) -> np.ndarray:
    """Krippendorff's metric differences delta^2 between every pair of category values."""
    if level == "nominal":
        return 1.0 - np.eye(values.size)
    if level == "interval":
        return np.subtract.outer(values, values) ** 2
    if level == "ratio":
        total = np.add.outer(values, values)
        difference = np.subtract.outer(values, values)
        return np.divide(difference, total, out=np.zeros_like(difference), where=total != 0) ** 2
    # Ordinal: the marginal mass between the two ranks, each end counted half.
    cumulative = np.concatenate([[0.0], np.cumsum(marginals)])
    low = np.minimum.outer(np.arange(values.size), np.arange(values.size))
    high = np.maximum.outer(np.arange(values.size), np.arange(values.size))
    between = cumulative[high + 1] - cumulative[low]
    return (between - (marginals[low] + marginals[high]) / 2.0) ** 2


def _unit_coincidences(counts: np.ndarray) -> np.ndarray:
    """Return each unit's coincidence matrix, shape (n_units, k, k), zero below two values."""
    m = counts.sum(axis=1)
    pairable = m >= 2
    pairs = counts[:, :, None] * counts[:, None, :]
    k = counts.shape[1]
    pairs[:, np.arange(k), np.arange(k)] -= counts
    scale = np.divide(1.0, m - 1.0, out=np.zeros_like(m), where=pairable)
    return pairs * scale[:, None, None]


def krippendorff_alpha_from_counts(
    counts: np.ndarray,
    weights: np.ndarray,
    *,
    level: str = "nominal",
    values: Sequence[float] | None = None,
) -> np.ndarray:
    """Compute Krippendorff's alpha for many reweightings of the units at once.

    Each row of ``weights`` gives every unit's multiplicity; the coincidence
    matrix is the weighted sum of the units' coincidence matrices and the
    formula is the one in :func:`krippendorff_alpha`. Undefined values are NaN
    without a warning, because the caller counts them.

    Parameters
    ----------
    counts : ndarray, shape (n_units, k)
        How many coders put each unit in each category.
    weights : ndarray, shape (n_resamples, n_units)
    level : {"nominal", "ordinal", "interval", "ratio"}
    values : sequence of float, optional
        Numeric value of each category, for the interval and ratio levels; ranks 0..k-1 when
        omitted.

    Returns
    -------
    ndarray, shape (n_resamples,)

    Examples
    --------
    >>> counts = np.array([[2, 0], [0, 2], [1, 1]])
    >>> np.round(krippendorff_alpha_from_counts(counts, np.ones((1, 3))), 4)
    array([0.4444])
    """
    if level not in LEVELS:
        raise StatisticInputError(f"level must be one of {LEVELS}, got {level!r}")
    counts = np.asarray(counts, dtype=float)
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    if counts.ndim != 2 or weights.shape[1] != counts.shape[0]:
        raise StatisticInputError(
            f"weights must have shape (n_resamples, {counts.shape[0]}) for counts of shape "
            f"{counts.shape}, got {weights.shape}"
        )
    k = counts.shape[1]
    numeric = np.arange(k, dtype=float) if values is None else np.asarray(values, dtype=float)
    if numeric.shape != (k,):
        raise StatisticInputError(f"values must give one number per category ({k}), got {values!r}")

    coincidence = np.tensordot(weights, _unit_coincidences(counts), axes=1)
    marginals = coincidence.sum(axis=2)
    total = marginals.sum(axis=1)
    if level == "ordinal":
        # Ordinal differences depend on each resample's marginals.
        delta = np.stack([_squared_differences(numeric, row, level) for row in marginals])
    else:
        delta = np.broadcast_to(
            _squared_differences(numeric, marginals[0], level), coincidence.shape
        )
    observed = (coincidence * delta).sum(axis=(1, 2))
    expected = np.einsum("rc,rk,rck->r", marginals, marginals, delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 - (total - 1.0) * observed / expected
    return np.where((total > 1) & (expected > 0), alpha, np.nan)


def krippendorff_alpha(
    ratings: pd.DataFrame | np.ndarray | Sequence,
    *,
    level: str = "nominal",
    categories: Sequence | None = None,
) -> AlphaResult:
    """Compute Krippendorff's alpha among coders, allowing missing values.

    From the coincidence matrix
    :math:`o_{ck} = \\sum_u \\#\\{c\\text{-}k \\text{ pairs in } u\\}/(m_u - 1)` over
    units with :math:`m_u \\ge 2` values, :math:`n_c = \\sum_k o_{ck}` and
    :math:`n = \\sum_c n_c`,
    :math:`\\alpha = 1 - (n - 1)\\frac{\\sum_{ck} o_{ck}\\,\\delta^2_{ck}}
    {\\sum_{ck} n_c n_k\\,\\delta^2_{ck}}` with the difference functions of
    Krippendorff (2011): nominal :math:`[c \\ne k]`, interval :math:`(c - k)^2`,
    ratio :math:`((c - k)/(c + k))^2` and ordinal
    :math:`(\\sum_{g=c}^{k} n_g - (n_c + n_k)/2)^2`.

    Parameters
    ----------
    ratings : DataFrame or array_like, shape (n_units, n_coders)
        Values; NaN or None where a coder did not code a unit. Transpose a
        coders x units table first.
    level : {"nominal", "ordinal", "interval", "ratio"}
        Level of measurement.
    categories : sequence, optional
        Every allowed value in its order. Required for non-numeric labels;
        for the interval and ratio levels the values must be numbers. Defaults
        to the sorted distinct values.

    Returns
    -------
    AlphaResult

    Notes
    -----
    Declaring a category no coder used changes nothing at the nominal,
    interval and ratio levels (it has no marginal mass), nor at the ordinal
    level, whose differences depend only on marginal mass between ranks.

    References
    ----------
    Krippendorff K. (2011) Computing Krippendorff's alpha-reliability.
    Annenberg School for Communication, University of Pennsylvania.
    Hayes A.F., Krippendorff K. (2007) Answering the call for a standard
    reliability measure for coding data. Commun Methods Meas 1:77-89.

    Examples
    --------
    >>> ratings = [[1, 1], [2, 2], [1, 2], [3, 3], [None, 3]]
    >>> round(krippendorff_alpha(ratings, level="nominal").estimate, 4)
    0.6667
    """
    if level not in LEVELS:
        raise StatisticInputError(f"level must be one of {LEVELS}, got {level!r}")
    table = ratings.to_numpy(dtype=object) if isinstance(ratings, pd.DataFrame) else ratings
    table = np.asarray(table, dtype=object)
    if table.ndim != 2:
        raise StatisticInputError(
            f"ratings must be a units x coders table, got shape {table.shape}"
        )
    flat = list(table.ravel())
    if categories is None:
        present = {
            v
            for v in flat
            if v is not None and v is not pd.NA and not (isinstance(v, float) and np.isnan(v))
        }
        categories = sorted(present)
    numeric = None
    if level in ("interval", "ratio"):
        try:
            numeric = np.asarray(categories, dtype=float)
        except (TypeError, ValueError) as error:
            raise StatisticInputError(
                f"the {level} level needs numeric values, got categories {list(categories)!r}; "
                "use level='nominal' or 'ordinal' for labels"
            ) from error

    codes = _codes(flat, categories, allow_missing=True).reshape(table.shape)
    counts = np.zeros((table.shape[0], len(categories)))
    for column in codes.T:
        coded = column >= 0
        counts[np.flatnonzero(coded), column[coded]] += 1.0

    pairable = counts.sum(axis=1) >= 2
    coincidence = _unit_coincidences(counts).sum(axis=0)
    marginals = coincidence.sum(axis=1)
    n = float(marginals.sum())
    values = numeric if numeric is not None else np.arange(len(categories), dtype=float)
    delta = _squared_differences(values, marginals, level)
    observed = float((coincidence * delta).sum() / n) if n > 0 else float("nan")
    expected = (
        float((np.outer(marginals, marginals) * delta).sum() / (n * (n - 1)))
        if n > 1
        else float("nan")
    )
    if not expected > 0:
        _warn_undefined(
            "Krippendorff's alpha is undefined: no pairable values or no variation among "
            "them; returning NaN"
        )
        estimate = float("nan")
    else:
        estimate = 1.0 - observed / expected
    return AlphaResult(
        estimate=estimate,
        observed_disagreement=observed,
        expected_disagreement=expected,
        n_units=int(pairable.sum()),
        n_values=int(round(n)),
        level=level,
    )
