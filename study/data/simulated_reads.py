"""Simulated radiologists who agree with each other at a target kappa per feature.

The reader model is a mixture. For each feature with target kappa ``k``, each
reader copies the true category for a share ``a`` of the lesions and, for the
others, names a category drawn from the feature's prevalence among the
lesions (the truth's category frequencies). Two such readers agree by chance
exactly as often as independent readers with those frequencies, so their
expected Cohen's kappa, and the expected Fleiss' kappa of several, is ``a**2``,
so ``a = sqrt(k)`` on average:

    p_o = a**2 + (1 - a**2) * sum(p**2),  p_e = sum(p**2),
    kappa = (p_o - p_e) / (1 - p_e) = a**2.

A cohort of a few hundred lesions drawn this way still misses the target by up
to about 0.1 (sampling noise). So the number of redrawn lesions is calibrated
on the cohort itself. Each reader gets a random order of the lesions and a
replacement answer for each, both drawn once. The first ``m`` lesions of every
reader's order get their replacement, and ``m`` is the smallest count whose
Fleiss' kappa among the readers comes closest to the target. The readers'
errors stay random, and the achieved kappa lands close to the target (the tests
require 0.05 for 200 lesions). When the truth has one category only, kappa is
undefined and ``m = round((1 - a) * n)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pandas as pd

from study.errors import UserInputError
from study.lirads import FEATURES

__all__ = ["DEFAULT_TARGET_KAPPA", "READERS", "parse_kappas", "simulate_reads"]

READERS: tuple[str, ...] = ("R1", "R2", "R3")
"""Names of the simulated radiologists."""

_UNPUBLISHED_KAPPA = 0.60

# Radiologists' agreement on MRI, from the meta-analysis of Kang et al., JMRI 2020,
# doi:10.1002/jmri.27065: APHE 0.72, washout 0.69, capsule 0.66.
# NOTE: the other features have no pooled MRI kappa in that source, so they use 0.60,
# a placeholder near the published major-feature values, not a measured figure.
DEFAULT_TARGET_KAPPA: Mapping[str, float] = MappingProxyType(
    {
        "aphe": 0.72,
        "washout": 0.69,
        "enhancing_capsule": 0.66,
        "restricted_diffusion": _UNPUBLISHED_KAPPA,
        "t2_hyperintensity": _UNPUBLISHED_KAPPA,
        "marked_t2_hyperintensity": _UNPUBLISHED_KAPPA,
        "fat_in_mass": _UNPUBLISHED_KAPPA,
    }
)
"""Target inter-reader kappa per feature used unless another is given."""


def parse_kappas(values: Iterable[str]) -> dict[str, float]:
    """Parse ``FEATURE=KAPPA`` strings into a mapping.

    Raises
    ------
    UserInputError
        When an item is not ``FEATURE=KAPPA``, names an unknown feature, or the
        kappa is not in (0, 1].

    Examples
    --------
    >>> parse_kappas(["aphe=0.8", "washout=0.5"])
    {'aphe': 0.8, 'washout': 0.5}
    """
    kappas: dict[str, float] = {}
    for item in values:
        name, _, text = item.partition("=")
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if name not in FEATURES or not 0.0 < value <= 1.0:
            raise UserInputError(
                f"--kappa {item!r}: expected FEATURE=KAPPA with a known feature and "
                "0 < KAPPA <= 1, e.g. aphe=0.72."
            )
        kappas[name] = value
    return kappas


def simulate_reads(
    rng: np.random.Generator,
    truth: pd.DataFrame,
    *,
    target_kappa: Mapping[str, float] | None = None,
    readers: Sequence[str] = READERS,
) -> pd.DataFrame:
    """Draw every reader's answers from the truth at the target kappa per feature.

    Parameters
    ----------
    rng
        The generator of every random choice.
    truth
        ``lesion_id, feature, answer``: one row per lesion and feature.
    target_kappa
        Kappa per feature, overriding :data:`DEFAULT_TARGET_KAPPA`.
    readers
        Reader names.

    Returns
    -------
    DataFrame
        ``lesion_id, reader, feature, answer``, ordered by lesion, reader and feature
        as the truth lists them.

    Examples
    --------
    >>> truth = pd.DataFrame({"lesion_id": ["a", "b", "c", "d"], "feature": "aphe",
    ...                       "answer": ["nonrim", "absent", "nonrim", "rim"]})
    >>> reads = simulate_reads(np.random.default_rng(0), truth, target_kappa={"aphe": 1.0})
    >>> [list(group["answer"]) for _, group in reads.groupby("reader")][0]
    ['nonrim', 'absent', 'nonrim', 'rim']
    """
    kappas = {**DEFAULT_TARGET_KAPPA, **(target_kappa or {})}
    answers: dict[tuple[str, str, str], str] = {}
    for feature, rows in truth.groupby("feature", sort=False):
        target = kappas.get(feature, _UNPUBLISHED_KAPPA)
        true_answers = rows["answer"].to_numpy()
        categories, counts = np.unique(true_answers, return_counts=True)
        prevalence = counts / counts.sum()
        n = len(rows)
        orders = [rng.permutation(n) for _ in readers]
        replacements = [rng.choice(categories, size=n, p=prevalence) for _ in readers]

        if len(categories) > 1 and len(readers) > 1:
            achieved = [
                _fleiss_kappa(_redraw(true_answers, orders, replacements, m), categories)
                for m in range(n + 1)
            ]
            redrawn = int(np.argmin(np.abs(np.array(achieved) - target)))
        else:
            redrawn = int(round((1.0 - np.sqrt(target)) * n))
        given_by_reader = _redraw(true_answers, orders, replacements, redrawn)
        for reader, given in zip(readers, given_by_reader, strict=True):
            for lesion_id, answer in zip(rows["lesion_id"], given, strict=True):
                answers[(lesion_id, reader, feature)] = str(answer)

    ordered = [
        (lesion_id, reader, feature, answers[(lesion_id, reader, feature)])
        for lesion_id, lesion_rows in truth.groupby("lesion_id", sort=False)
        for reader in readers
        for feature in lesion_rows["feature"]
    ]
    return pd.DataFrame(ordered, columns=["lesion_id", "reader", "feature", "answer"])


def _redraw(
    true_answers: np.ndarray, orders: list[np.ndarray], replacements: list[np.ndarray], m: int
) -> list[np.ndarray]:
    """Return each reader's answers: the truth with its first ``m``-ordered lesions replaced."""
    given = []
    for order, replacement in zip(orders, replacements, strict=True):
        values = true_answers.copy()
        values[order[:m]] = replacement[:m]
        given.append(values)
    return given


def _fleiss_kappa(ratings: list[np.ndarray], categories: np.ndarray) -> float:
    """Fleiss' kappa of complete ratings: one array per rater, one entry per subject."""
    stacked = np.stack(ratings, axis=1)
    counts = np.stack([(stacked == category).sum(axis=1) for category in categories], axis=1)
    raters = stacked.shape[1]
    observed = ((counts * (counts - 1)).sum(axis=1) / (raters * (raters - 1))).mean()
    shares = counts.sum(axis=0) / counts.sum()
    expected = float((shares**2).sum())
    if expected >= 1.0:
        return float("nan")
    return float((observed - expected) / (1.0 - expected))
