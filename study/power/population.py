"""Endpoint values in the population, and the error rate that puts a test exactly at its null.

The value of a test's endpoint that the stated assumptions imply is computed
on one large simulated sample (:data:`POPULATION_LESIONS` lesions). It uses the
definitions of the registered analysis: unweighted Cohen's kappa and accuracy
against the radiologists' majority, Gwet's AC1, and the pooled
reader-versus-model kappa difference. Its Monte Carlo error is roughly
``1 / sqrt(POPULATION_LESIONS)``, an estimate of about a tenth of a kappa's
standard error at 2,000 lesions. The same sample, with the reader's draws held fixed, gives each
test's no-effect error rate by bisection, since every endpoint falls as the
error rate rises from 0 to the rate of a uniform guess.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from functools import cached_property
from itertools import combinations

import numpy as np

from analysis.agreement import kappa_from_tables
from analysis.gwet import gwet_ac1
from analysis.reference import NO_ANSWER
from study.lirads import ABSENT, FEATURES
from study.power.design import Design, SimCell, Test
from study.power.draws import draw_panel
from study.readers.simulated import draw_answer_indices

POPULATION_LESIONS = 200_000
"""Lesions of the large sample that represents the population."""


def _kappa(first: np.ndarray, second: np.ndarray, k: int) -> float:
    table = np.bincount(first * k + second, minlength=k * k).reshape(1, k, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(kappa_from_tables(table)[0])


class Population:
    """A large sample drawn under a design's assumptions, for exact-enough endpoint values.

    Parameters
    ----------
    design
        The resolved protocol.
    seed
        Seed of the sample; the answers of each cell and feature use fixed draws.
    n_lesions
        Lesions in the sample.
    """

    def __init__(self, design: Design, *, seed: int, n_lesions: int = POPULATION_LESIONS):
        self.design = design
        self.n_lesions = n_lesions
        rng = np.random.default_rng([seed, 0x504F50])
        self.truth: dict[str, np.ndarray] = {}
        self.panel: dict[str, np.ndarray] = {}
        for feature, shares in design.prevalence.items():
            self.truth[feature] = rng.choice(shares.size, size=n_lesions, p=shares)
            self.panel[feature] = draw_panel(
                rng,
                self.truth[feature],
                shares,
                design.radiologist_kappa[feature],
                design.power.radiologists,
            )
        self._draws = {
            (cell.cell_id, feature): rng.random((2, n_lesions))
            for cell in design.cells
            for feature in design.features[cell.cell_id]
        }
        plan = design.protocol.get("analysis", {})
        self.indeterminate_as = plan.get("indeterminate_as", "absent")

    @cached_property
    def reference(self) -> dict[str, np.ndarray]:
        """Majority category per lesion and feature, -1 where no category has a majority."""
        majority = {}
        for feature, panel in self.panel.items():
            k = len(FEATURES[feature].categories)
            votes = np.stack([(panel == c).sum(axis=0) for c in range(k)])
            winner = votes.argmax(axis=0)
            majority[feature] = np.where(votes.max(axis=0) * 2 > panel.shape[0], winner, -1)
        return majority

    def answers(self, cell: SimCell, feature: str, rate: float) -> np.ndarray:
        """Return the cell's scored answers as category indices, -1 where left out."""
        categories = FEATURES[feature].categories
        if not cell.judgeable(feature):
            if self.indeterminate_as != "absent":
                return np.full(self.n_lesions, -1)
            return np.full(self.n_lesions, categories.index(ABSENT))
        draws = self._draws[(cell.cell_id, feature)]
        return draw_answer_indices(
            self.truth[feature],
            len(categories),
            rate=rate,
            shows_images=cell.shows_images,
            error_draws=draws[0],
            other_draws=draws[1],
        )

    def endpoint(self, endpoint: str, cell: SimCell, feature: str, rate: float) -> float:
        """Return one cell's endpoint value against the reference (or the radiologists)."""
        k = len(FEATURES[feature].categories) + 1  # and NO_ANSWER, as the analysis counts
        answers = self.answers(cell, feature, rate)
        if endpoint == "noninferiority":
            panel = self.panel[feature][:, answers >= 0]
            scored = answers[answers >= 0]
            machine = np.mean([_kappa(scored, reads, k) for reads in panel])
            human = np.mean([_kappa(a, b, k) for a, b in combinations(panel, 2)])
            return float(machine - human)
        reference = self.reference[feature]
        judged = (reference >= 0) & (answers >= 0)
        first, second = reference[judged], answers[judged]
        if endpoint == "accuracy":
            return float(np.mean(first == second))
        if endpoint == "ac1":
            names = [*FEATURES[feature].categories, NO_ANSWER]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ratings = np.column_stack([first, second])
                return float(gwet_ac1(ratings, categories=list(range(len(names)))).estimate)
        return _kappa(first, second, k)

    def value(self, test: Test, rates: Mapping[tuple[str, str], float]) -> float:
        """Return the test's endpoint value under ``rates``: a difference for ``versus`` tests."""
        own = self.endpoint(
            test.endpoint, test.cell, test.feature, rates[(test.cell.cell_id, test.feature)]
        )
        if test.comparator is None:
            return own
        key = (test.comparator.cell_id, test.feature)
        return own - self.endpoint(test.endpoint, test.comparator, test.feature, rates[key])

    def null_rate(self, test: Test, rates: Mapping[tuple[str, str], float]) -> float:
        """Return the tested cell's error rate at which the test's endpoint equals its null."""
        return self.rate_for(test, test.null, rates)

    def rate_for(
        self,
        test: Test,
        target: float,
        rates: Mapping[tuple[str, str], float],
        *,
        tolerance: float = 1e-6,
    ) -> float:
        """Return the tested cell's error rate at which the test's endpoint equals ``target``.

        NaN when no rate reaches the target: it lies above the value at rate 0
        or below the value of a uniform guess, or the rate does not matter (a
        cell that shows no images or not the feature's sequences).
        """
        key = (test.cell.cell_id, test.feature)
        low, high = 0.0, 1.0 - 1.0 / len(FEATURES[test.feature].categories)

        def gap(rate: float) -> float:
            return self.value(test, {**rates, key: rate}) - target

        at_low, at_high = gap(low), gap(high)
        if not (np.isfinite(at_low) and np.isfinite(at_high)) or at_low < 0 or at_high > 0:
            return float("nan")
        if at_low == at_high:
            return float("nan")
        while high - low > tolerance:
            middle = (low + high) / 2
            if gap(middle) > 0:
                low = middle
            else:
                high = middle
        return (low + high) / 2
