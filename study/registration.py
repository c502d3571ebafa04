"""Freezing a protocol before any answer is seen, and checking it before a run.

``register`` writes ``<id>.registration.json`` beside the protocol with the
protocol's canonical hash, the UTC time, the git commit, the cohort hash and
the package version. ``check_registration`` compares the protocol on disk
with that record; a changed protocol runs only with a stated deviation, which
is recorded with a diff of the canonical forms.
"""

from __future__ import annotations

import difflib
import json
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from study import __version__
from study.errors import UserInputError
from study.protocol import (
    canonical_json,
    cohort_path,
    load_protocol,
    protocol_sha256,
    read_protocol_mapping,
)


@dataclass(frozen=True)
class Deviation:
    """A departure from the registered protocol, stated before the run."""

    reason: str
    recorded_at: str
    registered_sha256: str
    current_sha256: str
    diff: str


def registration_path(protocol_file: Path) -> Path:
    """Return where the registration record of a protocol file lives."""
    protocol_file = Path(protocol_file)
    protocol_id = load_protocol(protocol_file).id
    return protocol_file.with_name(f"{protocol_id}.registration.json")


def git_commit(folder: Path) -> str:
    """Return the commit checked out at ``folder``, or ``"unknown"`` outside git."""
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip()


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register(protocol_file: Path, *, cohort_sha256: str) -> dict:
    """Register a protocol: write its record and return it.

    Registering again with an unchanged protocol and cohort keeps the first
    record, so the registration time stays the time the study was frozen.
    """
    protocol_file = Path(protocol_file)
    protocol = load_protocol(protocol_file)
    record_file = registration_path(protocol_file)
    sha256 = protocol_sha256(protocol_file)

    if record_file.is_file():
        existing = json.loads(record_file.read_text(encoding="utf-8"))
        if existing["protocol_sha256"] == sha256 and existing["cohort_sha256"] == cohort_sha256:
            return existing
        raise UserInputError(
            f"{record_file}: the protocol {protocol.id!r} is already registered with a different "
            "protocol or cohort hash; a registered protocol is frozen. Run it with "
            '--deviation "reason" to record the change, or give the changed study a new id.'
        )

    record = {
        "protocol_id": protocol.id,
        "protocol_sha256": sha256,
        "registered_at": _utc_now(),
        "git_commit": git_commit(protocol_file.resolve().parent),
        "cohort_path": str(cohort_path(protocol, protocol_file)),
        "cohort_sha256": cohort_sha256,
        "package_version": __version__,
        "canonical_protocol": canonical_json(read_protocol_mapping(protocol_file)),
    }
    power = registrable_power(protocol_file, protocol.id, sha256)
    if power is not None:
        record["power"] = power
    record_file.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def registrable_power(protocol_file: Path, protocol_id: str, sha256: str) -> dict | None:
    """Return the power record beside the protocol if it was computed for this protocol version."""
    from study.power.record import read_power_record

    power = read_power_record(protocol_file, protocol_id)
    if power is None or power["protocol_sha256"] != sha256:
        return None
    return power


def check_registration(
    protocol_file: Path, *, cohort_sha256: str, deviation: str | None
) -> tuple[dict, list[Deviation]]:
    """Return the registration record and the deviations this run declares.

    Raises
    ------
    UserInputError
        When the protocol was never registered, or it or its cohort changed
        since registration and no deviation reason was given.
    """
    protocol_file = Path(protocol_file)
    record_file = registration_path(protocol_file)
    if not record_file.is_file():
        raise UserInputError(
            f"{protocol_file}: this protocol is not registered; run "
            f"'vlmstudy register {protocol_file}' first to freeze it."
        )
    record = json.loads(record_file.read_text(encoding="utf-8"))
    current = protocol_sha256(protocol_file)
    changes = []
    if current != record["protocol_sha256"]:
        changes.append("protocol")
    if cohort_sha256 != record["cohort_sha256"]:
        changes.append("cohort")
    if not changes:
        return record, []

    if not deviation:
        raise UserInputError(
            f"{protocol_file}: the {' and '.join(changes)} changed since registration "
            f'({record_file}); run with --deviation "reason" to record the change as a deviation.'
        )
    registered = json.dumps(json.loads(record["canonical_protocol"]), indent=2, sort_keys=True)
    now = json.dumps(read_protocol_mapping(protocol_file), indent=2, sort_keys=True)
    diff = "\n".join(
        difflib.unified_diff(
            registered.splitlines(), now.splitlines(), "registered", "current", lineterm=""
        )
    )
    if "cohort" in changes:
        diff += f"\ncohort sha256: {record['cohort_sha256']} -> {cohort_sha256}"
    return record, [Deviation(deviation, _utc_now(), record["protocol_sha256"], current, diff)]


def deviation_dicts(deviations: list[Deviation]) -> list[dict]:
    """Return deviations as plain dictionaries for logging."""
    return [asdict(item) for item in deviations]
