"""A registry of agreement and reliability statistics with the invariances each one has.

Each entry wraps a statistic as ``compute(ratings, categories) -> float`` on a
subjects x raters table, and records which transformations leave it unchanged.
The property tests iterate over :data:`STATISTICS`, so a new statistic added
here is checked for the properties it declares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from analysis.agreement import cohen_kappa, fleiss_kappa, pabak, percent_agreement
from analysis.gwet import conger_kappa, gwet_ac1, gwet_ac2
from analysis.icc import icc
from analysis.krippendorff import krippendorff_alpha

__all__ = ["STATISTICS", "StatisticSpec", "statistic_names"]

Compute = Callable[[np.ndarray, Sequence], float]


@dataclass(frozen=True)
class StatisticSpec:
    """One registered statistic and its declared properties.

    Attributes
    ----------
    name
        Unique name, used as the test id.
    compute
        ``compute(ratings, categories)`` with ``ratings`` an object array of
        shape (n_subjects, n_raters) and ``categories`` every allowed label in order.
    n_raters
        Exactly this many raters, or None for two or more.
    allows_missing
        Whether ratings may contain None.
    label_kind
        ``"nominal"``: only the identity of labels matters, so a bijective
        relabelling to strings changes nothing. ``"numeric"``: labels are values,
        so only their type (int, float, NumPy scalar) may change.
    symmetric_in_raters
        Permuting the raters (columns) leaves the value unchanged.
    invariant_to_case_order
        Permuting the subjects (rows) leaves the value unchanged.
    invariant_to_label_type
        Relabelling as ``label_kind`` allows leaves the value unchanged.
    invariant_to_unused_category
        Declaring an extra category that no rater used leaves the value unchanged.
    """

    name: str
    compute: Compute
    n_raters: int | None
    allows_missing: bool
    label_kind: str
    symmetric_in_raters: bool = True
    invariant_to_case_order: bool = True
    invariant_to_label_type: bool = True
    invariant_to_unused_category: bool = True


def _pair(function: Callable[..., object], **options: object) -> Compute:
    def compute(ratings: np.ndarray, categories: Sequence) -> float:
        result = function(
            list(ratings[:, 0]), list(ratings[:, 1]), categories=categories, **options
        )
        return float(getattr(result, "estimate", result))

    return compute


def _many(function: Callable[..., object], **options: object) -> Compute:
    def compute(ratings: np.ndarray, categories: Sequence) -> float:
        return float(function(ratings, categories=categories, **options).estimate)

    return compute


def _percent(ratings: np.ndarray, categories: Sequence) -> float:
    return percent_agreement(list(ratings[:, 0]), list(ratings[:, 1]))


def _icc(form: str) -> Compute:
    def compute(ratings: np.ndarray, categories: Sequence) -> float:
        return icc(np.asarray(ratings, dtype=float), form=form).estimate

    return compute


STATISTICS: tuple[StatisticSpec, ...] = (
    StatisticSpec("cohen_kappa", _pair(cohen_kappa), 2, False, "nominal"),
    StatisticSpec(
        "cohen_kappa_linear",
        _pair(cohen_kappa, weights="linear"),
        2,
        False,
        "numeric",
    ),
    StatisticSpec(
        "cohen_kappa_quadratic",
        _pair(cohen_kappa, weights="quadratic"),
        2,
        False,
        "numeric",
    ),
    StatisticSpec("percent_agreement", _percent, 2, False, "nominal"),
    StatisticSpec("pabak", _pair(pabak), 2, False, "nominal", invariant_to_unused_category=False),
    StatisticSpec("fleiss_kappa", _many(fleiss_kappa), None, True, "nominal"),
    StatisticSpec("conger_kappa", _many(conger_kappa), None, True, "nominal"),
    StatisticSpec(
        "gwet_ac1", _many(gwet_ac1), None, True, "nominal", invariant_to_unused_category=False
    ),
    StatisticSpec(
        "gwet_ac2_quadratic",
        _many(gwet_ac2, weights="quadratic"),
        None,
        True,
        "numeric",
        invariant_to_unused_category=False,
    ),
    StatisticSpec(
        "krippendorff_alpha_nominal",
        _many(krippendorff_alpha, level="nominal"),
        None,
        True,
        "nominal",
    ),
    StatisticSpec(
        "krippendorff_alpha_ordinal",
        _many(krippendorff_alpha, level="ordinal"),
        None,
        True,
        "numeric",
    ),
    StatisticSpec(
        "krippendorff_alpha_interval",
        _many(krippendorff_alpha, level="interval"),
        None,
        True,
        "numeric",
    ),
    StatisticSpec(
        "krippendorff_alpha_ratio",
        _many(krippendorff_alpha, level="ratio"),
        None,
        True,
        "numeric",
    ),
    *(
        StatisticSpec(f"icc_{form}", _icc(form), None, False, "numeric")
        for form in ("ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k")
    ),
)
"""Every registered statistic; names are unique."""


def statistic_names() -> list[str]:
    """Return the names of the registered statistics in registry order.

    Examples
    --------
    >>> statistic_names()[:3]
    ['cohen_kappa', 'cohen_kappa_linear', 'cohen_kappa_quadratic']
    """
    return [spec.name for spec in STATISTICS]
