"""The sweep: every cell of a registered protocol, scheduled by Optuna, logged to MLflow.

Optuna hands out cells as points of a grid over cell ids from a journal file
storage, so the schedule itself is a record on disk. Each run of a protocol
gets a new MLflow parent run and a new Optuna study named after it; answers
already in the response store are reused, so running a protocol again makes
no new reader calls.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from study.cells import PREDICTION_COLUMNS, SweepContext, run_cell
from study.data.cohort import cohort_sha256, load_cohort
from study.grid import Cell, expand_grid
from study.protocol import cohort_path, load_protocol
from study.readers import make_reader
from study.registration import check_registration, deviation_dicts
from study.store import ResponseStore
from study.tracking import Tracking, reference_table

logger = logging.getLogger(__name__)


def state_dir() -> Path:
    """Return the folder of the response store and schedules.

    It is ``VLMSTUDY_HOME`` when set, else ``.vlmstudy`` in the working folder.
    """
    return Path(os.environ.get("VLMSTUDY_HOME", ".vlmstudy")).resolve()


@dataclass(frozen=True)
class SweepResult:
    """The parent run id, tracking URI and predictions of a finished sweep."""

    run_id: str
    tracking_uri: str
    predictions: pd.DataFrame


def run_protocol(
    protocol_file: Path,
    *,
    tracking_uri: str | None = None,
    deviation: str | None = None,
    on_cell_done=None,
) -> SweepResult:
    """Run every cell of a registered protocol and return the parent run.

    Parameters
    ----------
    protocol_file
        The protocol YAML; it must have been registered.
    tracking_uri
        MLflow tracking URI; defaults to ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db``.
    deviation
        The reason for running a protocol or cohort that changed since registration.
    on_cell_done
        Called with ``(cell, done, total)`` after each cell, for progress display.
    """
    protocol_file = Path(protocol_file)
    protocol = load_protocol(protocol_file)
    cohort_dir = cohort_path(protocol, protocol_file)
    cohort = load_cohort(cohort_dir)
    registration, deviations = check_registration(
        protocol_file, cohort_sha256=cohort_sha256(cohort_dir), deviation=deviation
    )
    readers = {spec.name: make_reader(spec) for spec in protocol.grid.readers}
    cells = expand_grid(protocol)
    cells_by_id = {cell.cell_id: cell for cell in cells}

    home = state_dir()
    store = ResponseStore(home / "responses.sqlite")
    tracking = Tracking(tracking_uri)
    patients = cohort.patients()
    parent_id = tracking.start_parent(
        protocol_id=protocol.id,
        protocol_file=protocol_file,
        registration=registration,
        deviations=deviation_dicts(deviations),
        tables={"reads": cohort.reads, "pathology": cohort.pathology, "patients": patients},
        n_cells=len(cells),
    )
    experiment_id = tracking.experiment_id(protocol.id)
    context = SweepContext(
        protocol, registration["protocol_sha256"], cohort, readers, store, parent_id
    )
    reference = reference_table(cohort.reads)
    tables: list[pd.DataFrame] = []

    def objective(trial: optuna.Trial) -> float:
        cell: Cell = cells_by_id[trial.suggest_categorical("cell_id", list(cells_by_id))]
        predictions, records = run_cell(context, cell)
        prompts = [
            {
                "lesion_id": record.rows[0]["lesion_id"],
                "prompt": record.prompt_text,
                "response": record.response_text,
                "repairs": list(record.repairs),
            }
            for record in records
        ]
        child_id = tracking.log_cell(
            parent_id, experiment_id, cell, predictions, reference, prompts
        )
        trial.set_user_attr("mlflow_run_id", child_id)
        tables.append(predictions)
        if on_cell_done is not None:
            on_cell_done(cell, len(tables), len(cells))
        return float((predictions["outcome"] == "valid").mean())

    journal = home / "optuna" / f"{protocol.id}.journal"
    journal.parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=parent_id,
        storage=JournalStorage(JournalFileBackend(str(journal))),
        sampler=optuna.samplers.GridSampler({"cell_id": list(cells_by_id)}, seed=0),
        direction="maximize",
    )
    study.optimize(objective, n_trials=len(cells))

    combined = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    )
    tracking.finish_parent(parent_id, combined)
    return SweepResult(parent_id, tracking.tracking_uri, combined)
