"""The run's records prepared once for every section: scored answers, reference, short labels."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.records import RunRecords
from analysis.reference import NO_ANSWER
from analysis.report.tables import _analysed_answers, _reference, _require_columns
from study.lirads import ABSENT, FEATURES, INDETERMINATE


@dataclass(frozen=True, eq=False)
class Inputs:
    """Everything a section reads, computed once per report.

    Attributes
    ----------
    records
        The run's records.
    n_resamples, seed, confidence
        Bootstrap resamples, seed and interval level for every interval.
    indeterminate_as, failures_as
        The primary analysis's mappings (see :func:`analysis.reference.scored_answers`).
    answers
        The predictions with columns ``analysed`` (scored answer), ``reference``
        (majority read, NaN without a majority), ``patient``, ``sequence_set``
        (short label such as ``S1``) and ``cell`` (a readable cell label).
    radiologists
        Radiologist reads with ``indeterminate`` mapped to ``absent``, as the reference does.
    sequence_sets
        Short label to the ``+``-joined sequence combination.
    """

    records: RunRecords
    n_resamples: int
    seed: int
    confidence: float
    indeterminate_as: str
    failures_as: str
    answers: pd.DataFrame
    radiologists: pd.DataFrame
    sequence_sets: dict[str, str]

    @property
    def percent(self) -> str:
        """The interval level as text, such as ``95%``."""
        return f"{100 * self.confidence:g}%"

    def categories(self, feature_name: str) -> list[str]:
        """Return the feature's categories plus :data:`NO_ANSWER`, the set every kappa uses."""
        return [*FEATURES[feature_name].categories, NO_ANSWER]


def cell_label(row: pd.Series | dict, sequence_set: str) -> str:
    """Return a short readable cell name: reader, strategy, sequence set and replicate.

    Examples
    --------
    >>> cell_label({"reader": "gpt", "strategy": "zero_shot", "replicate": 0}, "S1")
    'gpt | zero_shot | S1 | r0'
    """
    return f"{row['reader']} | {row['strategy']} | {sequence_set} | r{row['replicate']}"


def prepare(
    records: RunRecords,
    *,
    n_resamples: int,
    seed: int,
    confidence: float,
    indeterminate_as: str,
    failures_as: str,
) -> Inputs:
    """Score the answers, attach the majority reference and name the cells."""
    analysed = _analysed_answers(
        records.predictions, indeterminate_as=indeterminate_as, failures_as=failures_as
    )
    reference, _ = _reference(records.reads)
    _require_columns(records.patients, ["lesion_id", "patient_id", "split"], "patients")
    patient_of = records.patients.set_index("lesion_id")["patient_id"]

    combinations = sorted(analysed["sequences"].astype(str).unique(), key=lambda s: (len(s), s))
    label_of = {combination: f"S{i + 1}" for i, combination in enumerate(combinations)}
    answers = analysed.merge(reference, on=["feature", "lesion_id"], how="left")
    answers["patient"] = answers["lesion_id"].map(patient_of)
    answers["sequence_set"] = answers["sequences"].astype(str).map(label_of)
    answers["cell"] = (
        answers["reader"].astype(str)
        + " | "
        + answers["strategy"].astype(str)
        + " | "
        + answers["sequence_set"].astype(str)
        + " | r"
        + answers["replicate"].astype(str)
    )

    radiologists = records.reads[["lesion_id", "reader", "feature", "answer"]].copy()
    radiologists["answer"] = radiologists["answer"].astype("object").replace(INDETERMINATE, ABSENT)
    radiologists["patient"] = radiologists["lesion_id"].map(patient_of)
    return Inputs(
        records=records,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        indeterminate_as=indeterminate_as,
        failures_as=failures_as,
        answers=answers,
        radiologists=radiologists,
        sequence_sets={label: combination for combination, label in label_of.items()},
    )
