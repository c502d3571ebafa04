"""Protocol loading, validation messages, canonical hashing and grid expansion."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from study.errors import UserInputError
from study.grid import expand_grid
from study.protocol import load_protocol, protocol_sha256

from .conftest import REPOSITORY

DEMO = REPOSITORY / "protocols" / "demo.yaml"


def write(tmp_path: Path, mapping: dict, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


def demo_mapping() -> dict:
    return yaml.safe_load(DEMO.read_text())


def test_demo_protocol_loads():
    protocol = load_protocol(DEMO)
    assert protocol.id == "demo"
    assert len(expand_grid(protocol)) == 2 * 3 * 2


def test_hash_ignores_key_order_and_comments(tmp_path):
    mapping = demo_mapping()
    reordered = dict(reversed(list(mapping.items())))
    first = write(tmp_path, mapping, "a.yaml")
    second = write(tmp_path, reordered, "b.yaml")
    second.write_text("# a comment\n" + second.read_text())
    assert protocol_sha256(first) == protocol_sha256(second)


def test_hash_changes_with_a_value(tmp_path):
    mapping = demo_mapping()
    first = write(tmp_path, mapping, "a.yaml")
    mapping["few_shot"]["k"] = 3
    second = write(tmp_path, mapping, "b.yaml")
    assert protocol_sha256(first) != protocol_sha256(second)


def test_cell_ids_stable_under_reordering(tmp_path):
    mapping = demo_mapping()
    ids = {cell.cell_id for cell in expand_grid(load_protocol(write(tmp_path, mapping, "a.yaml")))}
    mapping["grid"]["strategies"].reverse()
    mapping["grid"]["readers"].reverse()
    reordered = {cell.cell_id for cell in expand_grid(load_protocol(write(tmp_path, mapping)))}
    assert ids == reordered
    assert len(ids) == 12


def test_every_violation_reported_at_once(tmp_path):
    mapping = demo_mapping()
    mapping["features"].append("glow")
    mapping["grid"]["sequences"].append(["t1_pre", "flair"])
    del mapping["title"]
    with pytest.raises(UserInputError) as caught:
        load_protocol(write(tmp_path, mapping))
    message = str(caught.value)
    assert "3 problem(s)" in message
    assert "glow" in message
    assert "flair" in message
    assert "title" in message
    assert "p.yaml" in message


def test_external_endpoint_needs_consent(tmp_path):
    mapping = demo_mapping()
    mapping["grid"]["readers"].append(
        {"kind": "openai", "name": "remote", "base_url": "https://api.example.org/v1", "model": "m"}
    )
    with pytest.raises(UserInputError, match="external_endpoints_allowed: true"):
        load_protocol(write(tmp_path, mapping))
    mapping["privacy"]["external_endpoints_allowed"] = True
    assert load_protocol(write(tmp_path, mapping)).privacy.external_endpoints_allowed


def test_bad_yaml_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("id: [unclosed\n")
    with pytest.raises(UserInputError, match="broken.yaml: not valid YAML"):
        load_protocol(path)


def test_missing_file_names_path(tmp_path):
    with pytest.raises(UserInputError, match="protocol file not found"):
        load_protocol(tmp_path / "absent.yaml")


def test_copy_keeps_hash(tmp_path):
    copy = tmp_path / "demo.yaml"
    shutil.copy(DEMO, copy)
    assert protocol_sha256(copy) == protocol_sha256(DEMO)


def test_template_documents_every_key():
    from study.protocol import Protocol

    text = (REPOSITORY / "protocols" / "template.yaml").read_text()
    for name in Protocol.model_fields:
        assert f"{name}:" in text, name


def test_template_validates(tmp_path):
    mapping = yaml.safe_load((REPOSITORY / "protocols" / "template.yaml").read_text())
    mapping["grid"]["readers"] = [r for r in mapping["grid"]["readers"] if r["kind"] != "openai"]
    kept = {reader["name"] for reader in mapping["grid"]["readers"]}
    mapping["power"]["error_rates"] = {
        name: rates for name, rates in mapping["power"]["error_rates"].items() if name in kept
    }
    protocol = load_protocol(write(tmp_path, mapping))
    assert protocol.id == mapping["id"]
