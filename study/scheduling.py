"""Optuna as the scheduler of a sweep's cells, on one machine or many.

Each sweep is one Optuna study, named after its MLflow parent run, whose
search space is a grid over cell ids. A trial is one attempt at one cell.
Optuna's :class:`~optuna.samplers.GridSampler` gives the first trials distinct
grid points by trial number, which the storage hands out atomically, so
workers sharing a storage do not start the same cell. Optuna counts a failed
grid point as visited, so a failed cell is requeued explicitly with
``enqueue_trial`` until it has failed ``max_attempts`` times.

Storage is a journal file on one machine (``JournalFileBackend``, safe for
several processes) or a PostgreSQL database for workers on many machines.
With PostgreSQL, workers send heartbeats. When a worker stops sending them,
the next worker that checks fails its trial and requeues the cell.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from study.errors import UserInputError

logger = logging.getLogger(__name__)

CELL_PARAM = "cell_id"

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError)
"""Errors that may pass on a second attempt (a locked database, a dropped connection).

Any other error in a cell is a bug or bad data: it fails the sweep at once
instead of being retried. Failed reader calls never reach here; they are
recorded as ``infra_failure`` rows inside the cell.
"""
HEARTBEAT_INTERVAL_S = 10
HEARTBEAT_GRACE_S = 60


class CellFailedError(Exception):
    """A cell raised while running; its trial is failed and the cell requeued."""


@dataclass(frozen=True)
class CellProgress:
    """Counts of a sweep's cells by state: complete, running, remaining or out of attempts."""

    complete: int
    running: int
    remaining: int
    exhausted: tuple[str, ...]
    total: int


def open_storage(storage_url: str | None, journal_path: Path) -> optuna.storages.BaseStorage:
    """Return the Optuna storage: PostgreSQL (or another database URL), else a journal file."""
    if storage_url:
        if not storage_url.startswith(("postgresql", "mysql", "sqlite")):
            raise UserInputError(
                f"--storage {storage_url!r}: give a database URL such as "
                "postgresql://user:password@host:5432/database."
            )
        try:
            return RDBStorage(
                storage_url,
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=HEARTBEAT_GRACE_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
        except Exception as error:  # SQLAlchemy raises many kinds for a bad URL or server.
            raise UserInputError(
                f"--storage: cannot open the Optuna storage ({type(error).__name__}: {error}); "
                "check the URL, that the server runs, and the user's rights."
            ) from None
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(journal_path)))


def create_or_load_study(
    storage: optuna.storages.BaseStorage, name: str, cell_ids: list[str]
) -> optuna.Study:
    """Return the study of a sweep, creating it with a grid over ``cell_ids`` if needed."""
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=optuna.samplers.GridSampler({CELL_PARAM: sorted(cell_ids)}, seed=0),
        direction="maximize",
        load_if_exists=True,
    )


def _trials_by_cell(study: optuna.Study) -> dict[str, list[optuna.trial.FrozenTrial]]:
    by_cell: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        cell_id = trial.params.get(CELL_PARAM) or trial.system_attrs.get("fixed_params", {}).get(
            CELL_PARAM
        )
        if cell_id is not None:
            by_cell.setdefault(cell_id, []).append(trial)
    return by_cell


def _failures(study: optuna.Study, trials: list[optuna.trial.FrozenTrial], cell_id: str) -> int:
    """Count a cell's failed trials since its attempts were last renewed."""
    failed = sum(trial.state == TrialState.FAIL for trial in trials)
    return failed - int(study.user_attrs.get(f"failures_forgiven:{cell_id}", 0))


def grant_attempts(study: optuna.Study, cell_id: str) -> None:
    """Give a cell that ran out of attempts a fresh set, keeping its failed trials on record."""
    failed = sum(
        trial.state == TrialState.FAIL for trial in _trials_by_cell(study).get(cell_id, [])
    )
    study.set_user_attr(f"failures_forgiven:{cell_id}", failed)


def progress(study: optuna.Study, cell_ids: list[str], max_attempts: int) -> CellProgress:
    """Return the progress of a sweep's cells from its trials."""
    by_cell = _trials_by_cell(study)
    complete = running = 0
    exhausted = []
    for cell_id in cell_ids:
        states = [trial.state for trial in by_cell.get(cell_id, [])]
        if TrialState.COMPLETE in states:
            complete += 1
        elif TrialState.RUNNING in states:
            running += 1
        elif _failures(study, by_cell.get(cell_id, []), cell_id) >= max_attempts:
            exhausted.append(cell_id)
    remaining = len(cell_ids) - complete - running - len(exhausted)
    return CellProgress(complete, running, remaining, tuple(exhausted), len(cell_ids))


def requeue_stale_trials(study: optuna.Study) -> list[str]:
    """Fail the RUNNING trials left by a killed run and requeue their cells.

    Call this only when no other worker is running the sweep, as a resumed
    single-machine run does before it starts.
    """
    requeued = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        cell_id = trial.params.get(CELL_PARAM)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if cell_id is not None:
            study.enqueue_trial({CELL_PARAM: cell_id}, skip_if_exists=True)
            requeued.append(cell_id)
    return requeued


def work(
    study: optuna.Study,
    cell_ids: list[str],
    run_cell: Callable[[str], float],
    *,
    max_attempts: int = 3,
    on_done: Callable[[str], None] | None = None,
    retry_on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
) -> None:
    """Run cells handed out by the study until none is left unclaimed.

    ``run_cell(cell_id)`` runs one cell and returns its objective value (the
    share of valid answers). An error of a ``retry_on`` type fails the trial
    and requeues the cell; any other error propagates. A cell another trial already completed or is
    running is skipped, so each cell's work is done once even when a grid point
    is handed out twice.
    """
    known = set(cell_ids)

    def objective(trial: optuna.Trial) -> float:
        cell_id = trial.suggest_categorical(CELL_PARAM, sorted(known))
        others = [
            other
            for other in _trials_by_cell(study).get(cell_id, [])
            if other.number != trial.number
        ]
        for other in others:
            if other.state in (TrialState.COMPLETE, TrialState.RUNNING):
                raise optuna.TrialPruned(f"cell {cell_id} is taken by trial {other.number}")
        failures = _failures(study, others, cell_id)
        if failures >= max_attempts:
            raise optuna.TrialPruned(f"cell {cell_id} failed {failures} times")
        try:
            value = run_cell(cell_id)
        except retry_on as error:
            if failures + 1 < max_attempts:
                study.enqueue_trial({CELL_PARAM: cell_id})
            logger.warning("cell %s failed (attempt %d): %s", cell_id, failures + 1, error)
            raise CellFailedError(f"cell {cell_id}: {type(error).__name__}: {error}") from error
        if on_done is not None:
            on_done(cell_id)
        return value

    while True:
        state = progress(study, cell_ids, max_attempts)
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if state.remaining == 0 and not waiting:
            return
        study.optimize(objective, n_trials=1, catch=(CellFailedError,))
