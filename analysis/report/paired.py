"""Paired difference of kappa or accuracy between two cells, on the lesions both judged."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.agreement import kappa_from_tables
from analysis.report.tables import _interval

PAIRED_ENDPOINTS = ("kappa", "accuracy")
"""Endpoints whose paired difference :func:`paired_difference` computes."""


@dataclass(frozen=True)
class PairedDifference:
    """The difference first minus second of one endpoint, with its bootstrap interval.

    Attributes
    ----------
    estimate
        The difference on the paired lesions, or NaN when no lesion is paired
        or either kappa is undefined.
    ci_low, ci_high
        Percentile interval bounds, or NaN when the bootstrap distribution is degenerate.
    se
        Standard deviation of the bootstrap distribution.
    n_lesions, n_patients
        Paired lesions and the patients they belong to.
    notes
        Bootstrap warnings as text, such as resamples dropped because they gave NaN.
    """

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    n_lesions: int
    n_patients: int
    notes: tuple[str, ...]


def paired_lesions(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Align two cells' answers for one feature on the lesions both judged.

    A lesion is kept when it has a reference and both cells have a scored
    answer (``analysed`` not NaN). Rows are sorted by ``lesion_id``, so the
    same two cells always give the same units in the same order.

    Parameters
    ----------
    first, second : DataFrame
        Rows of :attr:`analysis.report.inputs.Inputs.answers` for one cell and
        one feature, with columns ``lesion_id``, ``patient``, ``reference`` and ``analysed``.

    Returns
    -------
    DataFrame
        Columns ``lesion_id``, ``patient``, ``reference``, ``first`` and ``second``.

    Examples
    --------
    >>> first = pd.DataFrame({"lesion_id": ["L2", "L1", "L3"], "patient": ["P1", "P1", "P2"],
    ...                       "reference": ["rim", "absent", None],
    ...                       "analysed": ["rim", "absent", "rim"]})
    >>> second = first.assign(analysed=["absent", None, "rim"])
    >>> paired_lesions(first, second).to_numpy().tolist()
    [['L2', 'P1', 'rim', 'rim', 'absent']]
    """
    left = first[["lesion_id", "patient", "reference", "analysed"]].rename(
        columns={"analysed": "first"}
    )
    right = second[["lesion_id", "analysed"]].rename(columns={"analysed": "second"})
    paired = left.merge(right, on="lesion_id", how="inner", validate="one_to_one")
    paired = paired.dropna(subset=["reference", "first", "second"])
    return paired.sort_values("lesion_id", ignore_index=True)


def _codes(values: np.ndarray, categories: list[str], name: str) -> np.ndarray:
    code = {category: position for position, category in enumerate(categories)}
    unknown = sorted({str(value) for value in values if value not in code})
    if unknown:
        raise ValueError(
            f"{name} contains {unknown}, which are not among the categories {categories}"
        )
    return np.array([code[value] for value in values], dtype=int)


def paired_difference(
    reference: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    clusters: np.ndarray,
    *,
    endpoint: str,
    categories: list[str],
    n_resamples: int,
    seed: int,
    confidence: float,
) -> PairedDifference:
    """Compute the paired difference first minus second of kappa or accuracy with the reference.

    Both cells are scored on the same lesions, and every bootstrap resample
    draws patients once and weights both cells' lesions alike, so the interval
    accounts for the correlation between the two cells. Kappa is unweighted
    Cohen's kappa over ``categories``, computed as the per-cell agreement table
    computes it (:func:`analysis.agreement.kappa_from_tables` on weighted
    reference x answer tables). Accuracy is the share of lesions whose answer
    equals the reference. The interval is the percentile interval of
    :func:`analysis.bootstrap.cluster_bootstrap` with ``clusters`` as the patients.

    Parameters
    ----------
    reference, first, second : array_like, shape (n_lesions,)
        Reference answer and each cell's scored answer, aligned by lesion (see
        :func:`paired_lesions`); every value must be one of ``categories``.
    clusters : array_like, shape (n_lesions,)
        Patient of each lesion.
    endpoint : {"kappa", "accuracy"}
    categories : list of str
        The feature's categories plus :data:`analysis.reference.NO_ANSWER`.
    n_resamples, seed, confidence
        Bootstrap resamples, seed of the resampling and interval level.

    Returns
    -------
    PairedDifference
        All NaN, with no lesions, when the arrays are empty.

    Notes
    -----
    When the two cells give the same answer on every lesion, each resample's
    difference is 0, so the bootstrap distribution has a single value and the
    interval is NaN (noted in ``notes``). A resample in which either kappa is
    undefined (a single category in the table) is dropped and counted in ``notes``.

    Examples
    --------
    >>> reference = np.array(["a", "b", "a", "b"])
    >>> result = paired_difference(reference, reference, np.array(["a", "b", "b", "b"]),
    ...                            np.array([1, 2, 3, 4]), endpoint="accuracy",
    ...                            categories=["a", "b"], n_resamples=200, seed=1,
    ...                            confidence=0.95)
    >>> float(result.estimate), result.n_lesions, result.ci_low <= 0.25 <= result.ci_high
    (0.25, 4, True)
    """
    if endpoint not in PAIRED_ENDPOINTS:
        raise ValueError(f"endpoint must be one of {PAIRED_ENDPOINTS}, got {endpoint!r}")
    reference = np.asarray(reference, dtype=object)
    first = np.asarray(first, dtype=object)
    second = np.asarray(second, dtype=object)
    clusters = np.asarray(clusters)
    if not reference.shape == first.shape == second.shape == clusters.shape:
        raise ValueError(
            "reference, first, second and clusters must have the same shape, got "
            f"{reference.shape}, {first.shape}, {second.shape} and {clusters.shape}"
        )
    if reference.size == 0:
        nan = float("nan")
        return PairedDifference(nan, nan, nan, nan, 0, 0, ("no lesion judged by both cells",))

    k = len(categories)
    reference_codes = _codes(reference, categories, "reference")
    first_codes = _codes(first, categories, "first")
    second_codes = _codes(second, categories, "second")

    def one_hot(answer_codes: np.ndarray) -> np.ndarray:
        table = np.zeros((answer_codes.size, k * k))
        table[np.arange(answer_codes.size), reference_codes * k + answer_codes] = 1.0
        return table

    first_table, second_table = one_hot(first_codes), one_hot(second_codes)
    correct_difference = (first_codes == reference_codes).astype(float) - (
        second_codes == reference_codes
    ).astype(float)

    def kappa_difference(weights: np.ndarray) -> np.ndarray:
        first_kappa = kappa_from_tables((weights @ first_table).reshape(-1, k, k))
        second_kappa = kappa_from_tables((weights @ second_table).reshape(-1, k, k))
        return first_kappa - second_kappa

    def accuracy_difference(weights: np.ndarray) -> np.ndarray:
        return (weights @ correct_difference) / weights.sum(axis=1)

    statistic = kappa_difference if endpoint == "kappa" else accuracy_difference
    (estimate, low, high, se), notes = _interval(
        statistic, clusters, n_resamples, seed, confidence
    )
    return PairedDifference(
        estimate=float(estimate),
        ci_low=float(low),
        ci_high=float(high),
        se=float(se),
        n_lesions=int(reference.size),
        n_patients=len(np.unique(clusters)),
        notes=tuple(sorted(notes)),
    )
