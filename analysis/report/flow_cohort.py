"""Report sections on the cases: flow of lesions and calls, the cohort, the human baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.baseline import MLIRADS_FEATURES, human_baseline, load_mlirads_reads
from analysis.fleiss import fleiss_kappa
from analysis.report.document import Section, table
from analysis.report.inputs import Inputs
from analysis.report.tables import _reference, flow_table
from study.lirads import FEATURES, OUTCOMES

SIZE_BINS = [0.0, 10.0, 20.0, np.inf]
SIZE_LABELS = ["< 10 mm", "10-19 mm", ">= 20 mm"]


def flow_section(inputs: Inputs) -> tuple[Section, dict[str, pd.DataFrame]]:
    """Build the STARD-style flow: lesions included and excluded, calls per cell by outcome."""
    records = inputs.records
    patients = records.patients
    read = set(records.predictions["lesion_id"].astype(str))
    by_split = (
        patients.assign(read_by_cells=patients["lesion_id"].astype(str).isin(read))
        .groupby(["split", "read_by_cells"])
        .size()
        .rename("n_lesions")
        .reset_index()
    )
    _, exclusions = _reference(records.reads)
    flow = flow_table(records.predictions)
    flow.insert(1, "cell", flow["cell_id"].map(inputs.answers.groupby("cell_id")["cell"].first()))
    outcome_totals = records.predictions["outcome"].value_counts().reindex(OUTCOMES, fill_value=0)

    blocks = [
        f"The cohort holds {len(patients)} lesions in {patients['patient_id'].nunique()} "
        f"patients. {len(read)} lesions were read by the cells; lesions outside the evaluation "
        "split (development lesions, used only as few-shot exemplars) were not. The table "
        "below counts lesions per split and whether the cells read them.",
        table(by_split, "Lesions per split", "lesions_by_split.csv"),
        "A lesion enters the analysis of a feature only when more than half of the "
        "radiologists gave it the same answer (the reference standard). Lesions without such "
        "a majority are excluded for that feature and counted in `n_no_majority`.",
        table(exclusions, "Reference standard per feature", "reference.csv"),
        "Answers (one per lesion and feature) per cell by outcome. Over all cells: "
        + ", ".join(f"{count} {outcome}" for outcome, count in outcome_totals.items())
        + ". `n_requests` counts distinct requests and `n_cached` the answers served from "
        "the response store instead of a new call.",
        table(flow, "Answers per cell by outcome", "flow.csv"),
    ]
    frames = {"lesions_by_split": by_split, "reference": exclusions, "flow": flow}
    return Section("flow", "Flow of cases and calls", tuple(blocks)), frames


def lesion_sizes(records) -> pd.Series | None:
    """Return each lesion's size in mm as the mean over radiologists, or None when not recorded."""
    reads = records.reads
    if "size_mm" not in reads.columns:
        return None
    sizes = pd.to_numeric(reads["size_mm"], errors="coerce")
    per_lesion = sizes.groupby(reads["lesion_id"]).mean().dropna()
    return per_lesion if len(per_lesion) else None


def cohort_section(inputs: Inputs) -> tuple[Section, dict[str, pd.DataFrame]]:
    """Build the cohort description: lesions by diagnosis, size and split."""
    records = inputs.records
    lesions = records.patients[["lesion_id", "patient_id", "split"]].copy()
    if "diagnosis" in records.pathology.columns:
        diagnosis = records.pathology.set_index("lesion_id")["diagnosis"]
        lesions["diagnosis"] = lesions["lesion_id"].map(diagnosis).fillna("not recorded")
    else:
        lesions["diagnosis"] = "not recorded"
    by_diagnosis = pd.crosstab(lesions["diagnosis"], lesions["split"], margins=True)
    by_diagnosis = by_diagnosis.rename_axis(columns=None).reset_index()
    blocks: list = [
        table(by_diagnosis, "Lesions by pathology diagnosis and split", "cohort_diagnosis.csv")
    ]
    frames = {"cohort_diagnosis": by_diagnosis}
    if "method" in records.pathology.columns:
        methods = records.pathology["method"].value_counts().rename_axis("method")
        method_table = methods.rename("n_lesions").reset_index()
        blocks.append(table(method_table, "How the diagnosis was confirmed", "cohort_method.csv"))
        frames["cohort_method"] = method_table

    sizes = lesion_sizes(records)
    if sizes is None:
        blocks.append(
            "Lesion size is not recorded: the reads table has no `size_mm` column, so the "
            "cohort cannot be described by size and the LI-RADS category cannot be computed."
        )
    else:
        lesions["size_mm"] = lesions["lesion_id"].map(sizes)
        lesions["size_group"] = pd.cut(
            lesions["size_mm"], SIZE_BINS, labels=SIZE_LABELS, right=False
        )
        summary = lesions.groupby("diagnosis")["size_mm"].describe()[
            ["count", "50%", "25%", "75%", "min", "max"]
        ]
        summary.columns = ["n", "median_mm", "q1_mm", "q3_mm", "min_mm", "max_mm"]
        summary["n"] = summary["n"].astype(int)
        summary = summary.reset_index()
        groups = pd.crosstab(lesions["diagnosis"], lesions["size_group"], dropna=False)
        groups = groups.reindex(columns=SIZE_LABELS, fill_value=0).rename_axis(columns=None)
        blocks += [
            "Size is each lesion's mean over the radiologists' `size_mm`, in millimetres.",
            table(summary, "Lesion size by diagnosis (mm)", "cohort_size.csv"),
            table(
                groups.reset_index(),
                "Lesions by diagnosis and size group",
                "cohort_size_groups.csv",
            ),
        ]
        frames["cohort_size"] = summary
        frames["cohort_size_groups"] = groups.reset_index()
    return Section("cohort", "Cohort", tuple(blocks)), frames


def cohort_fleiss(inputs: Inputs) -> pd.DataFrame:
    """Compute Fleiss' kappa among the run's radiologists per feature (indeterminate as absent)."""
    rows = []
    reads = inputs.radiologists
    for feature_name in [name for name in FEATURES if name in set(reads["feature"])]:
        wide = reads[reads["feature"] == feature_name].pivot_table(
            index="lesion_id", columns="reader", values="answer", aggfunc="first"
        )
        result = fleiss_kappa(
            wide, categories=list(FEATURES[feature_name].categories), confidence=inputs.confidence
        )
        rows.append(
            {
                "feature": feature_name,
                "fleiss_kappa": result.estimate,
                "ci_low": result.ci_low,
                "ci_high": result.ci_high,
                "n_lesions": result.n_subjects,
                "n_radiologists": result.n_raters,
            }
        )
    return pd.DataFrame(
        rows,
        columns=["feature", "fleiss_kappa", "ci_low", "ci_high", "n_lesions", "n_radiologists"],
    )


def baseline_section(inputs: Inputs, own: pd.DataFrame) -> tuple[Section, dict[str, pd.DataFrame]]:
    """Build the human baseline: this cohort's radiologists and the published mLI-RADS reads."""
    baseline = human_baseline(
        load_mlirads_reads(),
        features=list(MLIRADS_FEATURES.values()),
        n_resamples=inputs.n_resamples,
        seed=inputs.seed,
        confidence=inputs.confidence,
    )
    blocks = (
        f"Fleiss' kappa among this cohort's own radiologists per feature, with {inputs.percent} "
        "intervals from Gwet's linearised standard error. A radiologist's `indeterminate` "
        "counts as `absent`, as in the reference standard. These values are the bar a model "
        "is held to in the forest plots and in the reader-versus-model comparison.",
        table(
            own,
            "Radiologists of this cohort: Fleiss' kappa per feature",
            "human_baseline_cohort.csv",
        ),
        "Fleiss' kappa among four radiologists per feature, from the real reads of Becker A.S. "
        'et al., "Increased interreader agreement in diagnosis of hepatocellular carcinoma '
        'using an adapted LI-RADS algorithm", European Journal of Radiology 86 (2017) 33-40, '
        "doi:10.1016/j.ejrad.2016.11.004, published by its authors (ASBecker/mLIRADS) under "
        "CC BY-NC-SA 4.0.",
        "A reader who judged an observation benign left its features blank. `complete cases` "
        "keeps only the observations every reader scored; `blank as absent` keeps all and "
        "counts a blank as `absent`. `n_not_scored` counts observations with at least one "
        "blank. The intervals resample observations as independent units because the file "
        "has no patient id.",
        table(
            baseline, "Published mLI-RADS reads: Fleiss' kappa per feature", "human_baseline.csv"
        ),
    )
    frames = {"human_baseline_cohort": own, "human_baseline": baseline}
    return Section("baseline", "Human baseline", blocks), frames
