"""The state of a protocol's study, read from its registration record and the MLflow store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from study.grid import expand_grid
from study.protocol import load_protocol, protocol_sha256
from study.registration import registration_path
from study.tracking import resolve_tracking_uri


@dataclass(frozen=True)
class SweepStatus:
    """One sweep of a protocol: its parent run and how many cells it has logged."""

    run_id: str
    status: str
    started_at: int
    cells_done: int
    cells_total: int
    protocol_sha256: str


@dataclass(frozen=True)
class StudyStatus:
    """A protocol's registration state and its sweeps, newest first."""

    protocol_id: str
    registered: bool
    changed_since_registration: bool
    sweeps: list[SweepStatus]


def study_status(protocol_file: Path, *, tracking_uri: str | None = None) -> StudyStatus:
    """Return the registration state and every sweep of a protocol in the tracking store."""
    protocol_file = Path(protocol_file)
    protocol = load_protocol(protocol_file)
    record_file = registration_path(protocol_file)
    registered = record_file.is_file()
    changed = False
    if registered:
        record = json.loads(record_file.read_text(encoding="utf-8"))
        changed = record["protocol_sha256"] != protocol_sha256(protocol_file)

    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    experiment = client.get_experiment_by_name(f"vlmstudy-{protocol.id}")
    sweeps: list[SweepStatus] = []
    if experiment is not None:
        parents = client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.`vlmstudy.role` = 'sweep'",
            order_by=["attributes.start_time DESC"],
            max_results=1000,
        )
        for parent in parents:
            children = client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                max_results=50000,
            )
            total = int(parent.data.params.get("n_cells", len(expand_grid(protocol))))
            sweeps.append(
                SweepStatus(
                    run_id=parent.info.run_id,
                    status=parent.info.status,
                    started_at=parent.info.start_time,
                    cells_done=sum(child.info.status == "FINISHED" for child in children),
                    cells_total=total,
                    protocol_sha256=parent.data.tags.get("vlmstudy.protocol_sha256", ""),
                )
            )
    return StudyStatus(protocol.id, registered, changed, sweeps)
