"""The statistical report of one run: agreement with radiologists, human baseline, call flow.

The report is a pure function of the run's records, the resample count and the
seed: it contains no generation timestamp, so the same records give byte-identical
Markdown, HTML and CSV files.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from analysis.agreement import kappa_from_tables
from analysis.baseline import MLIRADS_FEATURES, human_baseline, load_mlirads_reads
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
TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class ReportPaths:
    """Files written by :func:`build_report`."""

    html: Path
    markdown: Path


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
    """Run a percentile bootstrap and keep its warnings as text for the report."""
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
    return [result.estimate, result.ci_low, result.ci_high], {str(w.message) for w in caught}


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
        zip(["kappa", "kappa_ci_low", "kappa_ci_high"], kappa_values, strict=True),
        **dict(
            zip(["accuracy", "accuracy_ci_low", "accuracy_ci_high"], accuracy_values, strict=True)
        ),
        n_lesions=len(group),
        n_patients=len(np.unique(clusters)),
        n_no_answer=int((group["analysed"] == NO_ANSWER).sum()),
        n_indeterminate=int(group["indeterminate"].sum()),
        note="; ".join(notes),
    )


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


def _number(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return "NA" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def _display(table: pd.DataFrame) -> dict:
    """Turn a table into header and cell strings for the templates (display rounding only)."""
    rows = [[_number(value) for value in record] for record in table.itertuples(index=False)]
    return {"headers": list(table.columns), "rows": rows}


def _single(predictions: pd.DataFrame, column: str) -> str:
    values = sorted(predictions[column].astype(str).unique())
    if len(values) != 1:
        raise ValueError(f"predictions must contain exactly one {column}, found {values}")
    return values[0]


def build_report(
    records: RunRecords, out_dir: Path, *, n_resamples: int = 1000, seed: int = 20261204
) -> ReportPaths:
    """Write the run's report as Markdown and self-contained HTML, with tables as CSV.

    Sections: protocol (id, SHA-256, registration time), agreement with the
    radiologists per feature and cell (see :func:`agreement_table`), the human
    baseline from the mLI-RADS reads (:func:`analysis.baseline.human_baseline`),
    and the call flow (:func:`flow_table`). ``out_dir/tables`` receives
    ``agreement.csv``, ``reference.csv``, ``human_baseline.csv`` and ``flow.csv``
    at full precision. The registration time is read from
    ``records.registration["registered_at"]``.

    Examples
    --------
    >>> ReportPaths(Path("r/report.html"), Path("r/report.md")).markdown.name
    'report.md'
    """
    out_dir = Path(out_dir)
    tables_dir = out_dir / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)

    plan = records.protocol.get("analysis", {}) or {}
    indeterminate_as = plan.get("indeterminate_as", "absent")
    failures_as = plan.get("failures_as", "wrong")
    confidence = float(plan.get("confidence", 0.95))
    agreement = agreement_table(
        records,
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        indeterminate_as=indeterminate_as,
        failures_as=failures_as,
    )
    _, exclusions = _reference(records.reads)
    reads = load_mlirads_reads()
    baseline = human_baseline(
        reads,
        features=list(MLIRADS_FEATURES.values()),
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )
    flow = flow_table(records.predictions)
    for name, table in [
        ("agreement", agreement),
        ("reference", exclusions),
        ("human_baseline", baseline),
        ("flow", flow),
    ]:
        table.to_csv(tables_dir / f"{name}.csv", index=False, lineterminator="\n")

    protocol_id = _single(records.predictions, "protocol_id")
    if "id" in records.protocol and str(records.protocol["id"]) != protocol_id:
        raise ValueError(
            f"protocol id {records.protocol['id']!r} differs from the predictions' {protocol_id!r}"
        )
    shown = agreement.assign(
        kappa_ci=[
            f"{_number(a)} to {_number(b)}"
            for a, b in agreement[["kappa_ci_low", "kappa_ci_high"]].to_numpy()
        ],
        accuracy_ci=[
            f"{_number(a)} to {_number(b)}"
            for a, b in agreement[["accuracy_ci_low", "accuracy_ci_high"]].to_numpy()
        ],
        sequences_shown=agreement["sequences_shown"].map({True: "yes", False: "NO"}),
    )
    context = {
        "title": records.protocol.get("title", protocol_id),
        "run_id": records.run_id,
        "protocol_id": protocol_id,
        "protocol_sha256": _single(records.predictions, "protocol_sha256"),
        "registered_at": str(records.registration.get("registered_at", "not recorded")),
        "n_resamples": n_resamples,
        "seed": seed,
        "confidence_percent": f"{100 * confidence:g}",
        "no_answer": NO_ANSWER,
        "indeterminate_as": indeterminate_as,
        "failures_as": failures_as,
        "agreement": _display(
            shown[
                [
                    "feature",
                    "cell_id",
                    "reader",
                    "strategy",
                    "sequences",
                    "replicate",
                    "sequences_shown",
                    "n_lesions",
                    "n_patients",
                    "n_no_answer",
                    "n_indeterminate",
                    "n_without_reference",
                    "n_left_out",
                    "kappa",
                    "kappa_ci",
                    "accuracy",
                    "accuracy_ci",
                    "note",
                ]
            ]
        ),
        "flagged": int((~agreement["sequences_shown"]).sum()),
        "reference": _display(exclusions),
        "baseline": _display(baseline),
        "flow": _display(flow),
    }

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    paths = ReportPaths(html=out_dir / "report.html", markdown=out_dir / "report.md")
    for path, template in [(paths.markdown, "report.md.j2"), (paths.html, "report.html.j2")]:
        text = environment.get_template(template).render(**context)
        path.write_text(text, encoding="utf-8", newline="\n")
    return paths
