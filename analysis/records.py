"""The logged records of one sweep run that the analysis reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

PROMPT_COLUMNS = ["cell_id", "lesion_id", "prompt", "response", "repairs"]
"""Columns of :attr:`RunRecords.prompts`."""

CELL_RUN_COLUMNS = ["cell_id", "run_id", "start_time", "end_time"]
"""Columns of :attr:`RunRecords.cell_runs`; times are UTC ISO 8601 strings."""


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="string") for name in columns})


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
    prompts
        The exact text sent and received per cell and lesion (each child run's
        ``prompts.jsonl``), columns :data:`PROMPT_COLUMNS`; empty when not loaded.
    cell_runs
        Start and end time of each cell's child run (the query dates), columns
        :data:`CELL_RUN_COLUMNS`; empty when not loaded.
    """

    run_id: str
    protocol: dict
    registration: dict
    predictions: pd.DataFrame
    reads: pd.DataFrame
    pathology: pd.DataFrame
    patients: pd.DataFrame
    prompts: pd.DataFrame = field(default_factory=lambda: _empty(PROMPT_COLUMNS))
    cell_runs: pd.DataFrame = field(default_factory=lambda: _empty(CELL_RUN_COLUMNS))


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
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from study.errors import UserInputError

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlruns.db"
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserInputError(
            f"tracking store {uri} not found; run the command in the folder where 'vlmstudy run' "
            "wrote mlruns.db, or give that store with --tracking-uri."
        )
    try:
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)
    except Exception as error:  # MLflow raises several kinds for an unusable URI.
        raise UserInputError(
            f"tracking store {uri!r} cannot be opened ({type(error).__name__}: {error}); "
            "give a URI such as sqlite:///mlruns.db or http://127.0.0.1:5000 with --tracking-uri."
        ) from None
    return client, uri


def _parent_run(client, uri: str, run_id: str, *, require_finished: bool = True):
    from mlflow.exceptions import MlflowException

    from study.errors import UserInputError

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserInputError(
            f"run {run_id!r} not found in the tracking store {uri}; "
            "give the run id that 'vlmstudy run' printed, and the same --tracking-uri."
        ) from None
    if run.data.tags.get("vlmstudy.role") == "cell":
        parent = run.data.tags.get("mlflow.parentRunId", "")
        raise UserInputError(
            f"run {run_id!r} is one cell of the sweep {parent!r}; give the sweep's run id {parent}."
        )
    if run.data.tags.get("vlmstudy.role") != "sweep":
        raise UserInputError(
            f"run {run_id!r} is not a sweep's parent run; "
            "give the run id that 'vlmstudy run' printed."
        )
    if require_finished and run.info.status != "FINISHED":
        protocol_id = run.data.tags.get("vlmstudy.protocol_id", "PROTOCOL")
        raise UserInputError(
            f"run {run_id!r} is {run.info.status.lower()}, not finished, so its predictions are "
            f"incomplete; run 'vlmstudy run' on protocol {protocol_id!r} again to resume it."
        )
    return run


def _finished_cell_runs(client, parent) -> dict[str, object]:
    """Return the newest finished child run of each cell of a sweep, by cell id.

    A cell rerun after a crash has several child runs; only the newest
    finished one counts, so no cell is counted twice.
    """
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{parent.info.run_id}' and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=50000,
    )
    newest: dict[str, object] = {}
    for child in children:
        newest.setdefault(child.data.tags.get("vlmstudy.cell_id", child.info.run_id), child)
    return newest


def load_predictions(
    run_id: str, *, tracking_uri: str | None = None, require_finished: bool = True
) -> pd.DataFrame:
    """Return the predictions table of a sweep: every cell's rows, in a fixed order.

    Only finished child runs count, the newest one per cell, so a cell rerun
    after a crash is never counted twice. Rows are sorted by cell, lesion and
    feature, so the same run always gives the same table.

    Raises
    ------
    UserInputError
        When the run is not a sweep's parent run, or it has not finished and
        ``require_finished`` is true.
    """
    import tempfile
    from pathlib import Path

    client, uri = _client(tracking_uri)
    parent = _parent_run(client, uri, run_id, require_finished=require_finished)
    children = list(_finished_cell_runs(client, parent).values())
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


def _utc(milliseconds: int | None) -> str:
    from datetime import UTC, datetime

    if milliseconds is None:
        return ""
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC).isoformat(timespec="seconds")


def load_prompts(
    run_id: str, *, tracking_uri: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the prompts and the child runs' times of a sweep, in a fixed order.

    Reads ``prompts.jsonl`` of the newest finished child run per cell, as
    :func:`load_predictions` does. A child run without that artifact
    contributes no prompt rows.

    Returns
    -------
    tuple of pandas.DataFrame
        The prompts (columns :data:`PROMPT_COLUMNS`, ``repairs`` joined by
        ``"; "``) and the cell runs (columns :data:`CELL_RUN_COLUMNS`).
    """
    import json
    import tempfile
    from pathlib import Path

    client, uri = _client(tracking_uri)
    parent = _parent_run(client, uri, run_id, require_finished=False)
    newest = _finished_cell_runs(client, parent)
    prompt_rows, run_rows = [], []
    with tempfile.TemporaryDirectory() as folder:
        for cell_id, child in sorted(newest.items()):
            run_rows.append(
                [cell_id, child.info.run_id, _utc(child.info.start_time), _utc(child.info.end_time)]
            )
            names = {item.path for item in client.list_artifacts(child.info.run_id)}
            if "prompts.jsonl" not in names:
                continue
            local = Path(client.download_artifacts(child.info.run_id, "prompts.jsonl", folder))
            for line in local.read_text(encoding="utf-8").splitlines():
                item = json.loads(line)
                prompt_rows.append(
                    [
                        cell_id,
                        str(item.get("lesion_id", "")),
                        str(item.get("prompt", "")),
                        str(item.get("response", "")),
                        "; ".join(str(repair) for repair in item.get("repairs", [])),
                    ]
                )
            local.unlink()
    prompts = pd.DataFrame(prompt_rows, columns=PROMPT_COLUMNS, dtype="string")
    cell_runs = pd.DataFrame(run_rows, columns=CELL_RUN_COLUMNS, dtype="string")
    return prompts.sort_values(["cell_id", "lesion_id"], ignore_index=True), cell_runs


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
    prompts, cell_runs = load_prompts(run_id, tracking_uri=tracking_uri)
    return RunRecords(
        run_id=run_id,
        protocol=protocol,
        registration=registration,
        predictions=load_predictions(run_id, tracking_uri=tracking_uri),
        reads=tables["reads"],
        pathology=tables["pathology"],
        patients=tables["patients"],
        prompts=prompts,
        cell_runs=cell_runs,
    )
