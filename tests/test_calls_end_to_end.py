"""Model calls end to end through ``vlmstudy``: faults, a planted key, consent, dry run, budget.

Each test runs the real command line in subprocesses against a local
OpenAI-compatible server on 127.0.0.1 that injects faults and counts every
request it receives, and then reads the exported predictions table, the
response store and the MLflow store.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from study.local_server import LocalOpenAIServer

from .conftest import REPOSITORY, run_cli

PLANTED_KEY = "sk-vlmstudy-PLANTED-7f3a9c1e5b2d4086"


def last_run_id(stdout: str) -> str:
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("run_id: ")
    return last.removeprefix("run_id: ")


def write_protocol(
    folder: Path, reader: dict, strategies=("zero_shot", "chain_of_thought"), **overrides
) -> Path:
    mapping = yaml.safe_load((REPOSITORY / "protocols" / "demo.yaml").read_text())
    mapping["id"] = "calls"
    # The demo's power section names its readers, which this grid replaces.
    mapping.pop("power", None)
    mapping["grid"]["readers"] = [reader]
    mapping["grid"]["strategies"] = list(strategies)
    mapping["grid"]["sequences"] = mapping["grid"]["sequences"][:1]
    mapping.update(overrides)
    (folder / "protocols").mkdir(exist_ok=True)
    protocol = folder / "protocols" / "calls.yaml"
    protocol.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return protocol


def openai_reader(server: LocalOpenAIServer, **fields) -> dict:
    return {
        "kind": "openai",
        "name": "local-vlm",
        "base_url": server.base_url,
        "model": "local-vlm",
        "api_key_env": "VLMSTUDY_TEST_KEY",
        **fields,
    }


@pytest.fixture(scope="module")
def cohort_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calls-cohort")
    built = run_cli(
        "data", "phantom", "--out", "cohort", "--patients", "16", "--seed", "7", cwd=folder
    )
    assert built.returncode == 0, built.stderr
    return folder / "cohort"


def study_folder(tmp_path: Path, cohort_folder: Path) -> Path:
    (tmp_path / ".vlmstudy").mkdir()
    (tmp_path / ".vlmstudy" / "demo-cohort").symlink_to(cohort_folder)
    return tmp_path


def store_rows(folder: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(folder / ".vlmstudy" / "responses.sqlite") as connection:
        return connection.execute(sql).fetchall()


def test_faults_classified_and_key_never_logged(tmp_path, cohort_folder):
    folder = study_folder(tmp_path, cohort_folder)
    faults = {
        "fail_500": 0.10,
        "rate_limit_429": 0.05,
        "timeout": 0.02,
        "malformed_body": 0.02,
        "refusal": 0.03,
    }
    with LocalOpenAIServer(
        seed=3, timeout_sleep_s=8.0, retry_after_s=0.2, require_api_key=PLANTED_KEY, **faults
    ) as server:
        reader = openai_reader(
            server,
            max_concurrency=8,
            max_retries=10,
            # Long enough that a loaded machine still reads every request before the client
            # gives up, so each logged attempt is a request the server received.
            timeout_s=4.0,
            backoff_initial_s=0.05,
            backoff_max_s=0.5,
        )
        protocol = write_protocol(folder, reader)
        environment = {"VLMSTUDY_TEST_KEY": PLANTED_KEY}
        assert run_cli("register", str(protocol), cwd=folder).returncode == 0

        first = run_cli("-v", "run", str(protocol), cwd=folder, env=environment)
        assert first.returncode == 0, first.stderr
        received = server.request_count
        injected = server.faults
        again = run_cli("-v", "run", str(protocol), cwd=folder, env=environment)
        assert again.returncode == 0, again.stderr
        assert server.request_count == received

    run_id = last_run_id(first.stdout)
    exported = run_cli("export", run_id, "--out", "first.csv", cwd=folder)
    assert exported.returncode == 0, exported.stderr
    table = pd.read_csv(folder / "first.csv")
    per_request = table.groupby("request_sha256")["outcome"].agg(set)
    assert (per_request.map(len) == 1).all()
    outcomes = Counter(next(iter(outcome)) for outcome in per_request)

    # Retries turned every 5xx, 429, timeout and malformed body into a valid answer.
    assert injected["fail_500"] > 0
    assert injected["rate_limit_429"] > 0
    assert injected["refusal"] > 0
    assert outcomes["refusal"] == injected["refusal"]
    assert outcomes["valid"] == len(per_request) - injected["refusal"]
    assert outcomes["infra_failure"] == 0

    # One stored response per request, and one logged attempt per request received.
    responses = store_rows(folder, "SELECT request_sha256 FROM responses")
    assert len(responses) == len({row[0] for row in responses}) == len(per_request)
    attempts = Counter(
        (kind, status) for kind, status in store_rows(folder, "SELECT kind, status FROM attempts")
    )
    assert sum(attempts.values()) == received
    retries = sum(attempts.values()) - attempts[("ok", 200)]
    assert received == len(per_request) + retries
    assert attempts[("ok", 200)] == len(per_request)
    assert attempts[("http_error", 500)] == injected["fail_500"]
    assert attempts[("rate_limited", 429)] == injected["rate_limit_429"]
    assert attempts[("timeout", None)] == injected["timeout"]
    assert attempts[("malformed_body", 200)] == injected["malformed_body"]

    replay = run_cli("export", last_run_id(again.stdout), "--out", "again.csv", cwd=folder)
    assert replay.returncode == 0, replay.stderr
    assert pd.read_csv(folder / "again.csv")["cached"].all()

    # The planted key is nowhere in the MLflow store, the artifacts, the logs or the report.
    report = run_cli("report", run_id, "--out", "report", cwd=folder)
    assert report.returncode == 0, report.stderr
    searched = [folder / "mlruns.db", *sorted((folder / "mlartifacts").rglob("*"))]
    searched += sorted((folder / "report").rglob("*"))
    searched = [path for path in searched if path.is_file()]
    assert len(searched) > 10
    for path in searched:
        assert PLANTED_KEY.encode() not in path.read_bytes(), path
    for output in (first.stdout, first.stderr, again.stdout, again.stderr):
        assert PLANTED_KEY not in output
    assert "retry" in first.stderr  # the -v log was captured, so it was searched


def test_external_endpoint_needs_consent(tmp_path, cohort_folder):
    folder = study_folder(tmp_path, cohort_folder)
    reader = {
        "kind": "openai",
        "name": "remote",
        # Never contacted: the protocol is rejected before any reader is built.
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-2024-08-06",
    }
    protocol = write_protocol(folder, reader)
    for command in (("register", str(protocol)), ("run", str(protocol), "--dry-run")):
        refused = run_cli(*command, cwd=folder)
        assert refused.returncode == 2
        assert "external_endpoints_allowed: true" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_dry_run_then_budget_cap_resumes(tmp_path, cohort_folder):
    folder = study_folder(tmp_path, cohort_folder)
    # 1,000 USD per million tokens makes one call cost about 1 USD.
    pricing = {"local-vlm": {"input_per_million": 1000.0, "output_per_million": 1000.0}}
    environment = {"VLMSTUDY_TEST_KEY": "sk-test-not-a-secret"}
    with LocalOpenAIServer() as server:
        reader = openai_reader(server, max_concurrency=4, image_detail="low")
        protocol = write_protocol(
            folder, reader, ["zero_shot"], pricing=pricing, budget={"max_cost_usd": 12.0}
        )
        assert run_cli("register", str(protocol), cwd=folder).returncode == 0

        planned = run_cli("run", str(protocol), "--dry-run", cwd=folder)
        assert planned.returncode == 0, planned.stderr
        assert server.request_count == 0
        line = next(line for line in planned.stdout.splitlines() if "requests" in line)
        requests = int(line.split(":")[1].split()[0])
        assert f"{requests} requests, 0 already stored, {requests} to call" in line
        assert "estimated cost" in planned.stdout
        assert "budget cap (budget.max_cost_usd): 12.0000 USD" in planned.stdout

        capped = run_cli("run", str(protocol), cwd=folder, env=environment)
        assert capped.returncode == 2
        assert capped.stderr.strip().splitlines()[-1].startswith("error: the budget cap")
        paid = server.request_count
        assert 0 < paid < requests
        stored = store_rows(folder, "SELECT COUNT(*) FROM responses")[0][0]
        assert stored == paid

        after = run_cli("run", str(protocol), "--dry-run", cwd=folder)
        assert f"{requests} requests, {stored} already stored" in after.stdout

        raised = write_protocol(
            folder, reader, ["zero_shot"], pricing=pricing, budget={"max_cost_usd": 10_000.0}
        )
        resumed = run_cli(
            "run", str(raised), "--deviation", "raise the budget", cwd=folder, env=environment
        )
        assert resumed.returncode == 0, resumed.stderr
        assert server.request_count == requests

    table_run = last_run_id(resumed.stdout)
    assert run_cli("export", table_run, "--out", "t.csv", cwd=folder).returncode == 0
    table = pd.read_csv(folder / "t.csv").drop_duplicates("request_sha256")
    assert int(table["cached"].sum()) == stored
    assert (table["cost_usd"] > 0).all()


def test_self_consistency_samples_combined(tmp_path, cohort_folder, monkeypatch):
    from study.cells import SweepContext, read_lesions
    from study.data.cohort import load_cohort
    from study.grid import expand_grid
    from study.protocol import load_protocol
    from study.readers import make_reader
    from study.store import ResponseStore

    folder = study_folder(tmp_path, cohort_folder)
    monkeypatch.setenv("VLMSTUDY_TEST_KEY", "sk-test-not-a-secret")
    with LocalOpenAIServer() as server:
        protocol_file = write_protocol(folder, openai_reader(server))
        protocol = load_protocol(protocol_file)
        protocol = protocol.model_copy(
            update={"grid": protocol.grid.model_copy(update={"strategies": ["self_consistency"]})}
        )
        readers = {spec.name: make_reader(spec) for spec in protocol.grid.readers}
        store = ResponseStore(folder / "responses.sqlite")
        cohort = load_cohort(cohort_folder)
        context = SweepContext(protocol, "", cohort, readers, store, "run")
        (cell,) = expand_grid(protocol)
        lesions = list(cohort.split("evaluation"))[:3]
        samples = context.prompts.strategy("self_consistency").samples

        records = read_lesions(context, cell, lesions)
        sent = server.request_count
        replayed = read_lesions(context, cell, lesions)

    assert samples > 1
    assert sent == 3 * samples
    assert store.count() == 3 * samples
    assert server.request_count == sent
    seeds = sorted({body["seed"] for body in server.requests})
    assert seeds == list(range(samples))
    for record in records:
        assert record.response_text.count("[sample ") == samples
        for row in record.rows:
            assert row["outcome"] == "valid"
            assert 0 < row["confidence"] <= 100
    assert all(row["cached"] for record in replayed for row in record.rows)
