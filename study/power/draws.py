"""One simulated study: patients with several lesions, radiologists' reads and readers' answers.

The truth of each lesion and feature is drawn from the stated prevalence.
Each radiologist copies the truth with probability :math:`a = \\sqrt{\\kappa}`
and otherwise names a category drawn from the prevalence, so two radiologists'
expected Cohen's kappa is :math:`a^2 = \\kappa` (the mixture of
:mod:`study.data.simulated_reads`, without its per-cohort calibration, so the
radiologists' agreement varies from study to study as real panels' does). Each
tested reader answers by the simulated reader's rule
(:func:`study.readers.simulated.draw_answers`) with the scenario's error rate.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.records import RunRecords
from analysis.report.tables import PREDICTION_COLUMNS
from study.lirads import FEATURES, INDETERMINATE
from study.power.design import Design
from study.readers.simulated import draw_answers


def draw_patients(rng: np.random.Generator, n_lesions: int, mean: float) -> np.ndarray:
    """Return the patient number of each lesion: each patient has 1 + Poisson(mean - 1) lesions.

    Examples
    --------
    >>> patients = draw_patients(np.random.default_rng(0), 10, 2.0)
    >>> len(patients), int(patients[0]), bool(np.all(np.diff(patients) >= 0))
    (10, 0, True)
    """
    counts = 1 + rng.poisson(mean - 1.0, size=n_lesions)
    return np.repeat(np.arange(n_lesions), counts)[:n_lesions]


def draw_panel(
    rng: np.random.Generator, truth: np.ndarray, shares: np.ndarray, kappa: float, readers: int
) -> np.ndarray:
    """Return the radiologists' category indices, shape (readers, lesions).

    Examples
    --------
    >>> truth = np.array([0, 1, 2, 1])
    >>> draw_panel(np.random.default_rng(0), truth, np.full(3, 1 / 3), 1.0, 2).tolist()
    [[0, 1, 2, 1], [0, 1, 2, 1]]
    """
    copies = rng.random((readers, truth.size)) < np.sqrt(kappa)
    guesses = rng.choice(shares.size, size=(readers, truth.size), p=shares)
    return np.where(copies, truth[None, :], guesses)


def simulate_records(
    design: Design,
    rates: Mapping[tuple[str, str], float],
    n_lesions: int,
    rng: np.random.Generator,
) -> RunRecords:
    """Draw one study of ``n_lesions`` lesions and return it as a run's records.

    Parameters
    ----------
    design
        The resolved protocol.
    rates
        Error rate per (cell id, feature): the scenario.
    n_lesions
        Lesions in the simulated cohort.
    rng
        Generator of every draw.

    Returns
    -------
    analysis.records.RunRecords
        Predictions of the tested cells, the radiologists' reads and the patients.
    """
    power = design.power
    patient = draw_patients(rng, n_lesions, power.lesions_per_patient)
    lesion_ids = np.array([f"L{i:05d}" for i in range(n_lesions)], dtype=object)
    patient_ids = np.array([f"P{p:05d}" for p in patient], dtype=object)
    radiologists = [f"R{r + 1}" for r in range(power.radiologists)]

    truth: dict[str, np.ndarray] = {}
    reads = []
    for feature, shares in design.prevalence.items():
        categories = np.asarray(FEATURES[feature].categories, dtype=object)
        drawn = rng.choice(shares.size, size=n_lesions, p=shares)
        truth[feature] = categories[drawn]
        panel = draw_panel(
            rng, drawn, shares, design.radiologist_kappa[feature], power.radiologists
        )
        for name, answers in zip(radiologists, panel, strict=True):
            reads.append(
                pd.DataFrame(
                    {
                        "lesion_id": lesion_ids,
                        "reader": name,
                        "feature": feature,
                        "answer": categories[answers],
                    }
                )
            )

    predictions = []
    for cell in design.cells:
        for feature in design.features[cell.cell_id]:
            draws = rng.random((2, n_lesions))
            if cell.judgeable(feature):
                answers = draw_answers(
                    truth[feature],
                    FEATURES[feature].categories,
                    rate=rates[(cell.cell_id, feature)],
                    shows_images=cell.shows_images,
                    error_draws=draws[0],
                    other_draws=draws[1],
                )
            else:
                answers = np.full(n_lesions, INDETERMINATE, dtype=object)
            predictions.append(
                pd.DataFrame(
                    {
                        "cell_id": cell.cell_id,
                        "reader": cell.reader,
                        "strategy": cell.strategy,
                        "sequences": cell.sequences_label,
                        "replicate": cell.replicate,
                        "patient_id": patient_ids,
                        "lesion_id": lesion_ids,
                        "feature": feature,
                        "answer": answers,
                        "outcome": "valid",
                    }
                )
            )
    table = pd.concat(predictions, ignore_index=True)
    table["protocol_id"] = design.protocol["id"]
    for column in PREDICTION_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    patients = pd.DataFrame(
        {"lesion_id": lesion_ids, "patient_id": patient_ids, "split": "evaluation"}
    )
    return RunRecords(
        run_id="simulated",
        protocol=design.protocol,
        registration={},
        predictions=table[PREDICTION_COLUMNS],
        reads=pd.concat(reads, ignore_index=True),
        pathology=pd.DataFrame(),
        patients=patients,
    )
