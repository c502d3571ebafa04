"""The reference read per lesion and feature, and how raw answers are scored against it."""

from __future__ import annotations

import pandas as pd

from study.lirads import ABSENT, INDETERMINATE

NO_ANSWER = "no_answer"
"""The category a failed call is scored as when failures count as wrong."""


def majority_reference(reads: pd.DataFrame) -> pd.DataFrame:
    """Return the radiologists' majority answer per lesion and feature.

    A lesion-feature pair without a strict majority (for example a 1–1–1
    split among three readers) has no reference and is left out; the caller
    counts it as excluded.

    Examples
    --------
    >>> reads = pd.DataFrame({"lesion_id": ["L1"] * 3 + ["L2"] * 3,
    ...                       "reader": ["R1", "R2", "R3"] * 2,
    ...                       "feature": ["aphe"] * 6,
    ...                       "answer": ["nonrim", "nonrim", "absent", "absent", "rim", "nonrim"]})
    >>> majority_reference(reads).to_dict("records")
    [{'lesion_id': 'L1', 'feature': 'aphe', 'answer': 'nonrim'}]
    """
    scored = reads.dropna(subset=["answer"])
    counts = (
        scored.groupby(["lesion_id", "feature", "answer"], sort=True)
        .size()
        .rename("votes")
        .reset_index()
    )
    totals = counts.groupby(["lesion_id", "feature"])["votes"].transform("sum")
    majority = counts[counts["votes"] * 2 > totals]
    return majority[["lesion_id", "feature", "answer"]].reset_index(drop=True)


def scored_answers(
    predictions: pd.DataFrame, *, indeterminate_as: str = "absent", failures_as: str = "wrong"
) -> pd.Series:
    """Return each prediction's answer as scored, with NaN for rows left out.

    ``indeterminate`` becomes ``absent`` (LI-RADS: an uncertain feature is
    called absent) or missing; a call that did not end ``valid`` becomes the
    category :data:`NO_ANSWER`, which matches no reference, or missing.
    """
    answers = predictions["answer"].astype("object").where(predictions["outcome"] == "valid")
    if indeterminate_as == "absent":
        answers = answers.where(answers != INDETERMINATE, ABSENT)
    else:
        answers = answers.where(answers != INDETERMINATE, None)
    if failures_as == "wrong":
        answers = answers.where(predictions["outcome"] == "valid", NO_ANSWER)
    return answers
