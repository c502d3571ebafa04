"""Report section on sensitivity analyses: answer mappings and category consistency."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.accuracy import diagnostic_accuracy
from analysis.agreement import UndefinedStatisticWarning, cohen_kappa
from analysis.report.document import Section, interval, table
from analysis.report.flow_cohort import lesion_sizes
from analysis.report.inputs import Inputs
from analysis.report.tables import agreement_table
from study.lirads import LIRADS_CATEGORIES, category_from_answers

CATEGORY_FEATURES = ("aphe", "washout", "enhancing_capsule")
"""Features without which :func:`study.lirads.category_from_answers` returns no category."""


def _other(value: str, first: str, second: str) -> str:
    return second if value == first else first


def mapping_table(inputs: Inputs, primary: pd.DataFrame) -> pd.DataFrame:
    """Compare mean kappa per feature and reader under the primary and two alternative mappings."""
    failures = _other(inputs.failures_as, "wrong", "missing")
    indeterminate = _other(inputs.indeterminate_as, "absent", "missing")
    primary_label = (
        f"primary (failures {inputs.failures_as}, indeterminate {inputs.indeterminate_as})"
    )
    variants = {primary_label: primary}
    for label, kwargs in [
        (
            f"failures as {failures}",
            {"failures_as": failures, "indeterminate_as": inputs.indeterminate_as},
        ),
        (
            f"indeterminate as {indeterminate}",
            {"failures_as": inputs.failures_as, "indeterminate_as": indeterminate},
        ),
    ]:
        # Only the point estimates are compared, so a small bootstrap suffices here.
        variants[label] = agreement_table(
            inputs.records,
            n_resamples=20,
            seed=inputs.seed,
            confidence=inputs.confidence,
            **kwargs,
        )
    columns = []
    for label, frame in variants.items():
        means = frame.groupby(["feature", "reader"], sort=False)["kappa"].mean().rename(label)
        columns.append(means)
    return pd.concat(columns, axis=1).reset_index()


def _categories(answers: pd.DataFrame, sizes: pd.Series) -> pd.DataFrame:
    """Compute a category per cell and lesion from the valid feature answers."""
    valid = answers[answers["outcome"] == "valid"]
    rows = []
    for (cell, lesion), group in valid.groupby(["cell", "lesion_id"], sort=True):
        if lesion not in sizes.index:
            continue
        category = category_from_answers(
            dict(zip(group["feature"], group["answer"].astype(str), strict=True)),
            float(sizes[lesion]),
        )
        rows.append((cell, lesion, category))
    return pd.DataFrame(rows, columns=["cell", "lesion_id", "computed_category"])


def category_table(inputs: Inputs) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Compare each cell's computed category with the reference's and with pathology."""
    sizes = lesion_sizes(inputs.records)
    features = set(inputs.answers["feature"])
    if sizes is None or not set(CATEGORY_FEATURES) <= features:
        return None
    computed = _categories(inputs.answers, sizes)
    reference_answers = inputs.answers.drop_duplicates(["lesion_id", "feature"]).dropna(
        subset=["reference"]
    )
    reference = {
        lesion: category_from_answers(
            dict(zip(g["feature"], g["reference"], strict=True)), float(sizes[lesion])
        )
        for lesion, g in reference_answers.groupby("lesion_id")
        if lesion in sizes.index
    }
    computed["reference_category"] = computed["lesion_id"].map(reference)
    pathology = inputs.records.pathology
    if "diagnosis" in pathology.columns:
        computed["diagnosis"] = computed["lesion_id"].map(
            pathology.set_index("lesion_id")["diagnosis"]
        )
    rows = []
    for cell, group in computed.groupby("cell", sort=True):
        paired = group.dropna(subset=["computed_category", "reference_category"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedStatisticWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            kappa = (
                cohen_kappa(
                    list(paired["reference_category"]),
                    list(paired["computed_category"]),
                    categories=list(LIRADS_CATEGORIES),
                    confidence=inputs.confidence,
                )
                if len(paired)
                else None
            )
        row = {
            "cell": cell,
            "n_lesions": len(paired),
            "category_agreement": float(
                (paired["reference_category"] == paired["computed_category"]).mean()
            )
            if len(paired)
            else np.nan,
            "category_kappa": kappa.estimate if kappa else np.nan,
            "kappa_ci": interval(kappa.ci_low, kappa.ci_high) if kappa else "NA to NA",
        }
        if "diagnosis" in group.columns:
            known = group.dropna(subset=["computed_category", "diagnosis"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedStatisticWarning)
                accuracy = diagnostic_accuracy(
                    list(known["diagnosis"] == "HCC"),
                    list(known["computed_category"] == "LR-5"),
                    positive=True,
                    confidence=inputs.confidence,
                ).set_index("statistic")
            for statistic in ("sensitivity", "specificity"):
                item = accuracy.loc[statistic]
                row[f"HCC {statistic}"] = item["estimate"]
                row[f"HCC {statistic} CI"] = interval(item["ci_low"], item["ci_high"])
        rows.append(row)
    return computed, pd.DataFrame(rows)


def sensitivity_section(inputs: Inputs, primary: pd.DataFrame) -> tuple[Section, dict]:
    """Build the sensitivity analyses."""
    mappings = mapping_table(inputs, primary)
    blocks: list = [
        "Mean Cohen's kappa with the reference over each reader's cells, per feature, under "
        "the primary mapping and with one mapping changed at a time. Failures `wrong` count a "
        "parse failure, refusal or infrastructure failure as a wrong answer; `missing` leaves "
        "them out. Indeterminate `absent` reads a reader's `indeterminate` as `absent`, as "
        "LI-RADS does for an uncertain major feature; `missing` leaves it out.",
        table(
            mappings,
            "Kappa under the failure and indeterminate mappings",
            "sensitivity_mappings.csv",
        ),
        "Self-consistency of a stated category: the readers in this run report feature answers "
        "only and no LI-RADS category, so a stated category cannot be compared with the "
        "category computed from the same reader's features. The category computed from each "
        "cell's features (`study.lirads.category_from_answers`, with the radiologists' mean "
        "size) is compared instead with the category computed from the reference features, "
        "and with pathology (LR-5 read as a call of HCC, Wilson intervals, lesions "
        "independent).",
    ]
    frames = {"sensitivity_mappings": mappings}
    categories = category_table(inputs)
    if categories is None:
        blocks.append(
            "Not computed: the category needs lesion size (`size_mm` in the reads) and the "
            "features " + ", ".join(f"`{f}`" for f in CATEGORY_FEATURES) + " in the predictions."
        )
    else:
        per_lesion, per_cell = categories
        blocks.append(
            table(
                per_cell,
                "Computed category against the reference's category and against pathology",
                "category_consistency.csv",
            )
        )
        frames["category_consistency"] = per_cell
        frames["category_per_lesion"] = per_lesion
    return Section("sensitivity", "Sensitivity analyses", tuple(blocks)), frames
