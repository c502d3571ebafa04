"""The human baseline: agreement among four radiologists in the mLI-RADS reader study.

The reads come from Becker A.S. et al., "Increased interreader agreement in
diagnosis of hepatocellular carcinoma using an adapted LI-RADS algorithm",
European Journal of Radiology 86 (2017) 33-40, doi:10.1016/j.ejrad.2016.11.004,
published by its authors (ASBecker/mLIRADS) under CC BY-NC-SA 4.0 and kept
byte for byte in ``analysis/resources/mlirads``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.agreement import fleiss_kappa, fleiss_kappa_from_counts
from analysis.bootstrap import cluster_bootstrap
from study.lirads import ABSENT, PRESENT

MLIRADS_CSV = Path(__file__).resolve().parent / "resources" / "mlirads" / "lirads.1-5.csv"
"""The published readout table, kept byte for byte."""

MLIRADS_FEATURES: dict[str, str] = {
    "ART_HYP": "aphe",
    "WASHOUT": "washout",
    "CPS": "enhancing_capsule",
    "TRESHOLD": "threshold_growth",
}
"""Column stem in the file (``TRESHOLD`` is spelled so there) to the project's feature name."""

MLIRADS_READERS: dict[str, str] = {"": "R1", "2": "R2", "3": "R3", "4": "R4"}
"""Column suffix in the file to reader name."""

COMPLETE_CASES = "complete cases"
BLANK_AS_ABSENT = "blank as absent"

_ANSWERS = {"1": PRESENT, "0": ABSENT}


def load_mlirads_reads(path: str | Path | None = None) -> pd.DataFrame:
    """Load the mLI-RADS reads as a long table of feature answers.

    The file ends its lines with a bare carriage return and closes with
    spreadsheet rows of totals and ``#REF!`` cells; only rows whose ``OBSERV``
    is an integer are observations.

    Parameters
    ----------
    path : str or Path, optional
        The readout table; defaults to the copy in ``analysis/resources/mlirads``.

    Returns
    -------
    DataFrame
        Columns ``observation`` (int), ``reader`` (``R1``..``R4``), ``feature``
        (``aphe``, ``washout``, ``enhancing_capsule``, ``threshold_growth``) and
        ``answer`` (``present``, ``absent``, or NaN where the reader judged the
        observation benign and did not score features), sorted by observation,
        reader and feature.

    Raises
    ------
    ValueError
        When a feature cell holds something other than 1, 0 or nothing.

    Examples
    --------
    >>> reads = load_mlirads_reads()
    >>> reads["observation"].nunique(), sorted(reads["reader"].unique())
    (104, ['R1', 'R2', 'R3', 'R4'])
    """
    source = Path(path) if path is not None else MLIRADS_CSV
    text = source.read_bytes().decode("utf-8")
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    table = pd.read_csv(io.StringIO(lines), dtype=str, keep_default_na=False)

    is_observation = table["OBSERV"].str.fullmatch(r"\d+")
    table = table[is_observation]

    rows = []
    for suffix, reader in MLIRADS_READERS.items():
        for stem, feature in MLIRADS_FEATURES.items():
            column = stem + suffix
            if column not in table.columns:
                raise ValueError(f"{source}: column {column!r} not found")
            for observation, cell in zip(table["OBSERV"], table[column], strict=True):
                value = cell.strip()
                if value and value not in _ANSWERS:
                    raise ValueError(
                        f"{source}: observation {observation}, column {column}: expected 1, 0 "
                        f"or an empty cell, got {cell!r}"
                    )
                rows.append((int(observation), reader, feature, _ANSWERS.get(value, np.nan)))

    reads = pd.DataFrame(rows, columns=["observation", "reader", "feature", "answer"])
    return reads.sort_values(["observation", "reader", "feature"], ignore_index=True)


def _kappa_row(
    wide: pd.DataFrame,
    feature: str,
    handling: str,
    n_not_scored: int,
    *,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> dict:
    categories = (ABSENT, PRESENT)
    point = fleiss_kappa(wide, categories=categories, confidence=confidence)
    counts = np.stack([(wide == category).sum(axis=1).to_numpy() for category in categories], 1)

    def statistic(weights: np.ndarray) -> np.ndarray:
        return fleiss_kappa_from_counts(counts, weights)

    interval = cluster_bootstrap(
        statistic,
        wide.index.to_numpy(),
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        method="percentile",
    )
    return {
        "feature": feature,
        "n_observations": len(wide),
        "n_not_scored": n_not_scored,
        "fleiss_kappa": point.estimate,
        "ci_low": interval.ci_low,
        "ci_high": interval.ci_high,
        "handling": handling,
    }


def human_baseline(
    reads: pd.DataFrame,
    *,
    features: Sequence[str],
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Compute Fleiss' kappa among the readers per feature with a bootstrap interval.

    Two rows per feature. ``complete cases`` (primary) keeps the observations
    that every reader scored. ``blank as absent`` keeps all observations and
    counts a blank as ``absent``, because a reader who called the observation
    benign did not see the feature. Kappa is :func:`analysis.agreement.fleiss_kappa`;
    the interval is a percentile :func:`analysis.bootstrap.cluster_bootstrap`
    that resamples observations.

    Parameters
    ----------
    reads : DataFrame
        Long table with ``observation, reader, feature, answer`` as
        :func:`load_mlirads_reads` returns it.
    features : sequence of str
        Features to report, in this order.
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Seed of the bootstrap generator; every feature and handling uses it.
    confidence : float
        Level of the interval.

    Returns
    -------
    DataFrame
        Columns ``feature, n_observations, n_not_scored, fleiss_kappa, ci_low,
        ci_high, handling``. ``n_observations`` counts the observations in the
        row's computation and ``n_not_scored`` those that at least one reader
        left blank (excluded under complete cases, counted absent otherwise).

    Notes
    -----
    The published file has no patient identifier, so the bootstrap treats
    observations as independent even where one patient had several; the
    interval is likely too narrow if such clusters exist.

    Examples
    --------
    >>> table = human_baseline(load_mlirads_reads(), features=["washout"], n_resamples=200, seed=1)
    >>> table[["feature", "n_observations", "n_not_scored", "handling"]].to_numpy().tolist()
    [['washout', 59, 45, 'complete cases'], ['washout', 104, 45, 'blank as absent']]
    """
    missing = {"observation", "reader", "feature", "answer"} - set(reads.columns)
    if missing:
        raise ValueError(f"reads is missing columns {sorted(missing)}")

    rows = []
    for feature in features:
        subset = reads[reads["feature"] == feature]
        if subset.empty:
            raise ValueError(
                f"no reads for feature {feature!r}; features in reads: "
                f"{sorted(reads['feature'].unique())}"
            )
        wide = subset.pivot(index="observation", columns="reader", values="answer").sort_index()
        blank = wide.isna().any(axis=1)
        n_not_scored = int(blank.sum())

        # NOTE: observations are resampled as independent units because the file has no
        # patient id; several observations of one patient would make the interval too narrow.
        options = {"n_resamples": n_resamples, "seed": seed, "confidence": confidence}
        rows.append(_kappa_row(wide[~blank], feature, COMPLETE_CASES, n_not_scored, **options))
        rows.append(
            _kappa_row(wide.fillna(ABSENT), feature, BLANK_AS_ABSENT, n_not_scored, **options)
        )

    return pd.DataFrame(
        rows,
        columns=[
            "feature",
            "n_observations",
            "n_not_scored",
            "fleiss_kappa",
            "ci_low",
            "ci_high",
            "handling",
        ],
    )
