"""Helpers shared by :mod:`analysis.agreement` and :mod:`analysis.fleiss`.

This private module contains the warning for undefined statistics, the
tolerance below which expected agreement counts as 1, the check of a
confidence level and the coding of labels as category indices.
:class:`UndefinedStatisticWarning` is public through :mod:`analysis.agreement`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from study.errors import UserInputError

_PERFECT_CHANCE_TOLERANCE = 1e-12
"""Expected agreement within this of 1 leaves kappa undefined (0/0)."""


class UndefinedStatisticWarning(UserWarning):
    """A statistic is undefined for the data given and was returned as NaN."""


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


class StatisticInputError(UserInputError, ValueError):
    """Invalid input to a statistic: the command line exits with code 2.

    It is also a :class:`ValueError`, the exception NumPy and SciPy raise for
    invalid arguments, so callers may catch either.
    """


def _t_interval(
    estimate: float, se: float, df: float, confidence: float, upper: float = np.inf
) -> tuple[float, float]:
    """Wald interval with a Student t quantile, the upper bound capped at ``upper``."""
    if not np.isfinite(se):
        return float("nan"), float("nan")
    quantile = stats.t.ppf(0.5 + confidence / 2, df)
    return float(estimate - quantile * se), float(min(upper, estimate + quantile * se))
