"""The registered hypothesis tests alone, without the rest of the report.

``vlmstudy power`` runs these on every simulated study, so the power it
estimates is the power of the analysis the report runs: the same reference,
scoring, bootstrap intervals, p-values and multiplicity adjustment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.records import RunRecords
from analysis.report.comparisons import noninferiority_margin, noninferiority_table
from analysis.report.hypotheses import hypothesis_table
from analysis.report.inputs import prepare
from analysis.report.per_feature import _quiet, _with_labels, ac1_table
from analysis.report.tables import agreement_table

_AC1_COLUMNS = ["ac1", "ac1_ci_low", "ac1_ci_high", "ac1_se"]


def registered_tests(records: RunRecords, *, n_resamples: int, seed: int) -> pd.DataFrame:
    """Run the protocol's hypothesis tests on a run's records, as the report does.

    Gwet's AC1 and the reader-versus-model comparison are computed only when a
    hypothesis needs them. Every value a hypothesis reads is computed exactly
    as :func:`analysis.report.build_report` computes it.

    Parameters
    ----------
    records
        The run's records; ``records.protocol["hypotheses"]`` lists the tests.
    n_resamples, seed
        Bootstrap resamples and seed of every interval.

    Returns
    -------
    pandas.DataFrame
        The table of :func:`analysis.report.hypotheses.hypothesis_table`, one row per test.

    Examples
    --------
    >>> from analysis.records import RunRecords
    >>> from analysis.report.tables import PREDICTION_COLUMNS
    >>> answers = ["present", "absent"] * 10
    >>> rows = [{**dict.fromkeys(PREDICTION_COLUMNS, ""), "cell_id": "c1", "reader": "m",
    ...          "strategy": "zero_shot", "sequences": "t2", "replicate": 0,
    ...          "lesion_id": f"l{i}", "feature": "t2_hyperintensity", "outcome": "valid",
    ...          "answer": a} for i, a in enumerate(answers)]
    >>> reads = pd.DataFrame([(f"l{i}", "R1", "t2_hyperintensity", a)
    ...                       for i, a in enumerate(answers)],
    ...                      columns=["lesion_id", "reader", "feature", "answer"])
    >>> patients = pd.DataFrame({"lesion_id": [f"l{i}" for i in range(20)],
    ...                          "patient_id": [f"p{i}" for i in range(20)], "split": "test"})
    >>> protocol = {"hypotheses": [{"id": "H1", "endpoint": "accuracy",
    ...                             "features": ["t2_hyperintensity"], "null_value": 0.5}]}
    >>> records = RunRecords("r", protocol, {}, pd.DataFrame(rows), reads, pd.DataFrame(),
    ...                      patients)
    >>> registered_tests(records, n_resamples=200, seed=1)[["id", "estimate"]].values.tolist()
    [['H1', 1.0]]
    """
    plan = records.protocol.get("analysis", {}) or {}
    hypotheses = records.protocol.get("hypotheses", []) or []
    endpoints = {str(entry.get("endpoint", "kappa")) for entry in hypotheses}
    inputs = prepare(
        records,
        n_resamples=n_resamples,
        seed=seed,
        confidence=float(plan.get("confidence", 0.95)),
        indeterminate_as=plan.get("indeterminate_as", "absent"),
        failures_as=plan.get("failures_as", "wrong"),
    )
    agreement = agreement_table(
        records,
        n_resamples=n_resamples,
        seed=seed,
        confidence=inputs.confidence,
        indeterminate_as=inputs.indeterminate_as,
        failures_as=inputs.failures_as,
    )
    per_cell = _with_labels(inputs, agreement)
    if "ac1" in endpoints:
        per_cell = per_cell.merge(_quiet(ac1_table, inputs), on=["cell_id", "feature"], how="left")
    else:
        per_cell = per_cell.assign(**dict.fromkeys(_AC1_COLUMNS, np.nan))
    margin, _ = noninferiority_margin(records.protocol)
    ni = noninferiority_table(inputs, margin) if "noninferiority" in endpoints else pd.DataFrame()
    return _quiet(hypothesis_table, inputs, per_cell, ni, margin)
