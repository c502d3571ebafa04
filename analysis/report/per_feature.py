"""Report section per feature and cell: agreement, accuracy, forest plots, heatmap, confusion."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import figures
from analysis.agreement import UndefinedStatisticWarning, cohen_kappa
from analysis.gwet import gwet_ac1
from analysis.reference import NO_ANSWER
from analysis.report.document import Figure, Section, Table, interval, table
from analysis.report.inputs import Inputs
from study.lirads import FEATURES

NA_EXPLANATION = (
    "An interval shown as `NA to NA` is undefined, not zero: every bootstrap resample gave "
    "the same value (for example a cell that matched the reference on every lesion, or a "
    "feature whose reference answer is the same for every lesion), so there is no spread to "
    "take percentiles from. A kappa of `NA` means the expected agreement is 1 (both raters "
    "used one category only), where kappa is 0/0; AC1 stays defined there."
)


def _quiet(function, *args, **kwargs):
    """Call a statistic with its undefined-value warnings silenced (NaN is explained once)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedStatisticWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return function(*args, **kwargs)


def _judged(inputs: Inputs) -> pd.DataFrame:
    return inputs.answers.dropna(subset=["reference", "analysed"])


def ac1_table(inputs: Inputs) -> pd.DataFrame:
    """Compute Gwet's AC1 of each cell with the reference per feature (lesions independent)."""
    rows = []
    for (cell_id, feature_name), group in _judged(inputs).groupby(["cell_id", "feature"]):
        ratings = group[["reference", "analysed"]].to_numpy(dtype=object)
        result = _quiet(
            gwet_ac1,
            ratings,
            categories=inputs.categories(feature_name),
            confidence=inputs.confidence,
        )
        rows.append(
            [cell_id, feature_name, result.estimate, result.ci_low, result.ci_high, result.se]
        )
    columns = ["cell_id", "feature", "ac1", "ac1_ci_low", "ac1_ci_high", "ac1_se"]
    return pd.DataFrame(rows, columns=columns)


def radiologist_table(inputs: Inputs) -> pd.DataFrame:
    """Compute Cohen's kappa of each cell with each radiologist, per feature (Wald interval)."""
    reads = inputs.radiologists.rename(columns={"answer": "radiologist_answer"})
    answers = inputs.answers.dropna(subset=["analysed"])
    merged = answers.merge(
        reads[["lesion_id", "feature", "reader", "radiologist_answer"]].rename(
            columns={"reader": "radiologist"}
        ),
        on=["lesion_id", "feature"],
    ).dropna(subset=["radiologist_answer"])
    rows = []
    for (cell_id, feature_name, radiologist), group in merged.groupby(
        ["cell_id", "feature", "radiologist"]
    ):
        result = _quiet(
            cohen_kappa,
            list(group["radiologist_answer"]),
            list(group["analysed"]),
            categories=inputs.categories(feature_name),
            confidence=inputs.confidence,
        )
        rows.append(
            [
                cell_id,
                feature_name,
                radiologist,
                result.estimate,
                result.ci_low,
                result.ci_high,
                len(group),
            ]
        )
    return pd.DataFrame(
        rows,
        columns=["cell_id", "feature", "radiologist", "kappa", "ci_low", "ci_high", "n_lesions"],
    )


def _footnotes(notes: pd.Series) -> tuple[list[str], list[str]]:
    """Number the distinct bootstrap notes once and return each row's marks and the legend."""
    legend: list[str] = []
    marks = []
    for note in notes.fillna("").astype(str):
        numbers = []
        # Each part starts with its statistic's name; a part may itself contain "; ".
        for part in [p for p in re.split(r"; (?=(?:kappa|accuracy): )", note) if p]:
            if part not in legend:
                legend.append(part)
            number = str(legend.index(part) + 1)
            if number not in numbers:
                numbers.append(number)
        marks.append(",".join(numbers))
    return marks, [f"[{i + 1}] {text}" for i, text in enumerate(legend)]


def _with_labels(inputs: Inputs, frame: pd.DataFrame) -> pd.DataFrame:
    cells = inputs.answers.groupby("cell_id")[["cell", "sequence_set"]].first()
    return frame.join(cells, on="cell_id")


def per_feature_section(
    inputs: Inputs,
    agreement: pd.DataFrame,
    own_baseline: pd.DataFrame,
    figure_dir: Path,
) -> tuple[Section, dict[str, pd.DataFrame]]:
    """Build the per-feature section: summary first, then per-cell detail, figures and CSVs."""
    ac1 = ac1_table(inputs)
    per_cell = _with_labels(inputs, agreement).merge(ac1, on=["cell_id", "feature"], how="left")
    per_cell["feature_order"] = per_cell["feature"].map(_feature_order)
    per_cell = per_cell.sort_values(
        ["feature_order", "reader", "strategy", "sequence_set", "replicate"], ignore_index=True
    ).drop(columns="feature_order")
    versus = _with_labels(inputs, radiologist_table(inputs))
    level = inputs.percent

    summary = per_cell.assign(
        value=[
            f"{k:.2f} ({interval(a, b, 2)})" if np.isfinite(k) else "NA"
            for k, a, b in per_cell[["kappa", "kappa_ci_low", "kappa_ci_high"]].to_numpy()
        ]
    ).pivot_table(
        index=["feature", "reader", "strategy"],
        columns="sequence_set",
        values="value",
        aggfunc="first",
        sort=False,
    )
    summary.columns = [f"kappa {label} ({level} CI)" for label in summary.columns]
    summary = summary.reset_index()

    marks, legend = _footnotes(per_cell["note"])
    detail = pd.DataFrame(
        {
            "feature": per_cell["feature"],
            "cell": per_cell["cell"],
            "sequences shown": per_cell["sequences_shown"].map({True: "yes", False: "NO"}),
            "n": per_cell["n_lesions"],
            "no answer": per_cell["n_no_answer"],
            "kappa": per_cell["kappa"],
            f"kappa {level} CI": [
                interval(a, b) for a, b in per_cell[["kappa_ci_low", "kappa_ci_high"]].to_numpy()
            ],
            "AC1": per_cell["ac1"],
            f"AC1 {level} CI": [
                interval(a, b) for a, b in per_cell[["ac1_ci_low", "ac1_ci_high"]].to_numpy()
            ],
            "accuracy": per_cell["accuracy"],
            f"accuracy {level} CI": [
                interval(a, b)
                for a, b in per_cell[["accuracy_ci_low", "accuracy_ci_high"]].to_numpy()
            ],
            "notes": marks,
        }
    )
    versus_wide = versus.assign(
        value=[
            f"{k:.2f} ({interval(a, b, 2)})" if np.isfinite(k) else "NA"
            for k, a, b in versus[["kappa", "ci_low", "ci_high"]].to_numpy()
        ]
    ).pivot_table(
        index=["feature", "cell"],
        columns="radiologist",
        values="value",
        aggfunc="first",
        sort=False,
    )
    versus_wide.columns = [f"kappa vs {name}" for name in versus_wide.columns]

    sequence_lines = "; ".join(
        f"`{label}` = {combination.replace('+', ', ')}"
        for label, combination in inputs.sequence_sets.items()
    )
    mapping = (
        "counts as `absent`"
        if inputs.indeterminate_as == "absent"
        else "is left out (`indeterminate_as: missing`)"
    )
    failures = (
        f"count as the extra category `{NO_ANSWER}`, which never matches, so they lower kappa, "
        "AC1 and accuracy"
        if inputs.failures_as == "wrong"
        else "are left out (`failures_as: missing`)"
    )
    blocks: list = [
        f"Each cell is named `reader | strategy | sequence set | replicate`. Sequence sets: "
        f"{sequence_lines}.",
        f"The reference is the radiologists' majority answer. A reader's `indeterminate` "
        f"{mapping}; parse failures, refusals and infrastructure failures {failures}. Kappa "
        f"is unweighted Cohen's kappa over the feature's categories plus `{NO_ANSWER}`, with a "
        f"{level} percentile interval from {inputs.n_resamples} bootstrap resamples of "
        f"patients (seed {inputs.seed}). AC1 is Gwet's AC1 with a t interval and accuracy is "
        "the share of lesions whose answer equals the reference (percentile bootstrap "
        "interval). The AC1 interval and the kappas against single radiologists treat "
        "lesions as independent.",
        NA_EXPLANATION,
        table(
            summary,
            f"Summary: kappa with the reference ({level} CI) per feature, reader "
            "and strategy, one column per sequence set",
            "agreement_summary.csv",
        ),
    ]

    figure_blocks = _figures(inputs, per_cell, own_baseline, figure_dir)
    blocks += figure_blocks

    flagged = int((~per_cell["sequences_shown"].astype(bool)).sum())
    blocks += [
        f"{flagged} cell-feature row(s) have `sequences shown` = NO: the cell did not show "
        "every sequence the feature needs, so the model could not judge it from the images.",
        Table(
            *_as_table(
                detail,
                "Every cell and feature (full precision in "
                "`tables/agreement.csv` and `tables/per_cell.csv`)",
            ),
            "per_cell.csv",
            collapsed=True,
        ),
    ]
    if legend:
        blocks.append("Bootstrap notes referenced in the `notes` column: " + " ".join(legend))
    blocks.append(
        Table(
            *_as_table(
                versus_wide.reset_index(),
                f"Kappa ({level} Wald CI) of each cell with each radiologist",
            ),
            "agreement_radiologists.csv",
            collapsed=True,
        )
    )
    blocks.append(
        "Accuracy against pathology: no pathology diagnosis determines a single feature "
        "answer (an HCC may lack washout, a cyst shows no arterial hyperenhancement but so do "
        "many other lesions), so feature accuracy is measured against the radiologists' "
        "reference only. Accuracy against pathology is reported for the LI-RADS category "
        "computed from each cell's features, in the sensitivity analyses."
    )
    frames = {
        "per_cell": per_cell.drop(columns=["note"]).assign(notes=marks),
        "agreement_summary": summary,
        "agreement_radiologists": versus,
    }
    return Section(
        "per-feature", "Agreement and accuracy per feature and cell", tuple(blocks)
    ), frames


def _feature_order(name: str) -> int:
    return list(FEATURES).index(name) if name in FEATURES else len(FEATURES)


def _as_table(frame: pd.DataFrame, caption: str) -> tuple:
    shown = table(frame, caption)
    return shown.caption, shown.headers, shown.rows


def _figures(
    inputs: Inputs, per_cell: pd.DataFrame, own_baseline: pd.DataFrame, folder: Path
) -> list:
    blocks: list = []
    level = inputs.percent
    baseline = own_baseline.set_index("feature")["fleiss_kappa"] if len(own_baseline) else {}
    for feature_name, rows in per_cell.groupby("feature", sort=False):
        reference = float(baseline.get(feature_name, np.nan)) if len(baseline) else None
        figure = figures.forest_plot(
            rows,
            label="cell",
            estimate="kappa",
            low="kappa_ci_low",
            high="kappa_ci_high",
            xlabel=f"Cohen's kappa with the reference read (unitless), {level} CI",
            title=f"{FEATURES[feature_name].label} ({feature_name})",
            reference=reference,
            reference_label="radiologists' Fleiss kappa",
        )
        name = f"forest_{feature_name}"
        png = figures.save(figure, folder, name)
        blocks.append(
            Figure(
                name,
                f"Forest plot: kappa of each cell with the reference for "
                f"`{feature_name}`; the dashed line is the radiologists' own "
                "Fleiss kappa.",
                png,
            )
        )

    heat = per_cell.assign(column=per_cell["reader"] + " " + per_cell["sequence_set"])
    values = heat.pivot_table(
        index="feature", columns="column", values="kappa", aggfunc="mean", sort=False
    )
    figure = figures.heatmap(
        values,
        xlabel="reader and sequence set",
        ylabel="feature",
        colorbar_label="mean Cohen's kappa (unitless)",
        title="Kappa with the reference, mean over strategies and replicates",
    )
    png = figures.save(figure, folder, "heatmap_feature_sequences")
    blocks.append(
        Figure(
            "heatmap_feature_sequences",
            "Heatmap: feature by sequence set, per reader (NA: kappa undefined).",
            png,
        )
    )

    judged = inputs.answers.dropna(subset=["reference", "analysed"])
    for reader, answers in judged.groupby("reader", sort=True):
        matrices = []
        for feature_name, group in answers.groupby("feature", sort=False):
            categories = inputs.categories(feature_name)
            counts = pd.crosstab(group["reference"], group["analysed"])
            counts = counts.reindex(index=categories[:-1], columns=categories, fill_value=0)
            matrices.append((feature_name, counts))
        matrices.sort(key=lambda item: _feature_order(item[0]))
        figure = figures.confusion_matrices(
            matrices, title=f"{reader}: reference read against reader answer, all cells pooled"
        )
        name = f"confusion_{_slug(reader)}"
        png = figures.save(figure, folder, name)
        blocks.append(
            Figure(
                name,
                f"Confusion matrices of `{reader}` (counts of lesion "
                "answers pooled over strategies, sequence sets and replicates).",
                png,
            )
        )
    return blocks


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(text))
