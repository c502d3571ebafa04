"""Reporting-checklist items a run's report can answer, each with the section that answers it.

Items are paraphrased from TRIPOD-LLM (Gallifant et al., Nature Medicine 2025),
MI-CLEAR-LLM (Park et al., Korean Journal of Radiology 2024) and STARD 2015,
as short summaries, not the standards' full item lists. Only items a logged
run can answer are listed. An item whose evidence the run did not record is
marked as not answered, so the study team knows to answer it in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class ChecklistItem:
    """One reporting item: its standard, what it requires and the answering section's anchor."""

    standard: str
    item: str
    anchor: str


ITEMS: tuple[ChecklistItem, ...] = (
    ChecklistItem("TRIPOD-LLM", "LLM name, version (snapshot) and query dates", "resources"),
    ChecklistItem("TRIPOD-LLM", "Decoding settings and number of repeated queries", "resources"),
    ChecklistItem("TRIPOD-LLM", "Exact prompts", "prompts"),
    ChecklistItem("TRIPOD-LLM", "How outputs were parsed and how failures were handled", "flow"),
    ChecklistItem("TRIPOD-LLM", "Performance measures with confidence intervals", "per-feature"),
    ChecklistItem("TRIPOD-LLM", "Cost and runtime", "resources"),
    ChecklistItem("TRIPOD-LLM", "Registration and deviations from the protocol", "registration"),
    ChecklistItem("MI-CLEAR-LLM", "Model identity and query date", "resources"),
    ChecklistItem(
        "MI-CLEAR-LLM", "Handling of randomness (temperature, seed, repeats)", "resources"
    ),
    ChecklistItem("MI-CLEAR-LLM", "Exact prompts, prompt structure and sessions", "prompts"),
    ChecklistItem(
        "MI-CLEAR-LLM",
        "Independence of test data from prompt development "
        "(exemplars from outside the evaluation split)",
        "flow",
    ),
    ChecklistItem("MI-CLEAR-LLM", "Prompt testing before the study", ""),
    ChecklistItem("STARD 2015", "Intended sample size and how it was determined", "power"),
    ChecklistItem("STARD 2015", "Flow of participants: included, excluded, unparseable", "flow"),
    ChecklistItem(
        "STARD 2015", "Baseline characteristics and distribution of the target condition", "cohort"
    ),
    ChecklistItem(
        "STARD 2015", "Cross-tabulation of index test against reference standard", "per-feature"
    ),
    ChecklistItem(
        "STARD 2015", "Estimates of diagnostic accuracy with confidence intervals", "per-feature"
    ),
    ChecklistItem("STARD 2015", "Pre-specified versus exploratory analyses", "hypotheses"),
    ChecklistItem(
        "STARD 2015", "Indeterminate index test results and how they were handled", "sensitivity"
    ),
    ChecklistItem(
        "STARD 2015", "Reference standard and its reproducibility between readers", "baseline"
    ),
)
"""The items in report order per standard; an empty anchor means the run cannot answer it."""


def checklist_table(section_numbers: dict[str, tuple[int, str]]) -> pd.DataFrame:
    """Tabulate the items with where each is answered, given section anchor to (number, title).

    Examples
    --------
    >>> table = checklist_table({"resources": (10, "Cost")})
    >>> table.iloc[0]["answered in"]
    'section 10, Cost'
    >>> table[table["item"].str.startswith("Prompt testing")]["answered in"].item()
    'not answered by the run: report it in the paper'
    """
    rows = []
    for entry in ITEMS:
        if entry.anchor in section_numbers:
            number, title = section_numbers[entry.anchor]
            where = f"section {number}, {title}"
        elif entry.anchor == "registration":
            where = "the report header: registration and deviations"
        else:
            where = "not answered by the run: report it in the paper"
        rows.append({"standard": entry.standard, "item": entry.item, "answered in": where})
    return pd.DataFrame(rows)
