"""MLflow runs the project creates itself: one parent run per sweep, one child per cell.

The parent run carries the protocol, its registration record, any deviations
and the cohort's reads, pathology and patient tables as artifacts, so the
analysis can work from the log alone. Each child run carries the cell's
params, per-feature metrics and its predictions, prompts and raw responses.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from analysis.reference import majority_reference, scored_answers
from study.grid import Cell
from study.lirads import FEATURES

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
PARENT_RUN_ID_TAG = "mlflow.parentRunId"
_INHERITED_TAGS = (
    "vlmstudy.protocol_id",
    "vlmstudy.protocol_sha256",
    "vlmstudy.cohort_sha256",
    "vlmstudy.git_commit",
)


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """Return the tracking URI: the option, else ``MLFLOW_TRACKING_URI``, else local SQLite."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _artifact_location(tracking_uri: str) -> str | None:
    # A local SQLite store keeps artifacts beside the database file, under mlartifacts/.
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        return (database.resolve().parent / "mlartifacts").as_uri()
    if tracking_uri.startswith("file:"):
        return (Path.cwd() / "mlartifacts").resolve().as_uri()
    return None


class Tracking:
    """Parent and child runs in one MLflow experiment per protocol."""

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        self.client = MlflowClient(self.tracking_uri)

    def experiment_id(self, protocol_id: str) -> str:
        """Return the experiment of a protocol, creating it on first use."""
        name = f"vlmstudy-{protocol_id}"
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(
            name, artifact_location=_artifact_location(self.tracking_uri)
        )

    def log_registration(self, record: dict[str, Any]) -> str:
        """Log a registration record as a finished run of the protocol's experiment.

        Registering an unchanged protocol again logs nothing new: the run of
        the same protocol hash and registration time is reused.
        """
        experiment_id = self.experiment_id(record["protocol_id"])
        existing = self.client.search_runs(
            [experiment_id],
            filter_string=(
                "tags.`vlmstudy.role` = 'registration' "
                f"and tags.`vlmstudy.protocol_sha256` = '{record['protocol_sha256']}' "
                f"and tags.`vlmstudy.registered_at` = '{record['registered_at']}'"
            ),
            max_results=1,
        )
        if existing:
            return existing[0].info.run_id
        tags = {
            "vlmstudy.role": "registration",
            "vlmstudy.protocol_id": record["protocol_id"],
            "vlmstudy.protocol_sha256": record["protocol_sha256"],
            "vlmstudy.cohort_sha256": record["cohort_sha256"],
            "vlmstudy.registered_at": record["registered_at"],
            "vlmstudy.git_commit": record["git_commit"],
        }
        run = self.client.create_run(
            experiment_id, run_name=f"{record['protocol_id']} registration", tags=tags
        )
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "registration.json"
            path.write_text(json.dumps(record, indent=2))
            self.client.log_artifact(run.info.run_id, str(path))
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    def start_parent(
        self,
        *,
        protocol_id: str,
        protocol_file: Path,
        protocol_sha256: str,
        cohort_sha256: str,
        git_commit: str,
        registration: dict[str, Any],
        deviations: list[dict[str, Any]],
        tables: dict[str, pd.DataFrame],
        n_cells: int,
    ) -> str:
        """Create the parent run and log what the analysis needs; return its id."""
        experiment_id = self.experiment_id(protocol_id)
        tags = {
            "vlmstudy.role": "sweep",
            "vlmstudy.protocol_id": protocol_id,
            "vlmstudy.protocol_sha256": protocol_sha256,
            "vlmstudy.registered_protocol_sha256": registration["protocol_sha256"],
            "vlmstudy.cohort_sha256": cohort_sha256,
            "vlmstudy.git_commit": git_commit,
            "vlmstudy.registered_git_commit": registration["git_commit"],
            "vlmstudy.deviations": str(len(deviations)),
        }
        run = self.client.create_run(experiment_id, run_name=f"{protocol_id} sweep", tags=tags)
        run_id = run.info.run_id
        self.client.log_batch(
            run_id,
            params=[
                Param("protocol_id", protocol_id),
                Param("protocol_sha256", protocol_sha256),
                Param("cohort_sha256", cohort_sha256),
                Param("n_cells", str(n_cells)),
            ],
        )
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            (root / "protocol.yaml").write_bytes(Path(protocol_file).read_bytes())
            (root / "registration.json").write_text(json.dumps(registration, indent=2))
            (root / "deviations.json").write_text(json.dumps(deviations, indent=2))
            cohort_folder = root / "cohort"
            cohort_folder.mkdir()
            for name, table in tables.items():
                table.to_csv(cohort_folder / f"{name}.csv", index=False)
            self.client.log_artifacts(run_id, folder)
        return run_id

    def log_cell(
        self,
        parent_run_id: str,
        experiment_id: str,
        cell: Cell,
        predictions: pd.DataFrame,
        reference: pd.DataFrame,
        prompts: list[dict[str, Any]],
        images: dict[str, bytes] | None = None,
    ) -> str:
        """Create the child run of one cell with its params, metrics and artifacts.

        Artifacts: ``predictions.csv``; ``prompts.jsonl`` (the exact prompt, raw
        response and parser repairs per lesion); ``responses.jsonl`` (the raw
        responses alone); and ``images/``, a sample of the rendered images sent.
        """
        tags = {
            PARENT_RUN_ID_TAG: parent_run_id,
            "vlmstudy.role": "cell",
            "vlmstudy.cell_id": cell.cell_id,
            **{
                key: value
                for key, value in self.parent_tags(parent_run_id).items()
                if key in _INHERITED_TAGS
            },
        }
        name = f"{cell.reader.name} | {cell.strategy} | {cell.sequences_label} | r{cell.replicate}"
        child = self.client.create_run(experiment_id, run_name=name, tags=tags)
        child_id = child.info.run_id
        params = [Param(key, str(value)) for key, value in cell.params().items()]
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, value, now, 0)
            for key, value in cell_metrics(predictions, reference).items()
        ]
        self.client.log_batch(
            child_id, metrics=metrics, params=params, tags=[RunTag("vlmstudy.role", "cell")]
        )
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            predictions.to_csv(root / "predictions.csv", index=False)
            with open(root / "prompts.jsonl", "w", encoding="utf-8") as handle:
                for item in prompts:
                    handle.write(json.dumps(item, sort_keys=True) + "\n")
            with open(root / "responses.jsonl", "w", encoding="utf-8") as handle:
                for item in prompts:
                    raw = {"lesion_id": item["lesion_id"], "response": item["response"]}
                    handle.write(json.dumps(raw, sort_keys=True) + "\n")
            for name, png in (images or {}).items():
                (root / "images").mkdir(exist_ok=True)
                (root / "images" / name).write_bytes(png)
            self.client.log_artifacts(child_id, folder)
        self.client.set_terminated(child_id, "FINISHED")
        return child_id

    def parent_tags(self, run_id: str) -> dict[str, str]:
        """Return the tags of a parent run (cached: they do not change during a sweep)."""
        cache = self.__dict__.setdefault("_parent_tags", {})
        if run_id not in cache:
            cache[run_id] = dict(self.client.get_run(run_id).data.tags)
        return cache[run_id]

    def find_unfinished_sweep(
        self, protocol_id: str, protocol_sha256: str, cohort_sha256: str
    ) -> str | None:
        """Return the newest parent run of this protocol and cohort that did not finish."""
        experiment = self.client.get_experiment_by_name(f"vlmstudy-{protocol_id}")
        if experiment is None:
            return None
        runs = self.client.search_runs(
            [experiment.experiment_id],
            filter_string=(
                "tags.`vlmstudy.role` = 'sweep' and attributes.status != 'FINISHED' "
                f"and tags.`vlmstudy.protocol_sha256` = '{protocol_sha256}' "
                f"and tags.`vlmstudy.cohort_sha256` = '{cohort_sha256}'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def finished_child(self, experiment_id: str, parent_run_id: str, cell_id: str) -> str | None:
        """Return the finished child run of a cell, marking unfinished ones as killed."""
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=(
                f"tags.mlflow.parentRunId = '{parent_run_id}' "
                f"and tags.`vlmstudy.cell_id` = '{cell_id}'"
            ),
            order_by=["attributes.start_time DESC"],
        )
        finished = None
        for run in runs:
            if run.info.status == "FINISHED" and finished is None:
                finished = run.info.run_id
            elif run.info.status == "RUNNING":
                # A worker was killed while logging this child; its artifacts are incomplete.
                self.client.set_terminated(run.info.run_id, "KILLED")
        return finished

    def fail_parent(self, run_id: str) -> None:
        """Mark a parent run as failed, so the next run of the protocol resumes it."""
        self.client.set_terminated(run_id, "FAILED")

    def finish_parent(self, run_id: str, predictions: pd.DataFrame) -> None:
        """Log the sweep's totals and close the parent run."""
        now = int(time.time() * 1000)
        outcomes = predictions["outcome"].value_counts()
        metrics = [
            Metric("rows", float(len(predictions)), now, 0),
            Metric(
                "cached_fraction",
                float(predictions["cached"].mean()) if len(predictions) else 0.0,
                now,
                0,
            ),
        ]
        for outcome, count in outcomes.items():
            metrics.append(Metric(f"outcome_{outcome}", float(count), now, 0))
        self.client.log_batch(run_id, metrics=metrics)
        self.client.set_terminated(run_id, "FINISHED")


def cell_metrics(predictions: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
    """Return per-feature accuracy and Cohen's kappa against the majority read, and call rates.

    These are quick monitoring figures for the MLflow UI; the report computes
    the registered analysis with confidence intervals.
    """
    from sklearn.metrics import cohen_kappa_score

    metrics: dict[str, float] = {}
    table = predictions.assign(scored=scored_answers(predictions))
    merged = table.merge(reference, on=["lesion_id", "feature"], suffixes=("", "_reference"))
    for feature, group in merged.groupby("feature"):
        group = group.dropna(subset=["scored"])
        if group.empty:
            continue
        correct = group["scored"] == group["answer_reference"]
        metrics[f"accuracy.{feature}"] = float(correct.mean())
        labels = [*FEATURES[str(feature)].categories, "no_answer"]
        if group["scored"].nunique() > 1 or group["answer_reference"].nunique() > 1:
            kappa = cohen_kappa_score(group["answer_reference"], group["scored"], labels=labels)
            if kappa == kappa:
                metrics[f"kappa.{feature}"] = float(kappa)
    calls = predictions.drop_duplicates("request_sha256")
    for outcome in ("valid", "parse_failure", "refusal", "infra_failure"):
        metrics[f"rate.{outcome}"] = float((predictions["outcome"] == outcome).mean())
    metrics["calls"] = float(len(calls))
    metrics["cached_calls"] = float(calls["cached"].sum())
    metrics["input_tokens"] = float(predictions["input_tokens"].sum())
    metrics["output_tokens"] = float(predictions["output_tokens"].sum())
    metrics["latency_s_mean"] = (
        float(calls["latency_s"].astype(float).mean()) if len(calls) else 0.0
    )
    return metrics


def reference_table(reads: pd.DataFrame) -> pd.DataFrame:
    """Return the majority read renamed for merging with predictions."""
    return majority_reference(reads)
