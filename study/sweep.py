"""The sweep: every cell of a registered protocol, scheduled by Optuna, logged to MLflow.

``run_protocol`` starts a sweep, or resumes the newest unfinished sweep of the
same protocol and cohort. A run killed at any moment and started again skips
the cells it finished and reruns the others. It reuses every stored response,
so no paid call is repeated and no row is duplicated. With ``workers`` above one,
that many processes on this machine share the cells; ``run_worker`` joins a
sweep from another machine through a shared PostgreSQL storage.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from mlflow.exceptions import MlflowException

from study.cells import SweepContext, run_cell
from study.data.cohort import cohort_sha256, load_cohort
from study.errors import UserInputError
from study.grid import Cell, expand_grid
from study.protocol import cohort_path, load_protocol, protocol_sha256
from study.readers import make_reader
from study.registration import check_registration, deviation_dicts, git_commit
from study.scheduling import (
    create_or_load_study,
    grant_attempts,
    open_storage,
    progress,
    requeue_stale_trials,
    work,
)
from study.store import ResponseStore
from study.tracking import Tracking, reference_table

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
"""Attempts per cell before a sweep gives up on it and ends as failed."""

RETRY_ON = (OSError, TimeoutError, MlflowException)
"""Errors in a cell worth another attempt: file, network and tracking-server trouble."""

CRASH_ENV = "VLMSTUDY_CRASH_AT"
"""Environment variable naming a crash point, for tests that kill a run mid-way."""


def state_dir() -> Path:
    """Return the folder of the response store and schedules.

    It is ``VLMSTUDY_HOME`` when set, else ``.vlmstudy`` in the working folder.
    """
    return Path(os.environ.get("VLMSTUDY_HOME", ".vlmstudy")).resolve()


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL when ``VLMSTUDY_CRASH_AT`` names this point.

    The value is ``name`` or ``name:N`` (crash on the N-th time the point is
    reached). It exists so tests can prove that a run killed at any moment
    resumes correctly; nothing else sets it.
    """
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    reached = _CRASH_COUNTS[name] = _CRASH_COUNTS.get(name, 0) + 1
    if reached >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_CRASH_COUNTS: dict[str, int] = {}


@dataclass(frozen=True)
class CellReport:
    """A finished cell, for progress display: its counts and the sweep's position."""

    cell: Cell
    done: int
    total: int
    calls: int
    cost_usd: float


@dataclass(frozen=True)
class SweepResult:
    """The parent run id, tracking URI and predictions of a finished sweep."""

    run_id: str
    tracking_uri: str
    predictions: pd.DataFrame
    resumed: bool


class _Worker:
    """Everything one process needs to run cells of one sweep."""

    def __init__(self, protocol_file: Path, parent_id: str, tracking_uri: str | None) -> None:
        self.protocol = load_protocol(protocol_file)
        self.cohort = load_cohort(cohort_path(self.protocol, protocol_file))
        readers = {spec.name: make_reader(spec) for spec in self.protocol.grid.readers}
        self.cells = {cell.cell_id: cell for cell in expand_grid(self.protocol)}
        self.tracking = Tracking(tracking_uri)
        self.parent_id = parent_id
        self.experiment_id = self.tracking.experiment_id(self.protocol.id)
        store = ResponseStore(state_dir() / "responses.sqlite")
        sha256 = self.tracking.parent_tags(parent_id)["vlmstudy.protocol_sha256"]
        self.context = SweepContext(self.protocol, sha256, self.cohort, readers, store, parent_id)
        self.reference = reference_table(self.cohort.reads)
        self.last_counts = (0, 0.0)

    def run_cell(self, cell_id: str) -> float:
        """Run one cell and log it, unless a finished child run of that cell exists."""
        cell: Cell = self.cells[cell_id]
        if self.tracking.finished_child(self.experiment_id, self.parent_id, cell_id):
            self.last_counts = (0, 0.0)
            return 1.0
        crash_point("cell_start")
        predictions, records = run_cell(self.context, cell)
        crash_point("cell_read")
        fresh = predictions[~predictions["cached"].astype(bool)]
        self.last_counts = (
            int(fresh["request_sha256"].nunique()),
            float(fresh["cost_usd"].fillna(0.0).sum()),
        )
        prompts = [
            {
                "lesion_id": record.rows[0]["lesion_id"],
                "prompt": record.prompt_text,
                "response": record.response_text,
                "repairs": list(record.repairs),
            }
            for record in records
        ]
        # The first lesion's images are kept as a sample of what the reader was shown.
        sample = records[0].rows[0]["lesion_id"] if records else None
        images = (
            {
                f"{sample}_{sequence}.png": self.context.render(sample, sequence).png
                for sequence in cell.sequences
            }
            if sample is not None
            else {}
        )
        self.tracking.log_cell(
            self.parent_id, self.experiment_id, cell, predictions, self.reference, prompts, images
        )
        crash_point("cell_logged")
        return float((predictions["outcome"] == "valid").mean())


def _journal(protocol_id: str) -> Path:
    return state_dir() / "optuna" / f"{protocol_id}.journal"


def _worker_process(
    protocol_file: str, parent_id: str, tracking_uri: str | None, storage_url: str | None
) -> None:
    worker = _Worker(Path(protocol_file), parent_id, tracking_uri)
    storage = open_storage(storage_url, _journal(worker.protocol.id))
    study = create_or_load_study(storage, parent_id, list(worker.cells))
    work(study, list(worker.cells), worker.run_cell, max_attempts=MAX_ATTEMPTS, retry_on=RETRY_ON)


def run_protocol(
    protocol_file: Path,
    *,
    tracking_uri: str | None = None,
    deviation: str | None = None,
    workers: int = 1,
    storage_url: str | None = None,
    on_cell_done: Callable[[CellReport], None] | None = None,
) -> SweepResult:
    """Run, or resume, every cell of a registered protocol and return the parent run.

    Parameters
    ----------
    protocol_file
        The protocol YAML; it must have been registered.
    tracking_uri
        MLflow tracking URI; defaults to ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db``.
    deviation
        The reason for running a protocol or cohort that changed since registration.
    workers
        Processes on this machine that run cells at the same time.
    storage_url
        A database URL for Optuna's storage, shared with ``vlmstudy worker`` on
        other machines; by default a journal file under the state folder.
    on_cell_done
        Called with a :class:`CellReport` after each cell this process finishes.
    """
    protocol_file = Path(protocol_file)
    protocol = load_protocol(protocol_file)
    cohort_dir = cohort_path(protocol, protocol_file)
    load_cohort(cohort_dir)
    cohort_hash = cohort_sha256(cohort_dir)
    registration, deviations = check_registration(
        protocol_file, cohort_sha256=cohort_hash, deviation=deviation
    )
    for spec in protocol.grid.readers:
        try:
            make_reader(spec)  # checks API keys and settings before any run is created
        except UserInputError as error:
            raise UserInputError(f"{protocol_file}: {error}") from None
    cells = expand_grid(protocol)
    current_sha256 = protocol_sha256(protocol_file)

    tracking = Tracking(tracking_uri)
    parent_id = tracking.find_unfinished_sweep(protocol.id, current_sha256, cohort_hash)
    resumed = parent_id is not None
    if parent_id is None:
        cohort = load_cohort(cohort_dir)
        parent_id = tracking.start_parent(
            protocol_id=protocol.id,
            protocol_file=protocol_file,
            protocol_sha256=current_sha256,
            cohort_sha256=cohort_hash,
            git_commit=git_commit(protocol_file.resolve().parent),
            registration=registration,
            deviations=deviation_dicts(deviations),
            tables={
                "reads": cohort.reads,
                "pathology": cohort.pathology,
                "patients": cohort.patients(),
            },
            n_cells=len(cells),
        )
    else:
        logger.warning("resuming the unfinished sweep %s of protocol %s", parent_id, protocol.id)
    crash_point("parent_created")

    storage = open_storage(storage_url, _journal(protocol.id))
    study = create_or_load_study(storage, parent_id, [cell.cell_id for cell in cells])
    study.set_user_attr("protocol_id", protocol.id)
    study.set_user_attr("protocol_sha256", current_sha256)
    if resumed and storage_url is None:
        requeue_stale_trials(study)
    _requeue_exhausted(study, [cell.cell_id for cell in cells])

    try:
        _run_workers(
            protocol_file, parent_id, tracking_uri, storage_url, workers, study, cells, on_cell_done
        )
    except BaseException:
        tracking.fail_parent(parent_id)
        raise

    state = progress(study, [cell.cell_id for cell in cells], MAX_ATTEMPTS)
    from analysis.records import load_predictions

    predictions = load_predictions(
        parent_id, tracking_uri=tracking.tracking_uri, require_finished=False
    )
    if state.exhausted:
        tracking.fail_parent(parent_id)
        raise RuntimeError(
            f"{len(state.exhausted)} cell(s) failed {MAX_ATTEMPTS} times: "
            f"{', '.join(state.exhausted)}; see the log above, fix the cause, "
            "and run again to resume."
        )
    crash_point("before_finish")
    tracking.finish_parent(parent_id, predictions)
    return SweepResult(parent_id, tracking.tracking_uri, predictions, resumed)


def _requeue_exhausted(study: optuna.Study, cell_ids: list[str]) -> None:
    # A new invocation gives cells that ran out of attempts a fresh set of attempts.
    for cell_id in progress(study, cell_ids, MAX_ATTEMPTS).exhausted:
        grant_attempts(study, cell_id)
        study.enqueue_trial({"cell_id": cell_id})


def _run_workers(
    protocol_file: Path,
    parent_id: str,
    tracking_uri: str | None,
    storage_url: str | None,
    workers: int,
    study: optuna.Study,
    cells: list[Cell],
    on_cell_done: Callable[[CellReport], None] | None,
) -> None:
    context = multiprocessing.get_context("spawn")
    helpers = [
        context.Process(
            target=_worker_process,
            args=(str(protocol_file), parent_id, tracking_uri, storage_url),
            daemon=True,
        )
        for _ in range(max(0, workers - 1))
    ]
    for helper in helpers:
        helper.start()

    worker = _Worker(protocol_file, parent_id, tracking_uri)
    cells_by_id = {cell.cell_id: cell for cell in cells}
    cell_ids = list(cells_by_id)

    def done(cell_id: str) -> None:
        if on_cell_done is not None:
            state = progress(study, cell_ids, MAX_ATTEMPTS)
            calls, cost = worker.last_counts
            on_cell_done(
                CellReport(cells_by_id[cell_id], state.complete + 1, state.total, calls, cost)
            )

    while True:
        work(
            study,
            cell_ids,
            worker.run_cell,
            max_attempts=MAX_ATTEMPTS,
            on_done=done,
            retry_on=RETRY_ON,
        )
        state = progress(study, cell_ids, MAX_ATTEMPTS)
        alive = [helper for helper in helpers if helper.is_alive()]
        if state.running == 0 and state.remaining == 0:
            break
        if not alive and storage_url is None:
            # Every local worker stopped, so the cells still marked running were orphaned.
            requeue_stale_trials(study)
            continue
        time.sleep(1.0)

    for helper in helpers:
        helper.join(timeout=60)


def run_worker(
    protocol_file: Path,
    *,
    storage_url: str,
    run_id: str | None = None,
    tracking_uri: str | None = None,
) -> int:
    """Join a running sweep from this machine and run cells until none is left.

    Returns the number of cells this worker ran.
    """
    protocol = load_protocol(protocol_file)
    storage = open_storage(storage_url, _journal(protocol.id))
    if run_id is None:
        summaries = [
            summary
            for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
            if summary.user_attrs.get("protocol_id") == protocol.id
        ]
        if not summaries:
            raise UserInputError(
                f"{protocol_file}: no sweep of this protocol in the Optuna storage; start one "
                "with 'vlmstudy run PROTOCOL --storage URL' first, then start workers."
            )
        run_id = max(summaries, key=lambda item: item.datetime_start).study_name
    worker = _Worker(Path(protocol_file), run_id, tracking_uri)
    study = create_or_load_study(storage, run_id, list(worker.cells))
    ran: list[str] = []
    work(
        study,
        list(worker.cells),
        worker.run_cell,
        max_attempts=MAX_ATTEMPTS,
        on_done=ran.append,
        retry_on=RETRY_ON,
    )
    return len(ran)
