"""Agreement with the reference read and the call flow, the report's core tables."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.agreement import kappa_from_tables
from analysis.bootstrap import cluster_bootstrap
from analysis.records import RunRecords
from analysis.reference import (
    NO_ANSWER,
    majority_reference,
    reference_exclusions,
    scored_answers,
)
from study.lirads import FEATURES, INDETERMINATE, OUTCOMES

PREDICTION_COLUMNS = (
    "protocol_id protocol_sha256 run_id cell_id reader model_snapshot strategy sequences "
    "replicate patient_id lesion_id feature answer confidence outcome latency_s input_tokens "
    "output_tokens cost_usd cached request_sha256"
).split()
"""Columns of the predictions table, in order."""

CELL_COLUMNS = ["cell_id", "reader", "model_snapshot", "strategy", "sequences", "replicate"]


def _require_columns(table: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"{name} is missing columns {missing}; it has {list(table.columns)}")


def _check_answers(table: pd.DataFrame, name: str) -> None:
    """Raise on an unknown feature or an answer outside the feature's categories."""
    for feature_name, answers in table.groupby("feature")["answer"]:
        if feature_name not in FEATURES:
            raise ValueError(f"{name}: unknown feature {feature_name!r}; known: {list(FEATURES)}")
        allowed = FEATURES[feature_name].answers
        unknown = sorted(set(answers.dropna()) - set(allowed))
        if unknown:
            raise ValueError(
                f"{name}: answers {unknown} for feature {feature_name!r} are not among {allowed}"
            )


def _reference(reads: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the majority reference (column ``reference``) and the exclusions per feature."""
    _require_columns(reads, ["lesion_id", "reader", "feature", "answer"], "reads")
    _check_answers(reads, "reads")
    reference = majority_reference(reads).rename(columns={"answer": "reference"})
    return reference, reference_exclusions(reads)


def _analysed_answers(
    predictions: pd.DataFrame, *, indeterminate_as: str = "absent", failures_as: str = "wrong"
) -> pd.DataFrame:
    """Score answers as :func:`analysis.reference.scored_answers` does; NaN rows are left out."""
    _require_columns(predictions, PREDICTION_COLUMNS, "predictions")
    unknown_outcomes = sorted(set(predictions["outcome"]) - set(OUTCOMES))
    if unknown_outcomes:
        raise ValueError(f"predictions: outcomes {unknown_outcomes} are not among {OUTCOMES}")
    valid = predictions["outcome"] == "valid"
    answered = predictions["answer"].where(valid).replace("", np.nan)
    if answered[valid].isna().any():
        raise ValueError("predictions: a row with outcome 'valid' has an empty answer")
    _check_answers(predictions.assign(answer=answered), "predictions")

    duplicated = predictions.duplicated(["cell_id", "lesion_id", "feature"])
    if duplicated.any():
        first = predictions[duplicated].iloc[0]
        raise ValueError(
            f"predictions: more than one row for cell {first['cell_id']}, lesion "
            f"{first['lesion_id']}, feature {first['feature']}"
        )
    analysed = predictions.copy()
    analysed["analysed"] = scored_answers(
        predictions, indeterminate_as=indeterminate_as, failures_as=failures_as
    )
    analysed["indeterminate"] = answered == INDETERMINATE
    return analysed


def _interval(
    statistic, clusters: np.ndarray, n_resamples: int, seed: int, confidence: float
) -> tuple[list, set]:
    """Run a percentile bootstrap; return estimate, bounds and SE, and its warnings as text."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cluster_bootstrap(
            statistic,
            clusters,
            n_resamples=n_resamples,
            seed=seed,
            confidence=confidence,
            method="percentile",
        )
    values = [result.estimate, result.ci_low, result.ci_high, result.se]
    return values, {str(w.message) for w in caught}


def _agreement_row(
    group: pd.DataFrame, feature_name: str, n_resamples: int, seed: int, confidence: float
) -> dict:
    """Compute kappa and accuracy against the reference for one cell x feature."""
    categories = [*FEATURES[feature_name].categories, NO_ANSWER]
    k = len(categories)
    code = {category: position for position, category in enumerate(categories)}
    reference = group["reference"].map(code).to_numpy()
    answer = group["analysed"].map(code).to_numpy()
    one_hot = np.zeros((len(group), k * k))
    one_hot[np.arange(len(group)), reference * k + answer] = 1.0
    correct = (reference == answer).astype(float)
    clusters = group["patient"].to_numpy()

    def kappa(weights: np.ndarray) -> np.ndarray:
        return kappa_from_tables((weights @ one_hot).reshape(-1, k, k))

    def accuracy(weights: np.ndarray) -> np.ndarray:
        return (weights @ correct) / weights.sum(axis=1)

    kappa_values, kappa_notes = _interval(kappa, clusters, n_resamples, seed, confidence)
    accuracy_values, accuracy_notes = _interval(accuracy, clusters, n_resamples, seed, confidence)
    notes = sorted(f"kappa: {n}" for n in kappa_notes) + sorted(
        f"accuracy: {n}" for n in accuracy_notes
    )
    return dict(
        zip(["kappa", "kappa_ci_low", "kappa_ci_high", "kappa_se"], kappa_values, strict=True),
        **dict(
            zip(
                ["accuracy", "accuracy_ci_low", "accuracy_ci_high", "accuracy_se"],
                accuracy_values,
                strict=True,
            )
        ),
        n_lesions=len(group),
        n_patients=len(np.unique(clusters)),
        n_no_answer=int((group["analysed"] == NO_ANSWER).sum()),
        n_indeterminate=int(group["indeterminate"].sum()),
        note="; ".join(notes),
    )


_STATISTIC_COLUMNS = [
    "kappa",
    "kappa_ci_low",
    "kappa_ci_high",
    "kappa_se",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "accuracy_se",
]


def agreement_table(
    records: RunRecords,
    *,
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
    indeterminate_as: str = "absent",
    failures_as: str = "wrong",
) -> pd.DataFrame:
    """Compute Cohen's kappa and accuracy against the radiologists' majority per cell and feature.

    The reference per lesion and feature is the answer that more than half of
    the radiologists gave (``indeterminate`` counted as ``absent``); lesions
    without a majority are left out. Model answers map ``indeterminate`` to
    ``absent`` and failed calls to :data:`NO_ANSWER`, an extra category that
    never matches. Kappa is unweighted over the feature's categories plus
    :data:`NO_ANSWER`; accuracy is the share of lesions whose answer equals the
    reference. Both get a percentile interval at level ``confidence`` from
    :func:`analysis.bootstrap.cluster_bootstrap` resampling patients, with the
    same seed for every cell. ``sequences_shown`` is False where the cell did
    not show every sequence the feature needs.

    Examples
    --------
    >>> from analysis.records import RunRecords
    >>> row = dict.fromkeys(PREDICTION_COLUMNS, "")
    >>> rows = [{**row, "cell_id": "c1", "sequences": "t2", "patient_id": f"p{i}",
    ...          "lesion_id": f"l{i}", "feature": "t2_hyperintensity", "outcome": "valid",
    ...          "answer": a, "replicate": 0} for i, a in enumerate(["present", "absent"] * 3)]
    >>> reads = pd.DataFrame([(f"l{i}", "A", "t2_hyperintensity", r["answer"])
    ...                       for i, r in enumerate(rows)],
    ...                      columns=["lesion_id", "reader", "feature", "answer"])
    >>> patients = pd.DataFrame({"lesion_id": [f"l{i}" for i in range(6)],
    ...                          "patient_id": [f"p{i}" for i in range(6)], "split": "test"})
    >>> records = RunRecords("r", {}, {}, pd.DataFrame(rows), reads, pd.DataFrame(), patients)
    >>> table = agreement_table(records, n_resamples=50, seed=1)
    >>> table[["kappa", "accuracy", "n_lesions"]].to_numpy().tolist()
    [[1.0, 1.0, 6.0]]
    """
    analysed = _analysed_answers(
        records.predictions, indeterminate_as=indeterminate_as, failures_as=failures_as
    )
    reference, _ = _reference(records.reads)
    _require_columns(records.patients, ["lesion_id", "patient_id", "split"], "patients")
    patient_of = records.patients.set_index("lesion_id")["patient_id"]
    unknown = sorted(set(analysed["lesion_id"]) - set(patient_of.index))
    if unknown:
        raise ValueError(f"patients has no row for lesions {unknown[:5]} (first five shown)")

    merged = analysed.merge(reference, on=["feature", "lesion_id"], how="left")
    merged["patient"] = merged["lesion_id"].map(patient_of)
    order = {name: position for position, name in enumerate(FEATURES)}
    rows = []
    for (_, feature_name), group in merged.groupby(["cell_id", "feature"], sort=True):
        cell = group.iloc[0]
        shown = tuple(str(cell["sequences"]).split("+"))
        with_reference = group.dropna(subset=["reference"])
        judged = with_reference.dropna(subset=["analysed"]).sort_values("lesion_id")
        row = {column: cell[column] for column in CELL_COLUMNS}
        row.update(
            feature=feature_name,
            feature_order=order[feature_name],
            sequences_shown=FEATURES[feature_name].judgeable(shown),
            n_without_reference=len(group) - len(with_reference),
            n_left_out=len(with_reference) - len(judged),
        )
        if judged.empty:
            # Every answer was left out (for example all indeterminate, mapped to missing).
            row.update(
                dict.fromkeys(_STATISTIC_COLUMNS, np.nan),
                n_lesions=0,
                n_patients=0,
                n_no_answer=0,
                n_indeterminate=0,
                note="no lesion left to judge",
            )
        else:
            row.update(_agreement_row(judged, feature_name, n_resamples, seed, confidence))
        rows.append(row)

    table = pd.DataFrame(rows).sort_values(["feature_order", *CELL_COLUMNS], ignore_index=True)
    return table.drop(columns="feature_order")


def flow_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Count answers per cell by outcome, with distinct requests and cached rows.

    Examples
    --------
    >>> rows = pd.DataFrame({"cell_id": ["c", "c"], "reader": "m", "model_snapshot": "m-1",
    ...     "strategy": "zero_shot", "sequences": "t2", "replicate": 0,
    ...     "outcome": ["valid", "refusal"], "cached": [True, False], "request_sha256": ["a", "b"]})
    >>> flow_table(rows)[["n_rows", "valid", "refusal", "n_requests", "n_cached"]].values.tolist()
    [[2, 1, 1, 2, 1]]
    """
    counts = pd.crosstab(predictions["cell_id"], predictions["outcome"])
    counts = counts.reindex(columns=list(OUTCOMES), fill_value=0)
    grouped = predictions.groupby("cell_id")
    cells = grouped[CELL_COLUMNS[1:]].first()
    cells["n_rows"] = grouped.size()
    cells = cells.join(counts)
    cells["n_requests"] = grouped["request_sha256"].nunique()
    cells["n_cached"] = grouped["cached"].apply(lambda c: int(c.astype(bool).sum()))
    return cells.reset_index().sort_values(CELL_COLUMNS, ignore_index=True)
