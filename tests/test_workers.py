"""Three worker processes share one sweep through a real PostgreSQL: each cell runs once.

The test needs a PostgreSQL server whose URL is in ``VLMSTUDY_TEST_POSTGRES_URL``
(``.ci/run`` starts one). It creates two fresh databases, one for Optuna's
storage and one for the MLflow tracking store, and drops them afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from analysis.records import load_predictions
from study.local_server import LocalOpenAIServer

from .conftest import REPOSITORY, run_cli

POSTGRES_URL = os.environ.get("VLMSTUDY_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="VLMSTUDY_TEST_POSTGRES_URL is not set (.ci/run sets it)"
)
KEY_ENV = {"VLMSTUDY_TEST_KEY": "sk-test-workers"}


@pytest.fixture()
def databases():
    import psycopg

    suffix = uuid.uuid4().hex[:8]
    names = [f"vlmstudy_optuna_{suffix}", f"vlmstudy_mlflow_{suffix}"]
    connection = psycopg.connect(POSTGRES_URL, autocommit=True)
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"CREATE DATABASE {name}")
    base = POSTGRES_URL.rsplit("/", 1)[0]
    yield [f"{base}/{name}" for name in names]
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    connection.close()


def write_protocol(folder: Path, base_url: str) -> Path:
    mapping = yaml.safe_load((REPOSITORY / "protocols" / "demo.yaml").read_text())
    mapping["id"] = "workers"
    mapping["cohort"] = {"path": "cohort"}
    mapping["features"] = ["aphe", "washout"]
    # The demo's power section names its readers, which this grid replaces.
    mapping.pop("power", None)
    mapping["grid"]["readers"] = [
        {"kind": "openai", "name": "local-vlm", "base_url": base_url, "model": "local-vlm",
         "api_key_env": "VLMSTUDY_TEST_KEY", "max_concurrency": 1},
    ]
    protocol = folder / "workers.yaml"
    protocol.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return protocol


def spawn(arguments: list[str], folder: Path) -> subprocess.Popen:
    environment = {**os.environ, **KEY_ENV}
    environment.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "study.cli", *arguments],
        cwd=folder, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_three_workers_run_each_cell_once(tmp_path, databases):
    optuna_url, mlflow_url = databases
    built = run_cli("data", "phantom", "--out", str(tmp_path / "cohort"), "--patients", "8",
                    "--seed", "2", cwd=tmp_path)
    assert built.returncode == 0, built.stderr

    # Each request takes 0.2 s, so the cells last long enough for all three workers to join.
    with LocalOpenAIServer(latency_s=0.2) as server:
        protocol = write_protocol(tmp_path, server.base_url)
        assert run_cli("register", str(protocol), cwd=tmp_path).returncode == 0

        coordinator = spawn(["run", str(protocol), "--storage", optuna_url,
                             "--tracking-uri", mlflow_url], tmp_path)
        storage = optuna.storages.RDBStorage(optuna_url)
        deadline = time.monotonic() + 120
        while not optuna.get_all_study_summaries(storage, include_best_trial=False):
            assert time.monotonic() < deadline, "the coordinator never created the sweep"
            assert coordinator.poll() is None, coordinator.communicate()
            time.sleep(0.5)
        workers = [
            spawn(["worker", str(protocol), "--storage", optuna_url,
                   "--tracking-uri", mlflow_url], tmp_path)
            for _ in range(2)
        ]
        outputs = [process.communicate(timeout=600) for process in [coordinator, *workers]]
        codes = [process.returncode for process in [coordinator, *workers]]
        assert codes == [0, 0, 0], outputs
        requests = server.request_count

    run_id = outputs[0][0].strip().splitlines()[-1].removeprefix("run_id: ")
    study = optuna.load_study(study_name=run_id, storage=storage)
    complete = [t.params["cell_id"] for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert len(complete) == 6
    assert len(set(complete)) == 6

    client = MlflowClient(mlflow_url)
    children = client.search_runs(
        [client.get_run(run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
    )
    cells = [child.data.tags["vlmstudy.cell_id"] for child in children]
    assert sorted(cells) == sorted(complete)
    assert all(child.info.status == "FINISHED" for child in children)

    table = load_predictions(run_id, tracking_uri=mlflow_url)
    assert not table.duplicated(["cell_id", "lesion_id", "feature"]).any()
    assert requests == table["request_sha256"].nunique()
    ran_by_workers = [int(out.strip().splitlines()[-1].split()[3]) for out, _ in outputs[1:]]
    assert sum(ran_by_workers) <= 6
