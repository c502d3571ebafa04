"""``vlmstudy tune``: exploratory runs on the development split, never the evaluation split."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from .conftest import REPOSITORY, run_cli

TUNE = {
    "reader": "quantitative",
    "strategy": "few_shot",
    "sequences": ["t1_pre", "arterial", "portal_venous", "delayed"],
    "n_trials": 3,
    "seed": 1,
    "metric": "accuracy",
    "space": {"few_shot.k": {"low": 1, "high": 3}, "rendering.size": {"choices": [128, 192]}},
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tune-cohort")
    built = run_cli("data", "phantom", "--out", str(folder / "cohort"), "--patients", "10",
                    "--seed", "5", cwd=folder)
    assert built.returncode == 0, built.stderr
    # Move three evaluation patients to the development split.
    manifest_file = folder / "cohort" / "manifest.csv"
    manifest = pd.read_csv(manifest_file, dtype=str, keep_default_na=False)
    patients = sorted(manifest.loc[manifest["split"] == "evaluation", "patient_id"].unique())
    manifest.loc[manifest["patient_id"].isin(patients[:3]), "split"] = "development"
    manifest.to_csv(manifest_file, index=False)
    return folder / "cohort"


def write_protocol(folder: Path, cohort: Path, tune: dict) -> Path:
    shutil.copytree(cohort, folder / "cohort")
    mapping = yaml.safe_load((REPOSITORY / "protocols" / "demo.yaml").read_text())
    mapping["id"] = "tuning"
    mapping["cohort"] = {"path": "cohort"}
    mapping["tune"] = tune
    protocol = folder / "tuning.yaml"
    protocol.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return protocol


def test_tune_rejects_evaluation_split(tmp_path, cohort):
    protocol = write_protocol(tmp_path, cohort, {**TUNE, "split": "evaluation"})
    finished = run_cli("tune", str(protocol), cwd=tmp_path)
    assert finished.returncode == 2
    assert "development split only" in finished.stderr
    assert "Traceback" not in finished.stderr
    assert not (tmp_path / "mlruns.db").exists()


def test_tune_logs_exploratory_trials(tmp_path, cohort):
    protocol = write_protocol(tmp_path, cohort, TUNE)
    finished = run_cli("tune", str(protocol), cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert "trials: 3" in finished.stdout
    run_id = finished.stdout.strip().splitlines()[-1].removeprefix("run_id: ")

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    parent = client.get_run(run_id)
    assert parent.data.tags["vlmstudy.exploratory"] == "true"
    trials = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert len(trials) == 3
    manifest = pd.read_csv(tmp_path / "cohort" / "manifest.csv", dtype=str)
    development = set(manifest.loc[manifest["split"] == "development", "lesion_id"])
    for trial in trials:
        assert trial.data.tags["vlmstudy.exploratory"] == "true"
        assert 0.0 <= trial.data.metrics["accuracy"] <= 1.0
        used = client.download_artifacts(trial.info.run_id, "lesions.txt", str(tmp_path))
        lesions = set(Path(used).read_text().split())
        assert lesions
        assert lesions <= development
