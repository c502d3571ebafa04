"""Diagnostic accuracy against a reference standard, with Wilson and exact intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis._agreement_common import StatisticInputError, _check_confidence, _warn_undefined

__all__ = ["CI_METHODS", "ProportionResult", "diagnostic_accuracy", "proportion_ci"]

CI_METHODS = ("wilson", "exact")


@dataclass(frozen=True)
class ProportionResult:
    """A binomial proportion with its confidence interval.

    Attributes
    ----------
    estimate
        ``successes / n``; NaN when n is 0.
    se
        Wald standard error :math:`\\sqrt{p(1-p)/n}`, given for reference only.
    ci_low, ci_high
        Wilson score or Clopper–Pearson interval.
    successes, n
        Numerator and denominator.
    method
        ``"wilson"`` or ``"exact"``.
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    successes: int
    n: int
    method: str


def proportion_ci(
    successes: int, n: int, *, method: str = "wilson", confidence: float = 0.95
) -> ProportionResult:
    """Compute a binomial proportion and its Wilson score or exact (Clopper–Pearson) interval.

    Wilson (1927): :math:`\\frac{\\hat p + z^2/(2n) \\pm z\\sqrt{\\hat p(1-\\hat p)/n
    + z^2/(4n^2)}}{1 + z^2/n}`. Clopper & Pearson (1934): the
    :math:`\\alpha/2` quantile of Beta(x, n - x + 1) and the :math:`1-\\alpha/2`
    quantile of Beta(x + 1, n - x), with 0 and 1 at the ends. Both agree with
    statsmodels ``proportion_confint`` (methods ``"wilson"`` and ``"beta"``) and
    R ``binom.test`` for the exact interval.

    Parameters
    ----------
    successes, n : int
        Successes and trials, ``0 <= successes <= n``.
    method : {"wilson", "exact"}
    confidence : float

    Returns
    -------
    ProportionResult

    Examples
    --------
    >>> result = proportion_ci(7, 10, method="exact")
    >>> round(result.ci_low, 4), round(result.ci_high, 4)
    (0.3475, 0.9333)
    """
    confidence = _check_confidence(confidence)
    if method not in CI_METHODS:
        raise StatisticInputError(f"method must be one of {CI_METHODS}, got {method!r}")
    if int(n) != n or int(successes) != successes or not 0 <= successes <= n:
        raise StatisticInputError(
            f"need integers 0 <= successes <= n, got successes={successes!r}, n={n!r}"
        )
    successes, n = int(successes), int(n)
    nan = float("nan")
    if n == 0:
        _warn_undefined("a proportion of 0 cases is undefined; returning NaN")
        return ProportionResult(nan, nan, nan, nan, 0, 0, method)

    p = successes / n
    alpha = 1.0 - confidence
    if method == "wilson":
        z = stats.norm.ppf(1 - alpha / 2)
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
        low, high = centre - half, centre + half
    else:
        low = stats.beta.ppf(alpha / 2, successes, n - successes + 1) if successes > 0 else 0.0
        high = stats.beta.ppf(1 - alpha / 2, successes + 1, n - successes) if successes < n else 1.0
    return ProportionResult(
        estimate=p,
        se=float(np.sqrt(p * (1 - p) / n)),
        ci_low=float(max(0.0, low)),
        ci_high=float(min(1.0, high)),
        successes=successes,
        n=n,
        method=method,
    )


def _binary(values: Sequence, positive: object, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise StatisticInputError(f"{name} must be one-dimensional, got shape {array.shape}")
    missing = [
        i for i, v in enumerate(array) if v is None or (isinstance(v, float) and np.isnan(v))
    ]
    if missing:
        raise StatisticInputError(
            f"{name} has a missing value at position {missing[0]}; drop incomplete cases first"
        )
    return array == positive


def diagnostic_accuracy(
    y_true: Sequence,
    y_pred: Sequence,
    *,
    positive: object = 1,
    method: str = "wilson",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Compute sensitivity, specificity, PPV, NPV and accuracy with binomial intervals.

    From the 2x2 table of ``y_pred`` against the reference ``y_true`` (TP, FP,
    FN, TN): sensitivity TP/(TP+FN), specificity TN/(TN+FP), PPV TP/(TP+FP),
    NPV TN/(TN+FN), accuracy (TP+TN)/n, each with :func:`proportion_ci`.

    Parameters
    ----------
    y_true, y_pred : sequence
        Reference and index-test labels, same length; a label equal to
        ``positive`` is positive and any other label negative.
    positive : object
        The positive label.
    method : {"wilson", "exact"}
        Interval for every proportion.
    confidence : float

    Returns
    -------
    DataFrame
        Rows ``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``accuracy``;
        columns ``statistic`` and the fields of :class:`ProportionResult`.

    Notes
    -----
    The intervals treat cases as independent. For lesions clustered in
    patients use :func:`analysis.bootstrap.cluster_bootstrap` instead.

    Examples
    --------
    >>> table = diagnostic_accuracy([1, 1, 1, 0, 0, 0, 0, 1], [1, 1, 0, 0, 0, 1, 0, 1])
    >>> table.set_index("statistic")["estimate"].tolist()
    [0.75, 0.75, 0.75, 0.75, 0.75]
    """
    if len(y_true) != len(y_pred):
        raise StatisticInputError(
            f"y_true and y_pred must have the same length, got {len(y_true)} and {len(y_pred)}"
        )
    truth = _binary(y_true, positive, "y_true")
    test = _binary(y_pred, positive, "y_pred")
    tp = int((truth & test).sum())
    fp = int((~truth & test).sum())
    fn = int((truth & ~test).sum())
    tn = int((~truth & ~test).sum())
    parts = {
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
        "accuracy": (tp + tn, tp + fp + fn + tn),
    }
    rows = []
    for statistic, (successes, n) in parts.items():
        result = proportion_ci(successes, n, method=method, confidence=confidence)
        rows.append({"statistic": statistic, **asdict(result)})
    return pd.DataFrame(rows)
