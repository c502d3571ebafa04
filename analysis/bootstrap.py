"""Cluster bootstrap confidence intervals (percentile and BCa).

Units (lesions) are resampled by whole clusters (patients), so lesions of one
patient stay together. A statistic receives a resample as a row of unit
multiplicities, which lets it be vectorised over many resamples at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

_MAX_WEIGHT_ELEMENTS = 2**22
"""Bound on the elements of one weight matrix handed to the statistic (32 MiB of float64)."""

_EQUAL_TOLERANCE = 1e-12
"""Relative spread below which the bootstrap distribution counts as a single value."""

METHODS = ("percentile", "basic", "bca")


class DegenerateBootstrapWarning(UserWarning):
    """The bootstrap distribution cannot give an interval (returned as NaN)."""


class NaNResampleWarning(UserWarning):
    """Some resamples gave NaN and were left out of the bootstrap distribution."""


@dataclass(frozen=True)
class BootstrapResult:
    """A bootstrap confidence interval.

    Attributes
    ----------
    estimate
        The statistic on the original sample (every unit with weight 1).
    se
        Standard deviation of the bootstrap distribution (ddof=1).
    ci_low, ci_high
        Interval bounds; NaN when the distribution is degenerate.
    n_resamples
        Resamples that gave a finite value and entered the interval.
    method
        ``"percentile"``, ``"basic"`` or ``"bca"``.
    confidence
        Level of the interval.
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    n_resamples: int
    method: str
    confidence: float


Statistic = Callable[[np.ndarray], np.ndarray]


def _evaluate(statistic: Statistic, weights: np.ndarray, width: int | None = None) -> np.ndarray:
    """Call the statistic; it returns shape (m,), or (m, width) for many statistics at once."""
    values = np.asarray(statistic(weights), dtype=float)
    expected = (weights.shape[0],) if width is None else (weights.shape[0], width)
    if values.shape != expected:
        raise ValueError(
            f"statistic must return shape {expected} for weights of shape "
            f"{weights.shape}, got {values.shape}"
        )
    return values


def _chunk_rows(n_units: int) -> int:
    return max(1, _MAX_WEIGHT_ELEMENTS // max(n_units, 1))


def _resample_values(
    statistic: Statistic,
    cluster_of_unit: np.ndarray,
    n_clusters: int,
    n_resamples: int,
    rng: np.random.Generator,
    width: int | None = None,
) -> np.ndarray:
    """Draw clusters with replacement and evaluate the statistic, chunk by chunk."""
    chunk = _chunk_rows(cluster_of_unit.size)
    equal = np.full(n_clusters, 1.0 / n_clusters)
    values = np.empty((n_resamples,) if width is None else (n_resamples, width))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        # One multinomial draw of n_clusters per resample is the count of each cluster.
        cluster_counts = rng.multinomial(n_clusters, equal, size=stop - start)
        weights = cluster_counts[:, cluster_of_unit].astype(float)
        values[start:stop] = _evaluate(statistic, weights, width)
    return values


def _jackknife_values(
    statistic: Statistic, cluster_of_unit: np.ndarray, n_clusters: int, width: int | None = None
) -> np.ndarray:
    """Evaluate the statistic leaving out one cluster at a time."""
    chunk = _chunk_rows(cluster_of_unit.size)
    values = np.empty((n_clusters,) if width is None else (n_clusters, width))
    for start in range(0, n_clusters, chunk):
        stop = min(start + chunk, n_clusters)
        left_out = np.arange(start, stop)
        weights = (cluster_of_unit[None, :] != left_out[:, None]).astype(float)
        values[start:stop] = _evaluate(statistic, weights, width)
    return values


def jackknife_acceleration(*groups: np.ndarray) -> float:
    """Compute the BCa acceleration from leave-one-out jackknife values.

    For one group of *n* jackknife values :math:`\\hat\\theta_{(i)}`, with
    :math:`d_i = \\bar\\theta_{(\\cdot)} - \\hat\\theta_{(i)}`,
    :math:`\\hat a = \\sum d_i^3 / (6 (\\sum d_i^2)^{3/2})` (Efron & Tibshirani 1993,
    eq. 14.15). For several independent samples (one group of jackknife values
    per sample, each leaving out one observation of that sample),
    :math:`U_{ji} = (n_j - 1) d_{ji}` and
    :math:`\\hat a = \\frac16 \\sum_j \\sum_i U_{ji}^3/n_j^3 \\big/
    (\\sum_j \\sum_i U_{ji}^2/n_j^2)^{3/2}`, which reduces to the one-group formula
    and is what ``scipy.stats.bootstrap`` uses for several samples.

    Parameters
    ----------
    *groups : ndarray
        Jackknife values, one array per sample.

    Returns
    -------
    float
        The acceleration; NaN when every jackknife value of every group is equal.

    Examples
    --------
    >>> round(jackknife_acceleration(np.array([1.0, 2.0, 4.0, 9.0])), 4)
    -0.064
    """
    numerator = 0.0
    denominator = 0.0
    for group in groups:
        values = np.asarray(group, dtype=float)
        n = values.size
        scaled = (n - 1) * (values.mean() - values)
        numerator += (scaled**3).sum() / n**3
        denominator += (scaled**2).sum() / n**2
    if denominator == 0:
        return float("nan")
    return float(numerator / (6.0 * denominator**1.5))


def _bca_levels(
    resampled: np.ndarray, estimate: float, jackknife: np.ndarray, alpha: float
) -> tuple[float, float] | str:
    """Return the BCa quantile levels, or the reason they are undefined."""
    # Bias correction from the share of resamples below the estimate, ties split in half.
    below = ((resampled < estimate).sum() + (resampled <= estimate).sum()) / (2 * resampled.size)
    bias = stats.norm.ppf(below)
    if not np.isfinite(bias):
        return "every resample lies on one side of the estimate, so the bias correction is infinite"

    if not np.all(np.isfinite(jackknife)):
        return "a leave-one-cluster-out jackknife value is NaN, so the acceleration is undefined"
    acceleration = jackknife_acceleration(jackknife)
    if not np.isfinite(acceleration):
        return "all jackknife values are equal, so the acceleration denominator is 0"

    levels = []
    for z_alpha in stats.norm.ppf([alpha / 2, 1 - alpha / 2]):
        shifted = bias + z_alpha
        levels.append(float(stats.norm.cdf(bias + shifted / (1 - acceleration * shifted))))
    return levels[0], levels[1]


def _check_options(
    clusters: np.ndarray, n_resamples: int, confidence: float, method: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate the options; return the labels, each unit's cluster index and the cluster count."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if int(n_resamples) != n_resamples or n_resamples < 2:
        raise ValueError(f"n_resamples must be an integer of at least 2, got {n_resamples!r}")
    labels = np.asarray(clusters)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"clusters must be a non-empty 1-D array, got shape {labels.shape}")
    _, cluster_of_unit = np.unique(labels, return_inverse=True)
    return labels, cluster_of_unit, int(cluster_of_unit.max()) + 1


def cluster_bootstrap(
    statistic: Statistic,
    clusters: np.ndarray,
    *,
    n_resamples: int = 2000,
    seed: int,
    confidence: float = 0.95,
    method: str = "percentile",
) -> BootstrapResult:
    """Compute a cluster bootstrap confidence interval for a weighted statistic.

    Each resample draws the G clusters with replacement (a multinomial draw of
    G with equal probabilities); a unit's weight is how often its cluster was
    drawn. The percentile interval takes the :math:`\\alpha/2` and
    :math:`1-\\alpha/2` quantiles of the resampled values. BCa (Efron 1987;
    Efron & Tibshirani 1993, ch. 14) uses the levels
    :math:`\\Phi(\\hat z_0 + (\\hat z_0 + z_\\alpha)/(1 - \\hat a(\\hat z_0 + z_\\alpha)))`,
    with :math:`\\hat z_0 = \\Phi^{-1}(\\#\\{\\hat\\theta^*_b < \\hat\\theta\\}/B)`
    (ties counted half) and the acceleration
    :math:`\\hat a = \\sum d_i^3 / (6 (\\sum d_i^2)^{3/2})`,
    :math:`d_i = \\bar\\theta_{(\\cdot)} - \\hat\\theta_{(i)}`, from a jackknife that
    leaves out one cluster at a time.

    Parameters
    ----------
    statistic : callable
        Takes a float array of shape (m, n_units) of unit multiplicities and
        returns shape (m,). The point estimate is ``statistic(ones((1, n_units)))``.
    clusters : array_like, shape (n_units,)
        Cluster label (patient id) of every unit.
    n_resamples : int
        Number of bootstrap resamples.
    seed : int
        Seed of the ``numpy.random.default_rng`` that draws the resamples.
    confidence : float
        Level of the interval.
    method : {"percentile", "basic", "bca"}
        ``"basic"`` is the reverse-percentile interval
        :math:`(2\\hat\\theta - \\theta^*_{1-\\alpha/2}, 2\\hat\\theta - \\theta^*_{\\alpha/2})`
        (Davison & Hinkley 1997, eq. 5.6; R ``boot.ci(type = "basic")``).

    Returns
    -------
    BootstrapResult

    Warns
    -----
    NaNResampleWarning
        When some resamples give NaN; they are dropped and ``n_resamples`` counts the rest.
    DegenerateBootstrapWarning
        When the estimate is NaN, all resamples are equal, or the BCa correction
        is undefined; the bounds (and for a single-valued distribution the SE) are NaN.

    Examples
    --------
    >>> x = np.array([2.0, 4.0, 3.0, 8.0, 5.0, 7.0])
    >>> mean = lambda w: (w @ x) / w.sum(axis=1)
    >>> result = cluster_bootstrap(mean, [1, 1, 2, 2, 3, 3], n_resamples=500, seed=1)
    >>> float(result.estimate), result.ci_low <= result.estimate <= result.ci_high
    (4.833333333333333, True)
    """
    labels, cluster_of_unit, n_clusters = _check_options(
        clusters, n_resamples, confidence, method
    )

    nan = float("nan")
    estimate = float(_evaluate(statistic, np.ones((1, labels.size)))[0])
    if not np.isfinite(estimate):
        warnings.warn(
            "the statistic is NaN on the original sample, so no interval; returning NaN",
            DegenerateBootstrapWarning,
            stacklevel=2,
        )
        return BootstrapResult(nan, nan, nan, nan, 0, method, confidence)

    rng = np.random.default_rng(seed)
    resampled = _resample_values(statistic, cluster_of_unit, n_clusters, int(n_resamples), rng)
    return _summarise(
        estimate,
        resampled,
        lambda: _jackknife_values(statistic, cluster_of_unit, n_clusters),
        method,
        float(confidence),
        "",
    )


def _summarise(
    estimate: float,
    resampled: np.ndarray,
    jackknife: Callable[[], np.ndarray],
    method: str,
    confidence: float,
    label: str,
) -> BootstrapResult:
    """Turn one statistic's resampled values into an interval, warning on degenerate cases."""
    nan = float("nan")
    finite = np.isfinite(resampled)
    if not finite.all():
        warnings.warn(
            f"{label}{int((~finite).sum())} of {resampled.size} resamples gave NaN and were "
            "dropped",
            NaNResampleWarning,
            stacklevel=3,
        )
        resampled = resampled[finite]

    # Values equal up to rounding (1 and 0.9999999999999998) count as a single value.
    spread_tolerance = _EQUAL_TOLERANCE * max(1.0, abs(estimate))
    if resampled.size < 2 or np.ptp(resampled) <= spread_tolerance:
        warnings.warn(
            f"{label}the bootstrap distribution has fewer than two distinct values, so its SE "
            "and interval are undefined; returning NaN",
            DegenerateBootstrapWarning,
            stacklevel=3,
        )
        return BootstrapResult(estimate, nan, nan, nan, int(resampled.size), method, confidence)
    se = float(resampled.std(ddof=1))

    alpha = 1.0 - confidence
    levels: tuple[float, float] | str = (alpha / 2, 1 - alpha / 2)
    if method == "bca":
        levels = _bca_levels(resampled, estimate, jackknife(), alpha)
    if isinstance(levels, str):
        warnings.warn(
            f"{label}BCa interval undefined: {levels}; returning NaN bounds",
            DegenerateBootstrapWarning,
            stacklevel=3,
        )
        return BootstrapResult(estimate, se, nan, nan, int(resampled.size), method, confidence)

    low, high = np.quantile(resampled, levels)
    if method == "basic":
        low, high = 2 * estimate - high, 2 * estimate - low
    return BootstrapResult(
        estimate=estimate,
        se=se,
        ci_low=float(low),
        ci_high=float(high),
        n_resamples=int(resampled.size),
        method=method,
        confidence=confidence,
    )


def cluster_bootstrap_many(
    statistic: Statistic,
    clusters: np.ndarray,
    names: Sequence[str],
    *,
    n_resamples: int = 2000,
    seed: int,
    confidence: float = 0.95,
    method: str = "percentile",
) -> pd.DataFrame:
    """Compute cluster bootstrap intervals for many statistics from the same resamples.

    Same resampling and intervals as :func:`cluster_bootstrap`, but ``statistic``
    returns one column per statistic, so every statistic (for example kappa of
    each cell and feature) sees the same resampled patients and the weight
    matrix is built once per chunk instead of once per statistic.

    Parameters
    ----------
    statistic : callable
        Takes a float array of shape (m, n_units) of unit multiplicities and
        returns shape (m, len(names)).
    clusters : array_like, shape (n_units,)
        Cluster label (patient id) of every unit.
    names : sequence of str
        One name per statistic, the ``statistic`` column of the result.
    n_resamples, seed, confidence, method
        As in :func:`cluster_bootstrap`.

    Returns
    -------
    DataFrame
        One row per statistic: ``statistic`` and the fields of :class:`BootstrapResult`.

    Warns
    -----
    NaNResampleWarning, DegenerateBootstrapWarning
        As in :func:`cluster_bootstrap`, the message starting with the statistic's name.

    Examples
    --------
    >>> x = np.array([[2.0, 1.0], [4.0, 1.5], [3.0, 0.5], [8.0, 2.0]])
    >>> means = lambda w: (w @ x) / w.sum(axis=1, keepdims=True)
    >>> table = cluster_bootstrap_many(means, [1, 1, 2, 3], ["a", "b"], n_resamples=200, seed=1)
    >>> table["statistic"].tolist(), table["estimate"].round(4).tolist()
    (['a', 'b'], [4.25, 1.25])
    """
    labels, cluster_of_unit, n_clusters = _check_options(
        clusters, n_resamples, confidence, method
    )
    width = len(names)
    estimates = _evaluate(statistic, np.ones((1, labels.size)), width)[0]
    rng = np.random.default_rng(seed)
    resampled = _resample_values(
        statistic, cluster_of_unit, n_clusters, int(n_resamples), rng, width
    )
    jackknife: np.ndarray | None = None

    def jackknife_column(column: int) -> Callable[[], np.ndarray]:
        def values() -> np.ndarray:
            nonlocal jackknife
            if jackknife is None:
                jackknife = _jackknife_values(statistic, cluster_of_unit, n_clusters, width)
            return jackknife[:, column]

        return values

    rows = []
    nan = float("nan")
    for column, name in enumerate(names):
        estimate = float(estimates[column])
        if not np.isfinite(estimate):
            warnings.warn(
                f"{name}: the statistic is NaN on the original sample, so no interval",
                DegenerateBootstrapWarning,
                stacklevel=2,
            )
            result = BootstrapResult(nan, nan, nan, nan, 0, method, float(confidence))
        else:
            result = _summarise(
                estimate,
                resampled[:, column],
                jackknife_column(column),
                method,
                float(confidence),
                f"{name}: ",
            )
        rows.append({"statistic": name, **asdict(result)})
    return pd.DataFrame(rows)
