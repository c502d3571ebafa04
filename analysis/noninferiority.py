"""Reader versus model: is a model's agreement with radiologists non-inferior to theirs?

For a model :math:`m` and radiologist :math:`r` the comparison is

.. math::

    \\Delta_{mr} = \\kappa(m, r) - \\frac{1}{R - 1} \\sum_{r' \\ne r} \\kappa(r, r'),

the model's Cohen's kappa with :math:`r` minus :math:`r`'s mean kappa with the
other radiologists, so the model takes the place of one radiologist of the panel.
The pooled row compares the model's mean kappa over all radiologists with the
mean kappa over all radiologist pairs. Intervals come from a bootstrap that
resamples patients with all their lesions (:func:`analysis.bootstrap.cluster_bootstrap`),
so the correlation between the two kappas, which share lesions and a
radiologist, is kept. Non-inferiority at margin :math:`\\delta` is declared when
the lower bound of the two-sided interval exceeds :math:`-\\delta`, which at 95 %
is the one-sided 2.5 % test of the CONSORT extension for non-inferiority trials
(Piaggio et al. 2012, JAMA 308:2594, doi:10.1001/jama.2012.87802).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from analysis.agreement import kappa_from_tables
from analysis.bootstrap import cluster_bootstrap
from study.errors import UserInputError

POOLED = "all"
"""The ``radiologist`` value of the row that pools every radiologist."""

COLUMNS = [
    "model",
    "radiologist",
    "model_kappa",
    "human_kappa",
    "difference",
    "se",
    "ci_low",
    "ci_high",
    "margin",
    "noninferior",
    "n_lesions",
    "n_patients",
    "confidence",
]


def _pair_indicators(wide: pd.DataFrame, categories: Sequence, first: str, second: str):
    """Return a (n_units, k*k) indicator of each unit's cell in the k x k table."""
    k = len(categories)
    code = {category: index for index, category in enumerate(categories)}
    a = wide[first].map(code).to_numpy()
    b = wide[second].map(code).to_numpy()
    indicators = np.zeros((len(wide), k * k))
    indicators[np.arange(len(wide)), a * k + b] = 1.0
    return indicators


def reader_model_noninferiority(
    reads: pd.DataFrame,
    *,
    radiologists: Sequence[str],
    models: Sequence[str],
    categories: Sequence,
    margin: float,
    seed: int,
    reader: str = "reader",
    label: str = "label",
    unit: str = "lesion_id",
    cluster: str = "patient_id",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    method: str = "percentile",
) -> pd.DataFrame:
    """Compare each model's kappa with each radiologist against the radiologists' own.

    Parameters
    ----------
    reads : pandas.DataFrame
        Long format, one row per lesion and reader (radiologist or model), with
        columns ``reader``, ``label``, ``unit`` and ``cluster``.
    radiologists, models : sequence of str
        Reader names; at least 2 radiologists.
    categories : sequence
        Every allowed label (Cohen's kappa is unweighted over these).
    margin : float
        Non-inferiority margin on the kappa scale, for example 0.1.
    seed : int
        Seed of the bootstrap's ``numpy.random.Generator``; every row uses the same
        resamples.
    reader, label, unit, cluster : str
        Column names.
    n_resamples : int
        Bootstrap resamples.
    confidence : float
        Level of the two-sided interval.
    method : {"percentile", "bca"}
        Bootstrap interval.

    Returns
    -------
    pandas.DataFrame
        One row per model and radiologist plus one pooled row per model
        (``radiologist == "all"``), with the columns in ``COLUMNS``.

    Raises
    ------
    study.errors.UserInputError
        For missing columns or readers, fewer than 2 radiologists, a label outside
        ``categories``, a lesion in two patients, a negative margin, or no lesion
        read by every reader.

    Notes
    -----
    Only lesions read by every listed reader enter (complete cases), so all
    kappas are on the same lesions.

    Examples
    --------
    >>> rng = np.random.default_rng(6)
    >>> truth = rng.integers(0, 2, 60)
    >>> rows = []
    >>> for name, error in [("r1", 0.1), ("r2", 0.1), ("r3", 0.15), ("gpt", 0.2)]:
    ...     flipped = np.where(rng.random(60) < error, 1 - truth, truth)
    ...     rows += [(name, int(v), i, i // 2) for i, v in enumerate(flipped)]
    >>> reads = pd.DataFrame(rows, columns=["reader", "label", "lesion_id", "patient_id"])
    >>> table = reader_model_noninferiority(reads, radiologists=["r1", "r2", "r3"],
    ...     models=["gpt"], categories=[0, 1], margin=0.2, seed=1, n_resamples=200)
    >>> list(table["radiologist"])
    ['r1', 'r2', 'r3', 'all']
    """
    needed = [reader, label, unit, cluster]
    missing = [column for column in needed if column not in reads.columns]
    if missing:
        raise UserInputError(f"columns {missing} are missing; available: {list(reads.columns)}")
    if len(radiologists) < 2:
        raise UserInputError(f"at least 2 radiologists are needed, got {list(radiologists)}")
    if not margin >= 0:
        raise UserInputError(f"margin must be a non-negative kappa difference, got {margin!r}")
    everyone = list(radiologists) + list(models)
    absent = [name for name in everyone if name not in set(reads[reader])]
    if absent:
        raise UserInputError(
            f"readers {absent} have no reads; present: {sorted(set(reads[reader]))}"
        )
    unknown = set(reads[label].dropna()) - set(categories)
    if unknown:
        raise UserInputError(
            f"labels {sorted(map(str, unknown))} are not in categories {list(categories)}"
        )
    patients_per_lesion = reads.groupby(unit)[cluster].nunique()
    if (patients_per_lesion > 1).any():
        raise UserInputError(
            f"lesions {list(patients_per_lesion[patients_per_lesion > 1].index[:5])} "
            "belong to more than one patient"
        )

    subset = reads[reads[reader].isin(everyone)].dropna(subset=[label])
    wide = subset.pivot_table(index=[cluster, unit], columns=reader, values=label, aggfunc="first")
    wide = wide.dropna(subset=everyone).reset_index()
    if wide.empty:
        raise UserInputError("no lesion was read by every listed radiologist and model")
    clusters = wide[cluster].to_numpy()

    # Built on first use: only model-radiologist and radiologist pairs are needed, and
    # unweighted kappa is the same for a table and its transpose.
    indicators: dict[frozenset, np.ndarray] = {}

    def kappa(weights, first, second):
        key = frozenset((first, second))
        if key not in indicators:
            indicators[key] = _pair_indicators(wide, categories, first, second)
        tables = (weights @ indicators[key]).reshape(-1, len(categories), len(categories))
        return kappa_from_tables(tables)

    def comparison(model, radiologist):
        others = [name for name in radiologists if name != radiologist]

        def statistic(weights):
            human = np.mean([kappa(weights, radiologist, other) for other in others], axis=0)
            return kappa(weights, model, radiologist) - human

        def parts(weights):
            human = np.mean([kappa(weights, radiologist, other) for other in others], axis=0)
            return kappa(weights, model, radiologist), human

        return statistic, parts

    def pooled(model):
        pairs = list(combinations(radiologists, 2))

        def parts(weights):
            machine = np.mean([kappa(weights, model, name) for name in radiologists], axis=0)
            human = np.mean([kappa(weights, a, b) for a, b in pairs], axis=0)
            return machine, human

        return (lambda weights: np.subtract(*parts(weights))), parts

    rows = []
    ones = np.ones((1, len(wide)))
    for model in models:
        tasks = [(name, *comparison(model, name)) for name in radiologists]
        tasks.append((POOLED, *pooled(model)))
        for radiologist, statistic, parts in tasks:
            machine, human = (float(value[0]) for value in parts(ones))
            interval = cluster_bootstrap(
                statistic,
                clusters,
                n_resamples=n_resamples,
                seed=seed,
                confidence=confidence,
                method=method,
            )
            rows.append(
                (
                    model,
                    radiologist,
                    machine,
                    human,
                    interval.estimate,
                    interval.se,
                    interval.ci_low,
                    interval.ci_high,
                    margin,
                    bool(interval.ci_low > -margin) if np.isfinite(interval.ci_low) else False,
                    len(wide),
                    int(np.unique(clusters).size),
                    confidence,
                )
            )
    return pd.DataFrame(rows, columns=COLUMNS)
