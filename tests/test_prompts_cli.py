"""Prompt strategies end to end through the real command line.

``prompts show`` prints each strategy's messages for a demo lesion, through the
click command in-process and, for bad input, in a subprocess. The shipped
``protocols/strategies.yaml`` runs every strategy through ``vlmstudy run`` with
the local readers and with an ``openai`` reader against the local
OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from study.cli import cli
from study.data.phantom import build_phantom
from study.errors import UserInputError
from study.grid import expand_grid
from study.local_server import LocalOpenAIServer
from study.prompts import shipped_strategies
from study.protocol import load_protocol

from .conftest import REPOSITORY, run_cli

PROTOCOL = REPOSITORY / "protocols" / "strategies.yaml"


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("strategies")
    (folder / "protocols").mkdir()
    shutil.copy(PROTOCOL, folder / "protocols" / "strategies.yaml")
    phantom = load_protocol(PROTOCOL).cohort.phantom
    build_phantom(
        folder / ".vlmstudy" / "strategies-cohort", patients=phantom.patients, seed=phantom.seed
    )
    return folder


def cell_ids(protocol_file: Path, reader: str) -> dict[str, str]:
    cells = expand_grid(load_protocol(protocol_file))
    return {cell.strategy: cell.cell_id for cell in cells if cell.reader.name == reader}


def last_run_id(stdout: str) -> str:
    return stdout.strip().splitlines()[-1].removeprefix("run_id: ")


def export(folder: Path, run_id: str) -> pd.DataFrame:
    out = folder / f"{run_id}.csv"
    finished = run_cli("export", run_id, "--out", str(out), cwd=folder)
    assert finished.returncode == 0, finished.stderr
    return pd.read_csv(out)


def test_prompts_show_each_strategy(study_folder):
    protocol = study_folder / "protocols" / "strategies.yaml"
    expected = {
        "zero_shot": '{"features": {"<feature>"',
        "few_shot": "Reference answer of example 2:",
        "chain_of_thought": '{"reasoning": "<your description',
        "self_consistency": '"samples": 3, "system_role": true, "temperature": 0.7',
        "definitions": "Definition: Enhancement in the arterial phase",
        "no_image": '"images": false',
    }
    montage = (
        "[image t1_pre+arterial+portal_venous+delayed+t2+dwi+adc+in_phase+opposed_phase sha256:"
    )
    runner = CliRunner()
    for strategy, cell_id in cell_ids(protocol, "simulated").items():
        arguments = ["prompts", "show", str(protocol), "--lesion", "P001-L1", "--cell", cell_id]
        shown = runner.invoke(cli, arguments)
        assert shown.exit_code == 0, shown.output
        assert f"strategy {strategy}," in shown.stdout
        assert expected[strategy] in shown.stdout, strategy
        assert "[system] You are an abdominal radiologist" in shown.stdout
        images = shown.stdout.count("[image ")
        if strategy == "no_image":
            assert images == 0
        elif strategy == "few_shot":
            assert images == 3
            assert "[exemplars " in shown.stdout
        else:
            assert images == 1
            assert montage in shown.stdout


def test_prompts_show_rejects_unknown_ids(study_folder):
    protocol = study_folder / "protocols" / "strategies.yaml"
    bad_cell = run_cli(
        "prompts", "show", str(protocol), "--lesion", "P001-L1", "--cell", "nope", cwd=study_folder
    )
    assert bad_cell.returncode == 2
    assert "--cell nope" in bad_cell.stderr
    assert "Traceback" not in bad_cell.stderr
    cell = next(iter(cell_ids(protocol, "simulated").values()))
    arguments = ["prompts", "show", str(protocol), "--lesion", "P999-L1", "--cell", cell]
    bad_lesion = CliRunner().invoke(cli, arguments)
    assert isinstance(bad_lesion.exception, UserInputError)
    assert "--lesion P999-L1: not found" in str(bad_lesion.exception)


def test_every_strategy_runs_with_every_reader(tmp_path):
    # The shipped protocol with the local server's reader added, on a smaller phantom
    # (2 evaluation patients) so the test stays quick.
    (tmp_path / "protocols").mkdir()
    mapping = yaml.safe_load(PROTOCOL.read_text())
    mapping["id"] = "strategies-all-readers"
    mapping["cohort"]["phantom"]["patients"] = 6
    phantom = mapping["cohort"]["phantom"]
    build_phantom(
        tmp_path / ".vlmstudy" / "strategies-cohort",
        patients=phantom["patients"],
        seed=phantom["seed"],
    )
    with LocalOpenAIServer() as server:
        mapping["grid"]["readers"].append(
            {
                "kind": "openai",
                "name": "local-vlm",
                "base_url": server.base_url,
                "model": "local-vlm",
                "api_key_env": "VLMSTUDY_TEST_KEY",
                "max_concurrency": 2,
                "max_images_per_request": 3,
            }
        )
        protocol = tmp_path / "protocols" / "strategies-all-readers.yaml"
        protocol.write_text(yaml.safe_dump(mapping, sort_keys=False))
        registered = run_cli("register", str(protocol), cwd=tmp_path)
        assert registered.returncode == 0, registered.stderr
        finished = run_cli(
            "run", str(protocol), cwd=tmp_path, env={"VLMSTUDY_TEST_KEY": "sk-test-not-a-secret"}
        )
        assert finished.returncode == 0, finished.stderr
        requests = list(server.requests)

    table = export(tmp_path, last_run_id(finished.stdout))
    assert set(table["reader"]) == {"quantitative", "simulated", "local-vlm"}
    for reader, rows in table.groupby("reader"):
        assert set(rows["strategy"]) == set(shipped_strategies()), reader
    local = table[table["reader"] != "local-vlm"]
    assert (local["outcome"] == "valid").all()
    assert (table.loc[table["reader"] == "local-vlm", "outcome"] == "valid").mean() > 0.9

    quantitative = table[table["reader"] == "quantitative"]
    no_image = quantitative[quantitative["strategy"] == "no_image"]
    assert (no_image["answer"] == "indeterminate").all()
    looked = quantitative[quantitative["strategy"] == "zero_shot"]
    assert (looked["answer"] != "indeterminate").any()

    def image_count(request) -> int:
        content = request["messages"][-1]["content"]
        return sum(part["type"] == "image_url" for part in content)

    def text(request) -> str:
        content = request["messages"][-1]["content"]
        return "\n".join(part["text"] for part in content if part["type"] == "text")

    # One montage per lesion, three with two few-shot exemplars, none for the no-image control.
    assert {image_count(request) for request in requests} == {0, 1, 3}
    without_images = [request for request in requests if image_count(request) == 0]
    assert all("Definition:" not in text(request) for request in without_images)
    assert any("Definition: Enhancement" in text(request) for request in requests)
    assert all(request["messages"][0]["role"] == "system" for request in requests)
    schemas = [
        request.get("response_format", {}).get("json_schema", {}).get("schema", {})
        for request in requests
    ]
    assert any("reasoning" in schema.get("properties", {}) for schema in schemas)
    assert not all("reasoning" in schema.get("properties", {}) for schema in schemas)


def test_register_rejects_request_over_limit(study_folder, tmp_path):
    mapping = yaml.safe_load(PROTOCOL.read_text())
    mapping["id"] = "strategies-limited"
    mapping["cohort"]["path"] = str(study_folder / ".vlmstudy" / "strategies-cohort")
    mapping["prompts"]["layout"] = "separate"
    # The demo's power section names its readers, which this grid replaces.
    mapping.pop("power", None)
    mapping["grid"]["readers"] = [
        {
            "kind": "openai",
            "name": "five-images",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "max_images_per_request": 5,
        }
    ]
    protocol = tmp_path / "limited.yaml"
    protocol.write_text(yaml.safe_dump(mapping, sort_keys=False))
    refused = run_cli("register", str(protocol), cwd=tmp_path)
    assert refused.returncode == 2
    assert "reader 'five-images', strategy few_shot" in refused.stderr
    assert "27 images per request, over max_images_per_request 5" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not list(tmp_path.glob("*.registration.json"))
