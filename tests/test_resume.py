"""A sweep killed with SIGKILL at any point resumes to the same predictions.

Each case kills ``vlmstudy run`` at one crash point, runs it again, and
compares the exported predictions with an uninterrupted run's. The reader is
an OpenAI-compatible server on 127.0.0.1, so the number of requests it
received proves that no stored response was paid for twice.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis.records import load_predictions
from study.local_server import LocalOpenAIServer

from .conftest import REPOSITORY, run_cli

KEY_ENV = {"VLMSTUDY_TEST_KEY": "sk-test-resume"}
COMPARED = ["cell_id", "lesion_id", "feature", "answer", "outcome", "confidence",
            "request_sha256"]
CRASH_POINTS = ["parent_created", "cell_start:2", "cell_read:3", "cell_logged:2",
                "before_finish"]


def write_protocol(folder: Path, base_url: str) -> Path:
    mapping = yaml.safe_load((REPOSITORY / "protocols" / "demo.yaml").read_text())
    mapping["id"] = "resume"
    mapping["cohort"] = {"path": "cohort"}
    mapping["features"] = ["aphe", "washout", "enhancing_capsule"]
    # The demo's power section names its readers, which this grid replaces.
    mapping.pop("power", None)
    mapping["grid"]["readers"] = [
        {"kind": "openai", "name": "local-vlm", "base_url": base_url, "model": "local-vlm",
         "api_key_env": "VLMSTUDY_TEST_KEY", "max_concurrency": 2},
        {"kind": "simulated", "name": "simulated", "seed": 3},
    ]
    mapping["grid"]["strategies"] = ["zero_shot"]
    mapping["analysis"]["bootstrap_resamples"] = 100
    protocol = folder / "resume.yaml"
    protocol.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return protocol


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cohort")
    built = run_cli("data", "phantom", "--out", str(folder / "cohort"), "--patients", "6",
                    "--seed", "4", cwd=folder)
    assert built.returncode == 0, built.stderr
    return folder / "cohort"


def prepared_folder(root: Path, cohort: Path, base_url: str) -> Path:
    root.mkdir()
    shutil.copytree(cohort, root / "cohort")
    protocol = write_protocol(root, base_url)
    registered = run_cli("register", str(protocol), cwd=root)
    assert registered.returncode == 0, registered.stderr
    return protocol


def export(folder: Path, run_id: str) -> pd.DataFrame:
    table = load_predictions(run_id, tracking_uri=f"sqlite:///{folder / 'mlruns.db'}")
    return table.astype({"answer": object}).replace({pd.NA: None})


def last_run_id(stdout: str) -> str:
    return stdout.strip().splitlines()[-1].removeprefix("run_id: ")


def stored_responses(folder: Path) -> int:
    with sqlite3.connect(folder / ".vlmstudy" / "responses.sqlite") as connection:
        return connection.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


@pytest.fixture(scope="module")
def server():
    # One server for every case: its URL is part of each request key, so all runs share it.
    with LocalOpenAIServer() as running:
        yield running


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, cohort, server) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("baseline")
    protocol = prepared_folder(root / "run", cohort, server.base_url)
    finished = run_cli("run", str(protocol), cwd=root / "run", env=KEY_ENV)
    assert finished.returncode == 0, finished.stderr
    table = export(root / "run", last_run_id(finished.stdout))
    assert table["cell_id"].nunique() == 4
    return table


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_run_resumes_identically(tmp_path, cohort, server, baseline, point):
    protocol = prepared_folder(tmp_path / "run", cohort, server.base_url)
    folder = tmp_path / "run"
    requests_before = server.request_count
    killed = run_cli("run", str(protocol), cwd=folder,
                     env={**KEY_ENV, "VLMSTUDY_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    resumed = run_cli("run", str(protocol), cwd=folder, env=KEY_ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed the unfinished sweep" in resumed.stdout
    model_requests = server.request_count - requests_before

    table = export(folder, last_run_id(resumed.stdout))
    assert not table.duplicated(["cell_id", "lesion_id", "feature"]).any()
    pd.testing.assert_frame_equal(table[COMPARED], baseline[COMPARED])

    model_rows = table[table["reader"] == "local-vlm"]
    assert model_requests == model_rows["request_sha256"].nunique()
    assert stored_responses(folder) == table["request_sha256"].nunique()
