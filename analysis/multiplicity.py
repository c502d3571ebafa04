"""Adjusted p-values for multiple comparisons (family-wise error and false discovery rate)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analysis._agreement_common import StatisticInputError

__all__ = ["ADJUSTMENTS", "adjust_pvalues"]

ADJUSTMENTS = (
    "bonferroni",
    "holm",
    "hochberg",
    "sidak",
    "sidak_stepdown",
    "bh",
    "by",
)


def _step_down(factors: np.ndarray) -> np.ndarray:
    """Step-down: the running maximum from the smallest p-value up."""
    return np.maximum.accumulate(np.minimum(1.0, factors))


def adjust_pvalues(p_values: Sequence[float] | np.ndarray, *, method: str = "holm") -> np.ndarray:
    """Adjust p-values for multiplicity, leaving NaN entries as NaN.

    For the *m* non-NaN p-values sorted as :math:`p_{(1)} \\le \\dots \\le p_{(m)}`:

    - ``bonferroni``: :math:`\\min(1, m p_i)`;
    - ``sidak`` (single step): :math:`1 - (1 - p_i)^m`;
    - ``holm``: :math:`\\max_{j \\le i} \\min(1, (m - j + 1) p_{(j)})`;
    - ``sidak_stepdown`` (Holm–Šidák): :math:`\\max_{j \\le i} 1 - (1 - p_{(j)})^{m-j+1}`;
    - ``hochberg``: :math:`\\min_{j \\ge i} \\min(1, (m - j + 1) p_{(j)})`;
    - ``bh`` (Benjamini–Hochberg): :math:`\\min_{j \\ge i} \\min(1, m p_{(j)}/j)`;
    - ``by`` (Benjamini–Yekutieli): ``bh`` times :math:`\\sum_{l=1}^m 1/l`.

    These are R ``p.adjust`` and ``multtest::mt.rawp2adjp`` (``SidakSS``,
    ``SidakSD``).

    Parameters
    ----------
    p_values : array_like
        Raw p-values in [0, 1]; NaN marks a test that was not done and does not
        count towards *m*.
    method : {"bonferroni", "holm", "hochberg", "sidak", "sidak_stepdown", "bh", "by"}

    Returns
    -------
    ndarray
        Adjusted p-values in the input order and shape.

    References
    ----------
    Holm S. (1979) Scand J Stat 6:65-70. Hochberg Y. (1988) Biometrika 75:800-802.
    Šidák Z. (1967) JASA 62:626-633. Benjamini Y., Hochberg Y. (1995) JRSS B
    57:289-300. Benjamini Y., Yekutieli D. (2001) Ann Stat 29:1165-1188.

    Examples
    --------
    >>> adjust_pvalues([0.01, float("nan"), 0.04, 0.03], method="holm").round(4).tolist()
    [0.03, nan, 0.06, 0.06]
    """
    if method not in ADJUSTMENTS:
        raise StatisticInputError(f"method must be one of {ADJUSTMENTS}, got {method!r}")
    raw = np.asarray(p_values, dtype=float)
    finite = ~np.isnan(raw)
    if np.any((raw[finite] < 0) | (raw[finite] > 1)):
        raise StatisticInputError(
            f"p-values must lie in [0, 1] or be NaN, got {raw[finite & ((raw < 0) | (raw > 1))]}"
        )
    result = np.full(raw.shape, np.nan)
    p = raw[finite]
    m = p.size
    if m == 0:
        return result

    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    rank = np.arange(1, m + 1)
    with np.errstate(divide="ignore"):
        # log1p(-1) is -inf for p = 1, which gives the right adjusted value 1.
        log_complement = np.log1p(-sorted_p)
    if method == "bonferroni":
        adjusted_sorted = np.minimum(1.0, m * sorted_p)
    elif method == "sidak":
        adjusted_sorted = -np.expm1(m * log_complement)
    elif method == "holm":
        adjusted_sorted = _step_down((m - rank + 1) * sorted_p)
    elif method == "sidak_stepdown":
        adjusted_sorted = _step_down(-np.expm1((m - rank + 1) * log_complement))
    else:
        if method == "hochberg":
            factors = (m - rank + 1) * sorted_p
        else:
            factors = m * sorted_p / rank
            if method == "by":
                factors = factors * (1.0 / rank).sum()
        # Step-up: the running minimum from the largest p-value down.
        adjusted_sorted = np.minimum.accumulate(np.minimum(1.0, factors)[::-1])[::-1]

    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    result[finite] = adjusted
    return result
