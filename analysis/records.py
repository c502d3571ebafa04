"""The logged records of one sweep run that the analysis reads."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True, eq=False)
class RunRecords:
    """Everything the report needs from one run, as logged by ``study``.

    Equality is identity (``eq=False``) because DataFrames have no single truth value.

    Attributes
    ----------
    run_id
        MLflow id of the parent run.
    protocol
        The registered protocol as a mapping (keys ``id``, ``title``, ``grid``, ...).
    registration
        The registration record; the report reads ``registered_at`` from it.
    predictions
        The predictions table, one row per lesion x feature x cell.
    reads
        Radiologist reads: ``lesion_id, reader, feature, answer``.
    pathology
        One row per lesion with the pathology diagnosis.
    patients
        ``lesion_id, patient_id, split`` for every lesion.
    """

    run_id: str
    protocol: dict
    registration: dict
    predictions: pd.DataFrame
    reads: pd.DataFrame
    pathology: pd.DataFrame
    patients: pd.DataFrame


PREDICTION_DTYPES = {
    "protocol_id": "string",
    "protocol_sha256": "string",
    "run_id": "string",
    "cell_id": "string",
    "reader": "string",
    "model_snapshot": "string",
    "strategy": "string",
    "sequences": "string",
    "replicate": "int64",
    "patient_id": "string",
    "lesion_id": "string",
    "feature": "string",
    "answer": "string",
    "confidence": "float64",
    "outcome": "string",
    "latency_s": "float64",
    "input_tokens": "int64",
    "output_tokens": "int64",
    "cost_usd": "float64",
    "cached": "bool",
    "request_sha256": "string",
}
"""Column types of the predictions table, in its fixed column order."""


def _client(tracking_uri: str | None):
    import os

    from mlflow.tracking import MlflowClient

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlruns.db"
    return MlflowClient(uri), uri


def _parent_run(client, uri: str, run_id: str):
    from mlflow.exceptions import MlflowException

    from study.errors import UserInputError

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserInputError(
            f"run {run_id!r} not found in the tracking store {uri}; "
            "give the run id that 'vlmstudy run' printed, and the same --tracking-uri."
        ) from None
    if run.data.tags.get("vlmstudy.role") != "sweep":
        raise UserInputError(
            f"run {run_id!r} is not a sweep's parent run; "
            "give the run id that 'vlmstudy run' printed."
        )
    return run


def load_predictions(run_id: str, *, tracking_uri: str | None = None) -> pd.DataFrame:
    """Return the predictions table of a sweep: every child run's rows, in a fixed order.

    Rows are sorted by cell, lesion and feature, so the same run always gives
    the same table.
    """
    import tempfile
    from pathlib import Path

    client, uri = _client(tracking_uri)
    parent = _parent_run(client, uri, run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        max_results=50000,
    )
    tables = []
    with tempfile.TemporaryDirectory() as folder:
        for child in children:
            local = client.download_artifacts(child.info.run_id, "predictions.csv", folder)
            tables.append(
                pd.read_csv(
                    local, dtype={"answer": "string", "lesion_id": "string", "patient_id": "string"}
                )
            )
            Path(local).unlink()
    columns = list(PREDICTION_DTYPES)
    if not tables:
        return pd.DataFrame(
            {name: pd.Series(dtype=kind) for name, kind in PREDICTION_DTYPES.items()}
        )
    table = pd.concat(tables, ignore_index=True)[columns]
    table = table.astype(PREDICTION_DTYPES)
    return table.sort_values(["cell_id", "lesion_id", "feature"], kind="stable").reset_index(
        drop=True
    )


def load_run_records(run_id: str, *, tracking_uri: str | None = None) -> RunRecords:
    """Return everything the report needs from a sweep's parent run."""
    import json
    import tempfile
    from pathlib import Path

    import yaml

    client, uri = _client(tracking_uri)
    _parent_run(client, uri, run_id)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(client.download_artifacts(run_id, "", folder))
        protocol = yaml.safe_load((root / "protocol.yaml").read_text(encoding="utf-8"))
        registration = json.loads((root / "registration.json").read_text(encoding="utf-8"))
        deviations = json.loads((root / "deviations.json").read_text(encoding="utf-8"))
        registration = {**registration, "deviations": deviations}
        tables = {
            name: pd.read_csv(root / "cohort" / f"{name}.csv", dtype=str)
            for name in ("reads", "pathology", "patients")
        }
    return RunRecords(
        run_id=run_id,
        protocol=protocol,
        registration=registration,
        predictions=load_predictions(run_id, tracking_uri=tracking_uri),
        reads=tables["reads"],
        pathology=tables["pathology"],
        patients=tables["patients"],
    )
