"""The demo and the OpenAI-compatible path, end to end through the real command line.

These tests run ``vlmstudy`` in subprocesses against a real SQLite MLflow store,
a real Optuna journal and, for the ``openai`` reader, a local server on
127.0.0.1 that counts the requests it receives.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from study.local_server import LocalOpenAIServer

from .conftest import REPOSITORY, run_cli

COLUMNS = [
    "protocol_id",
    "protocol_sha256",
    "run_id",
    "cell_id",
    "reader",
    "model_snapshot",
    "strategy",
    "sequences",
    "replicate",
    "patient_id",
    "lesion_id",
    "feature",
    "answer",
    "confidence",
    "outcome",
    "latency_s",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cached",
    "request_sha256",
]


def last_run_id(stdout: str) -> str:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("run_id: ")
    return last.removeprefix("run_id: ")


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    (folder / "protocols").mkdir()
    shutil.copy(REPOSITORY / "protocols" / "demo.yaml", folder / "protocols" / "demo.yaml")
    return folder


@pytest.fixture(scope="module")
def demo_run(demo_folder) -> tuple[Path, str]:
    finished = run_cli("demo", cwd=demo_folder)
    assert finished.returncode == 0, finished.stderr
    return demo_folder, last_run_id(finished.stdout)


def test_demo_writes_store_and_report(demo_run):
    folder, run_id = demo_run
    assert (folder / "mlruns.db").is_file()
    reports = list((folder / "reports").glob(f"demo-{run_id[:8]}/report.html"))
    assert len(reports) == 1
    markdown = reports[0].with_name("report.md").read_text()
    assert "Human baseline" in markdown
    assert "Becker" in markdown
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    for number, title in enumerate(
        [
            "Question, registration and deviations",
            "Preregistered hypotheses",
            "Sample size and power",
            "Flow of cases and calls",
            "Cohort",
            "Human baseline",
            "Agreement and accuracy per feature and cell",
            "Reader versus model",
            "Mixed-effects model",
            "Sensitivity analyses",
            "Cost, tokens, runtime, model snapshots and query dates",
            "Reporting checklists",
            "Appendix: the exact prompts",
        ],
        start=1,
    ):
        assert f"## {number}. {title}" in headings
    registration = json.loads((folder / "protocols" / "demo.registration.json").read_text())
    # The demo runs its power simulation before it registers, so the record carries it.
    assert {row["hypothesis"] for row in registration["power"]["results"]} == {"H1", "H2"}
    assert reports[0].with_name("figures").joinpath("power_curve.png").is_file()
    assert "![" in markdown
    assert "power_curve.png" in markdown


def test_status_counts_cells(demo_run):
    folder, run_id = demo_run
    finished = run_cli("status", "protocols/demo.yaml", cwd=folder)
    assert finished.returncode == 0, finished.stderr
    assert "registered, unchanged" in finished.stdout
    line = next(line for line in finished.stdout.splitlines() if run_id in line)
    assert "cells 12/12" in line


def test_export_has_design_columns(demo_run, tmp_path):
    folder, run_id = demo_run
    out = tmp_path / "predictions.csv"
    finished = run_cli("export", run_id, "--out", str(out), cwd=folder)
    assert finished.returncode == 0, finished.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS
    assert table["cell_id"].nunique() == 12
    assert set(table["outcome"]) <= {"valid", "parse_failure", "refusal", "infra_failure"}
    assert table.loc[table["outcome"] != "valid", "answer"].isna().all()
    lesions = table["lesion_id"].nunique()
    assert lesions >= 16
    assert len(table) == 12 * lesions * 6


def test_second_run_is_all_cached(demo_run, tmp_path):
    folder, first_run = demo_run
    finished = run_cli("run", "protocols/demo.yaml", cwd=folder)
    assert finished.returncode == 0, finished.stderr
    second_run = last_run_id(finished.stdout)
    assert second_run != first_run
    first = pd.read_csv(_export(folder, first_run, tmp_path / "a.csv"))
    second = pd.read_csv(_export(folder, second_run, tmp_path / "b.csv"))
    assert second["cached"].all()
    assert len(second) == len(first)
    assert (
        second["request_sha256"].duplicated().sum()
        == len(second) - second["request_sha256"].nunique()
    )
    columns = ["cell_id", "lesion_id", "feature", "answer", "outcome", "request_sha256"]
    pd.testing.assert_frame_equal(first[columns], second[columns])


def _export(folder: Path, run_id: str, out: Path) -> Path:
    finished = run_cli("export", run_id, "--out", str(out), cwd=folder)
    assert finished.returncode == 0, finished.stderr
    return out


def test_changed_protocol_needs_deviation(demo_run, tmp_path):
    folder, _ = demo_run
    edited = folder / "protocols" / "demo.yaml"
    original = edited.read_text()
    try:
        edited.write_text(original.replace("k: 2", "k: 3"))
        refused = run_cli("run", "protocols/demo.yaml", cwd=folder)
        assert refused.returncode == 2
        assert "--deviation" in refused.stderr
        assert "Traceback" not in refused.stderr

        reason = "three exemplars after a pilot showed two were too few"
        accepted = run_cli("run", "protocols/demo.yaml", "--deviation", reason, cwd=folder)
        assert accepted.returncode == 0, accepted.stderr
        run_id = last_run_id(accepted.stdout)
        reported = run_cli("report", run_id, "--out", str(tmp_path / "report"), cwd=folder)
        assert reported.returncode == 0, reported.stderr
        markdown = (tmp_path / "report" / "report.md").read_text()
        assert reason in markdown
        lines = markdown.splitlines()
        assert any(line.startswith("+") and '"k": 3' in line for line in lines)
        assert any(line.startswith("-") and '"k": 2' in line for line in lines)
    finally:
        edited.write_text(original)


def test_openai_reader_end_to_end(tmp_path):
    folder = tmp_path
    (folder / "protocols").mkdir()
    mapping = yaml.safe_load((REPOSITORY / "protocols" / "demo.yaml").read_text())
    mapping["id"] = "demo-openai"
    with LocalOpenAIServer() as server:
        # The demo's power section names its readers, which this grid replaces.
        mapping.pop("power", None)
        mapping["grid"]["readers"] = [
            {
                "kind": "openai",
                "name": "local-vlm",
                "base_url": server.base_url,
                "model": "local-vlm",
                "api_key_env": "VLMSTUDY_TEST_KEY",
                "max_concurrency": 4,
            }
        ]
        protocol = folder / "protocols" / "demo-openai.yaml"
        protocol.write_text(yaml.safe_dump(mapping, sort_keys=False))
        environment = {"VLMSTUDY_TEST_KEY": "sk-test-not-a-secret"}

        built = run_cli(
            "data",
            "phantom",
            "--out",
            ".vlmstudy/demo-cohort",
            "--patients",
            "16",
            "--seed",
            "7",
            cwd=folder,
        )
        assert built.returncode == 0, built.stderr
        registered = run_cli("register", str(protocol), cwd=folder)
        assert registered.returncode == 0, registered.stderr

        first = run_cli("run", str(protocol), cwd=folder, env=environment)
        assert first.returncode == 0, first.stderr
        calls_after_first = server.request_count
        second = run_cli("run", str(protocol), cwd=folder, env=environment)
        assert second.returncode == 0, second.stderr
        assert server.request_count == calls_after_first

    table = pd.read_csv(_export(folder, last_run_id(first.stdout), tmp_path / "first.csv"))
    calls = table["request_sha256"].nunique()
    assert calls_after_first == calls
    assert (table["outcome"] == "valid").mean() > 0.9
    assert set(table["model_snapshot"].dropna()) == {"local-vlm-2026-12-01"}
    image_parts = [
        part for part in server.requests[0]["messages"][1]["content"] if part["type"] == "image_url"
    ]
    assert image_parts
    assert image_parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    replay = pd.read_csv(_export(folder, last_run_id(second.stdout), tmp_path / "second.csv"))
    assert replay["cached"].all()


def test_unknown_run_id_is_bad_input(tmp_path):
    finished = run_cli("export", "0" * 32, "--out", str(tmp_path / "x.csv"), cwd=tmp_path)
    assert finished.returncode == 2
    assert "not found" in finished.stderr
    assert not (tmp_path / "x.csv").exists()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_ui_shows_child_runs(demo_run):
    folder, run_id = demo_run
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "ui", "--port", str(port)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(1)

        with urllib.request.urlopen(base + "/", timeout=30) as response:
            assert b"<html" in response.read().lower()
        parent = get_json(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
        children = get_json(
            f"{base}/api/2.0/mlflow/runs/search",
            {
                "experiment_ids": [parent["info"]["experiment_id"]],
                "filter": f"tags.mlflow.parentRunId = '{run_id}'",
                "max_results": 100,
            },
        )["runs"]
        assert len(children) == 12
        for child in children:
            params = {item["key"] for item in child["data"]["params"]}
            metrics = {item["key"] for item in child["data"]["metrics"]}
            assert {"cell_id", "reader", "strategy", "sequences", "replicate"} <= params
            assert "accuracy.aphe" in metrics
        child_id = children[0]["info"]["run_id"]
        listing = get_json(f"{base}/api/2.0/mlflow/artifacts/list?run_id={child_id}")
        paths = {item["path"] for item in listing["files"]}
        assert {"predictions.csv", "prompts.jsonl", "responses.jsonl", "images"} <= paths
        url = f"{base}/get-artifact?path=predictions.csv&run_uuid={child_id}"
        with urllib.request.urlopen(url, timeout=30) as response:
            header = response.read().decode().splitlines()[0]
        assert header.split(",") == COLUMNS
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
