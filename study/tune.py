"""Exploratory tuning on the development split: Optuna's TPE over declared settings.

``vlmstudy tune PROTOCOL`` varies the settings the protocol's ``tune.space``
declares (few-shot k, image size, display window) for one reader, strategy
and sequence combination, scores each trial against the radiologists'
majority read on the ``development`` split, and logs every trial to MLflow
as an exploratory run. It never reads an evaluation lesion: the protocol
schema accepts no other split, and the lesions are checked again here.
Tuning is not part of the preregistered analysis; a setting chosen by it
enters the study only through a new or amended protocol.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from mlflow.entities import Metric, Param

from analysis.reference import majority_reference, scored_answers
from study.cells import PREDICTION_COLUMNS, SweepContext, read_lesions
from study.data.cohort import load_cohort
from study.errors import UserInputError
from study.grid import Cell, cell_id
from study.protocol import Protocol, TuneSpec, cohort_path, load_protocol, protocol_sha256
from study.readers import make_reader
from study.store import ResponseStore
from study.sweep import state_dir
from study.tracking import Tracking

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneResult:
    """The best trial of a tuning study and where its runs were logged."""

    run_id: str
    best_value: float
    best_params: dict[str, Any]
    n_trials: int


def _suggest(trial: optuna.Trial, spec: TuneSpec) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, bounds in sorted(spec.space.items()):
        if bounds.choices is not None:
            values[name] = trial.suggest_categorical(name, bounds.choices)
        elif float(bounds.low).is_integer() and float(bounds.high).is_integer():
            values[name] = trial.suggest_int(name, int(bounds.low), int(bounds.high))
        else:
            values[name] = trial.suggest_float(name, float(bounds.low), float(bounds.high))
    return values


def apply_settings(protocol: Protocol, values: dict[str, Any]) -> Protocol:
    """Return a copy of the protocol with tunable settings replaced.

    Raises
    ------
    UserInputError
        When the values give an invalid setting, such as a window whose low
        percentile is not below its high one.
    """
    few_shot = protocol.few_shot.model_dump()
    rendering = protocol.rendering.model_dump()
    if "few_shot.k" in values:
        few_shot["k"] = int(values["few_shot.k"])
    if "rendering.size" in values:
        rendering["size"] = int(values["rendering.size"])
    low, high = rendering["window"]
    rendering["window"] = (
        float(values.get("rendering.window_low", low)),
        float(values.get("rendering.window_high", high)),
    )
    mapping = protocol.model_dump(mode="json")
    mapping.update(few_shot=few_shot, rendering=rendering)
    try:
        return Protocol.model_validate(mapping)
    except ValueError as error:
        raise UserInputError(f"tune.space gives an invalid setting: {error}") from None


def score(predictions: pd.DataFrame, reads: pd.DataFrame, metric: str, protocol: Protocol) -> float:
    """Return the mean over features of accuracy or Cohen's kappa against the majority read."""
    from sklearn.metrics import cohen_kappa_score

    from study.lirads import FEATURES

    scored = predictions.assign(
        scored=scored_answers(
            predictions,
            indeterminate_as=protocol.analysis.indeterminate_as,
            failures_as=protocol.analysis.failures_as,
        )
    ).dropna(subset=["scored"])
    merged = scored.merge(
        majority_reference(reads), on=["lesion_id", "feature"], suffixes=("", "_reference")
    )
    values = []
    for feature, group in merged.groupby("feature"):
        if metric == "accuracy":
            values.append(float((group["scored"] == group["answer_reference"]).mean()))
        else:
            labels = [*FEATURES[str(feature)].categories, "no_answer"]
            kappa = cohen_kappa_score(group["answer_reference"], group["scored"], labels=labels)
            if not math.isnan(kappa):
                values.append(float(kappa))
    return float(sum(values) / len(values)) if values else float("nan")


def tune_protocol(
    protocol_file: Path, *, tracking_uri: str | None = None, n_trials: int | None = None
) -> TuneResult:
    """Run the protocol's exploratory tuning study and return its best trial."""
    protocol_file = Path(protocol_file)
    protocol = load_protocol(protocol_file)
    spec = protocol.tune
    if spec is None:
        raise UserInputError(
            f"{protocol_file}: the protocol has no 'tune' section; add one naming the reader, "
            "strategy, sequences and the settings to vary (see protocols/template.yaml)."
        )
    readers = {reader.name: reader for reader in protocol.grid.readers}
    if spec.reader not in readers:
        raise UserInputError(
            f"{protocol_file}: tune.reader {spec.reader!r} is not a reader of grid.readers "
            f"({', '.join(readers)}); name one of them."
        )
    cohort = load_cohort(cohort_path(protocol, protocol_file))
    lesions = cohort.split("development")
    if not lesions:
        raise UserInputError(
            f"{protocol_file}: the cohort has no lesion in the development split, and tuning "
            "never uses the evaluation split; mark some patients 'development' in manifest.csv."
        )
    evaluation = {lesion.patient_id for lesion in cohort.split("evaluation")}
    if any(lesion.patient_id in evaluation for lesion in lesions):
        raise UserInputError(f"{protocol_file}: a development patient is also in evaluation.")

    sequences = tuple(spec.sequences)
    reader_spec = readers[spec.reader]
    reader = make_reader(reader_spec)
    store = ResponseStore(state_dir() / "responses.sqlite")
    tracking = Tracking(tracking_uri)
    experiment_id = tracking.experiment_id(f"{protocol.id}-tune")
    parent = tracking.client.create_run(
        experiment_id,
        run_name=f"{protocol.id} tune ({spec.reader}, {spec.strategy})",
        tags={
            "vlmstudy.role": "tune",
            "vlmstudy.exploratory": "true",
            "vlmstudy.protocol_id": protocol.id,
            "vlmstudy.protocol_sha256": protocol_sha256(protocol_file),
            "vlmstudy.split": "development",
        },
    )
    parent_id = parent.info.run_id

    def objective(trial: optuna.Trial) -> float:
        values = _suggest(trial, spec)
        tuned = apply_settings(protocol, values)
        context = SweepContext(
            tuned, "exploratory", cohort, {spec.reader: reader}, store, parent_id
        )
        identifier = cell_id(reader_spec, spec.strategy, sequences, 0)
        cell = Cell(identifier, reader_spec, spec.strategy, sequences, 0)
        records = read_lesions(context, cell, lesions)
        rows = [row for record in records for row in record.rows]
        predictions = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
        value = score(predictions, cohort.reads, spec.metric, tuned)
        child = tracking.client.create_run(
            experiment_id,
            run_name=f"trial {trial.number}",
            tags={
                "mlflow.parentRunId": parent_id,
                "vlmstudy.role": "tune-trial",
                "vlmstudy.exploratory": "true",
            },
        )
        now = int(time.time() * 1000)
        metrics = [] if math.isnan(value) else [Metric(spec.metric, value, now, 0)]
        tracking.client.log_batch(
            child.info.run_id,
            params=[Param(name, str(setting)) for name, setting in values.items()],
            metrics=metrics,
        )
        tracking.client.log_text(
            child.info.run_id,
            "\n".join(lesion.lesion_id for lesion in lesions) + "\n",
            "lesions.txt",
        )
        tracking.client.set_terminated(child.info.run_id, "FINISHED")
        return value

    journal = state_dir() / "optuna" / f"{protocol.id}-tune.journal"
    journal.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=parent_id,
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))
        ),
        sampler=optuna.samplers.TPESampler(seed=spec.seed),
        direction="maximize",
    )
    try:
        study.optimize(objective, n_trials=n_trials or spec.n_trials)
    except BaseException:
        tracking.client.set_terminated(parent_id, "FAILED")
        raise
    best = study.best_trial
    tracking.client.log_batch(
        parent_id,
        params=[Param(f"best.{name}", str(value)) for name, value in best.params.items()],
        metrics=[Metric(f"best_{spec.metric}", float(best.value), int(time.time() * 1000), 0)],
    )
    tracking.client.set_terminated(parent_id, "FINISHED")
    return TuneResult(parent_id, float(best.value), dict(best.params), len(study.trials))
