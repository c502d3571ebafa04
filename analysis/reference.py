"""The reference read per lesion and feature, and how raw answers are scored against it."""

from __future__ import annotations

import pandas as pd

from study.lirads import ABSENT, INDETERMINATE

NO_ANSWER = "no_answer"
"""The category a failed call is scored as when failures count as wrong; it matches no reference."""


def majority_reference(reads: pd.DataFrame) -> pd.DataFrame:
    """Return the radiologists' majority answer per lesion and feature.

    A radiologist's ``indeterminate`` counts as ``absent`` before the vote, as
    LI-RADS tells readers to call an uncertain feature absent. The reference is
    the answer given by more than half of the radiologists who scored the
    lesion; a lesion-feature pair without such a majority (for example a 1–1–1
    split among three readers) has no reference and is left out, and
    :func:`reference_exclusions` counts it.

    Examples
    --------
    >>> reads = pd.DataFrame({"lesion_id": ["L1"] * 3 + ["L2"] * 3,
    ...                       "reader": ["R1", "R2", "R3"] * 2,
    ...                       "feature": ["aphe"] * 6,
    ...                       "answer": ["nonrim", "nonrim", "absent", "absent", "rim", "nonrim"]})
    >>> majority_reference(reads).to_dict("records")
    [{'lesion_id': 'L1', 'feature': 'aphe', 'answer': 'nonrim'}]
    """
    scored = reads.dropna(subset=["answer"]).copy()
    scored["answer"] = scored["answer"].replace(INDETERMINATE, ABSENT)
    counts = (
        scored.groupby(["lesion_id", "feature", "answer"], sort=True)
        .size()
        .rename("votes")
        .reset_index()
    )
    totals = counts.groupby(["lesion_id", "feature"])["votes"].transform("sum")
    majority = counts[counts["votes"] * 2 > totals]
    return majority[["lesion_id", "feature", "answer"]].reset_index(drop=True)


def reference_exclusions(reads: pd.DataFrame) -> pd.DataFrame:
    """Count, per feature, the lesions read and those left without a majority reference.

    Examples
    --------
    >>> reads = pd.DataFrame({"lesion_id": ["L1", "L1", "L2", "L2"], "reader": ["A", "B"] * 2,
    ...                       "feature": "washout",
    ...                       "answer": ["absent", "absent", "absent", "nonperipheral"]})
    >>> reference_exclusions(reads).to_dict("records")
    [{'feature': 'washout', 'n_lesions_read': 2, 'n_reference': 1, 'n_no_majority': 1}]
    """
    read = reads.dropna(subset=["answer"]).groupby("feature")["lesion_id"].nunique()
    with_majority = majority_reference(reads).groupby("feature")["lesion_id"].nunique()
    table = pd.DataFrame({"n_lesions_read": read, "n_reference": with_majority})
    table = table.fillna(0).astype(int)
    table["n_no_majority"] = table["n_lesions_read"] - table["n_reference"]
    return table.rename_axis("feature").reset_index()


def scored_answers(
    predictions: pd.DataFrame, *, indeterminate_as: str = "absent", failures_as: str = "wrong"
) -> pd.Series:
    """Return each prediction's answer as scored, with NaN for rows left out.

    ``indeterminate_as`` is ``absent`` (LI-RADS: an uncertain feature is called
    absent) or ``missing``. ``failures_as`` is ``wrong``, which scores a call
    that did not end ``valid`` as :data:`NO_ANSWER`, or ``missing``.

    Examples
    --------
    >>> table = pd.DataFrame({"answer": ["rim", "indeterminate", None],
    ...                       "outcome": ["valid", "valid", "refusal"]})
    >>> scored_answers(table).tolist()
    ['rim', 'absent', 'no_answer']
    >>> scored_answers(table, indeterminate_as="missing", failures_as="missing").isna().tolist()
    [False, True, True]
    """
    for name, value, allowed in [
        ("indeterminate_as", indeterminate_as, ("absent", "missing")),
        ("failures_as", failures_as, ("wrong", "missing")),
    ]:
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    valid = predictions["outcome"] == "valid"
    answers = predictions["answer"].astype("object").where(valid)
    replacement = ABSENT if indeterminate_as == "absent" else None
    answers = answers.where(answers != INDETERMINATE, replacement)
    if failures_as == "wrong":
        answers = answers.where(valid, NO_ANSWER)
    return answers
