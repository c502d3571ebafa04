"""Obuchowski–Rockette MRMC analysis of AUCs with Hillis degrees of freedom.

In a multi-reader multi-case (MRMC) study every reader rates every case under
every modality (here a modality is also a model configuration, such as a prompt
strategy). The Obuchowski–Rockette (OR) model treats the AUC of modality
:math:`i` and reader :math:`j` as

.. math::

    \\hat\\theta_{ij} = \\mu + \\tau_i + R_j + (\\tau R)_{ij} + \\varepsilon_{ij},

with readers random and the errors :math:`\\varepsilon` correlated because the
same cases are read: :math:`\\mathrm{Var}`, :math:`\\mathrm{Cov}_1` (same reader,
different modality), :math:`\\mathrm{Cov}_2` (different reader, same modality)
and :math:`\\mathrm{Cov}_3` (both different), estimated here from a jackknife
over cases. References: Obuchowski & Rockette (1995) Commun Stat Simul Comput
24:285; Hillis, Obuchowski, Schartz & Berbaum (2005) Stat Med 24:1579,
doi:10.1002/sim.2024; Hillis (2007) Stat Med 26:596, doi:10.1002/sim.2532.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from study.errors import UserInputError


@dataclass(frozen=True)
class MrmcResult:
    """An OR–Hillis MRMC analysis (random readers and random cases).

    Attributes
    ----------
    auc
        Tidy table of the AUC per ``modality`` and ``reader``.
    modality_auc
        ``modality``, ``estimate`` (mean AUC over readers), ``se``, ``df``,
        ``ci_low``, ``ci_high`` (single-modality Hillis intervals).
    differences
        ``modality_a``, ``modality_b``, ``estimate`` (a minus b), ``se``, ``t``,
        ``df``, ``p_value``, ``ci_low``, ``ci_high``.
    f_statistic, df_num, df_den, p_value
        The OR F test of equal modality AUCs with Hillis denominator df.
    variance_components
        ``var``, ``cov1``, ``cov2``, ``cov3``, ``ms_t``, ``ms_tr`` (mean squares of
        modality and modality x reader).
    confidence
        Level of the intervals.
    """

    auc: pd.DataFrame
    modality_auc: pd.DataFrame
    differences: pd.DataFrame
    f_statistic: float
    df_num: int
    df_den: float
    p_value: float
    variance_components: dict
    confidence: float


def _kernel(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Return the Mann–Whitney kernel (1, 1/2 for a tie, 0) per diseased and healthy case."""
    cases = scores[..., positive][..., :, None]
    controls = scores[..., ~positive][..., None, :]
    return (cases > controls) + 0.5 * (cases == controls)


def _wilcoxon_auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Compute the Mann–Whitney AUC (ties count 1/2) of the last axis of ``scores``."""
    return _kernel(scores, positive).mean(axis=(-2, -1))


def _jackknife_aucs(ratings: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Return the AUCs with each case left out, shape (n_cases, I, J).

    Leaving out a diseased case removes its row of the kernel and a healthy case its
    column, so every leave-one-out AUC comes from the kernel's row and column sums.
    """
    kernel = _kernel(ratings, positive)
    n_positive, n_negative = kernel.shape[-2:]
    total = kernel.sum(axis=(-2, -1))
    values = np.empty((positive.size,) + ratings.shape[:2])
    row_sums = np.moveaxis(kernel.sum(axis=-1), -1, 0)
    column_sums = np.moveaxis(kernel.sum(axis=-2), -1, 0)
    values[positive] = (total - row_sums) / ((n_positive - 1) * n_negative)
    values[~positive] = (total - column_sums) / (n_positive * (n_negative - 1))
    return values


def _covariances(jackknife: np.ndarray) -> tuple[float, float, float, float]:
    n_cases, n_modalities, n_readers = jackknife.shape
    flat = jackknife.reshape(n_cases, -1)
    centred = flat - flat.mean(axis=0)
    covariance = (n_cases - 1) / n_cases * (centred.T @ centred)
    modality = np.repeat(np.arange(n_modalities), n_readers)
    reader = np.tile(np.arange(n_readers), n_modalities)
    same_modality = modality[:, None] == modality[None, :]
    same_reader = reader[:, None] == reader[None, :]
    var = covariance[same_modality & same_reader].mean()
    cov1 = covariance[~same_modality & same_reader].mean() if n_modalities > 1 else np.nan
    cov2 = covariance[same_modality & ~same_reader].mean()
    cov3 = covariance[~same_modality & ~same_reader].mean() if n_modalities > 1 else np.nan
    return float(var), float(cov1), float(cov2), float(cov3)


def or_mrmc(
    data: pd.DataFrame,
    *,
    modality: str = "modality",
    reader: str = "reader",
    case: str = "case",
    truth: str = "truth",
    rating: str = "rating",
    confidence: float = 0.95,
) -> MrmcResult:
    """Compare modality AUCs with the OR–Hillis MRMC analysis (random readers, random cases).

    With :math:`I` modalities, :math:`J` readers and the jackknife covariances,

    .. math::

        F = \\frac{MS(T)}{MS(T{\\times}R) + J \\max(\\mathrm{Cov}_2 - \\mathrm{Cov}_3, 0)},
        \\qquad
        \\mathrm{ddf}_H = \\frac{D^2}{MS(T{\\times}R)^2 / ((I-1)(J-1))},

    with :math:`D` the denominator of :math:`F`, and :math:`F \\sim F_{I-1, \\mathrm{ddf}_H}`
    under equal AUCs (Hillis et al. 2005; Hillis 2007). A difference of two modalities has
    :math:`SE = \\sqrt{2 (MS(T{\\times}R) + J \\max(\\mathrm{Cov}_2 - \\mathrm{Cov}_3, 0)) / J}`
    with the same df; one modality's mean AUC uses :math:`MS(R)` of that modality,
    :math:`\\mathrm{Cov}_2` of that modality and
    :math:`\\mathrm{ddf} = (MS(R) + J \\max(\\mathrm{Cov}_2, 0))^2 / (MS(R)^2 / (J-1))`.

    Parameters
    ----------
    data : pandas.DataFrame
        Long format, one row per modality, reader and case, fully crossed.
    modality, reader, case, truth, rating : str
        Column names. ``truth`` is 1 for a diseased case and 0 otherwise (constant
        within a case); higher ``rating`` means more confidence in disease.
    confidence : float
        Level of the intervals.

    Returns
    -------
    MrmcResult

    Raises
    ------
    study.errors.UserInputError
        For missing columns, an incomplete (not fully crossed) design, a case
        whose truth differs between rows, fewer than 2 readers, or fewer than 2
        diseased or 2 healthy cases.

    Notes
    -----
    AUCs are empirical (Wilcoxon), covariances from the case jackknife, the
    defaults of RJafroc's ``StSignificanceTesting(method = "OR")``. Readers are
    random, so with 2 readers the df are small and intervals wide.

    Examples
    --------
    >>> rng = np.random.default_rng(5)
    >>> truth = np.repeat([0, 1], 20)
    >>> rows = [(m, r, c, t, t * (1.0 + m) + rng.normal())
    ...         for m in (0, 1) for r in range(4) for c, t in enumerate(truth)]
    >>> table = pd.DataFrame(rows, columns=["modality", "reader", "case", "truth", "rating"])
    >>> result = or_mrmc(table)
    >>> result.df_num, bool(result.differences["estimate"].iloc[0] < 0)
    (1, True)
    """
    columns = [modality, reader, case, truth, rating]
    missing = [column for column in columns if column not in data.columns]
    if missing:
        raise UserInputError(f"MRMC columns {missing} are missing; available: {list(data.columns)}")
    if not 0 < confidence < 1:
        raise UserInputError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    if data[columns].isna().any().any():
        raise UserInputError("MRMC data has missing values; every reader must rate every case")

    truth_per_case = data.groupby(case)[truth].nunique()
    if (truth_per_case > 1).any():
        bad = list(truth_per_case[truth_per_case > 1].index[:5])
        raise UserInputError(f"cases {bad} have different truth values in different rows")
    modalities = sorted(data[modality].unique())
    readers = sorted(data[reader].unique())
    cases = sorted(data[case].unique())
    cube = data.pivot_table(index=[modality, reader], columns=case, values=rating, aggfunc="count")
    if cube.shape != (len(modalities) * len(readers), len(cases)) or (cube.to_numpy() != 1).any():
        raise UserInputError(
            "MRMC data must be fully crossed with one rating per modality, reader and case"
        )
    if len(readers) < 2:
        raise UserInputError(f"OR analysis needs at least 2 readers, got {len(readers)}")
    labels = data.drop_duplicates(case).set_index(case).loc[cases, truth].to_numpy()
    if not set(np.unique(labels)) <= {0, 1} or min((labels == 1).sum(), (labels == 0).sum()) < 2:
        raise UserInputError(
            f"truth column {truth!r} must be 0 or 1 with at least 2 cases of each, "
            "because the jackknife leaves one case out"
        )
    ratings = (
        data.pivot_table(index=[modality, reader], columns=case, values=rating)
        .loc[:, cases]
        .to_numpy(dtype=float)
        .reshape(len(modalities), len(readers), len(cases))
    )
    positive = labels.astype(bool)

    auc = _wilcoxon_auc(ratings, positive)
    jackknife = _jackknife_aucs(ratings, positive)
    var, cov1, cov2, cov3 = _covariances(jackknife)
    n_modalities, n_readers = auc.shape

    modality_means = auc.mean(axis=1)
    reader_means = auc.mean(axis=0)
    grand = auc.mean()
    ms_t = n_readers * np.sum((modality_means - grand) ** 2) / max(n_modalities - 1, 1)
    interaction = auc - modality_means[:, None] - reader_means[None, :] + grand
    ms_tr = np.sum(interaction**2) / max((n_modalities - 1) * (n_readers - 1), 1)

    alpha = 1.0 - confidence
    if n_modalities > 1:
        denominator = ms_tr + n_readers * max(cov2 - cov3, 0.0)
        f_statistic = ms_t / denominator
        df_den = denominator**2 / (ms_tr**2 / ((n_modalities - 1) * (n_readers - 1)))
        p_value = float(stats.f.sf(f_statistic, n_modalities - 1, df_den))
        se_difference = np.sqrt(2.0 * denominator / n_readers)
    else:
        f_statistic = df_den = p_value = se_difference = np.nan

    differences = []
    for first, second in combinations(range(n_modalities), 2):
        estimate = modality_means[first] - modality_means[second]
        t = estimate / se_difference
        half = stats.t.ppf(1 - alpha / 2, df_den) * se_difference
        differences.append(
            (
                modalities[first],
                modalities[second],
                estimate,
                se_difference,
                t,
                df_den,
                2 * stats.t.sf(abs(t), df_den),
                estimate - half,
                estimate + half,
            )
        )
    difference_table = pd.DataFrame(
        differences,
        columns=[
            "modality_a",
            "modality_b",
            "estimate",
            "se",
            "t",
            "df",
            "p_value",
            "ci_low",
            "ci_high",
        ],
    )

    single = []
    for index, name in enumerate(modalities):
        ms_r = np.var(auc[index], ddof=1)
        cov2_single = _covariances(jackknife[:, index : index + 1, :])[2]
        spread = ms_r + n_readers * max(cov2_single, 0.0)
        se = np.sqrt(spread / n_readers)
        df = spread**2 / (ms_r**2 / (n_readers - 1))
        half = stats.t.ppf(1 - alpha / 2, df) * se
        single.append(
            (
                name,
                modality_means[index],
                se,
                df,
                modality_means[index] - half,
                modality_means[index] + half,
            )
        )
    modality_table = pd.DataFrame(
        single, columns=["modality", "estimate", "se", "df", "ci_low", "ci_high"]
    )
    auc_table = pd.DataFrame(
        [
            (modalities[i], readers[j], auc[i, j])
            for i in range(n_modalities)
            for j in range(n_readers)
        ],
        columns=["modality", "reader", "auc"],
    )
    return MrmcResult(
        auc=auc_table,
        modality_auc=modality_table,
        differences=difference_table,
        f_statistic=float(f_statistic),
        df_num=n_modalities - 1,
        df_den=float(df_den),
        p_value=p_value,
        variance_components={
            "var": var,
            "cov1": cov1,
            "cov2": cov2,
            "cov3": cov3,
            "ms_t": float(ms_t),
            "ms_tr": float(ms_tr),
        },
        confidence=confidence,
    )
