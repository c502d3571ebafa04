"""The power record: written beside the protocol, and into the registration when it matches.

``vlmstudy power`` writes ``<id>.power.json`` beside the protocol. ``vlmstudy
register`` copies it into the registration record when it was computed for
the protocol as it is now (same canonical hash), so the sample-size
justification is frozen with the protocol. A record of another protocol
version is left out, and the command prints why.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from study.errors import UserInputError
from study.power.design import resolve
from study.power.simulation import PowerResult, run_power
from study.protocol import load_protocol, protocol_sha256

RECORD_KEYS = ["protocol_id", "protocol_sha256", "computed_at", "settings", "tests", "results"]
"""Keys every power record has."""


def power_record_path(protocol_file: Path, protocol_id: str) -> Path:
    """Return where ``vlmstudy power`` writes its record: ``<id>.power.json`` beside the protocol.

    Examples
    --------
    >>> power_record_path(Path("protocols/demo.yaml"), "demo").as_posix()
    'protocols/demo.power.json'
    """
    return Path(protocol_file).with_name(f"{protocol_id}.power.json")


def read_power_record(protocol_file: Path, protocol_id: str) -> dict | None:
    """Return the power record beside the protocol, or None when there is none.

    Raises
    ------
    study.errors.UserInputError
        When the file exists but is not a power record (not JSON, or no results).
    """
    path = power_record_path(protocol_file, protocol_id)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(
            f"{path}: not a power record ({error}); delete it or run 'vlmstudy power' again"
        ) from None
    if not isinstance(record, dict):
        record = {}
    missing = [key for key in RECORD_KEYS if key not in record]
    problem = f"missing {', '.join(missing)}" if missing else _malformed(record)
    if problem:
        raise UserInputError(
            f"{path}: not a power record ({problem}); delete it or run 'vlmstudy power' again"
        )
    return record


def _malformed(record: dict) -> str:
    """Return what is wrong with a record that has every key, or an empty string."""
    from study.power.simulation import RESULT_COLUMNS

    if not isinstance(record["computed_at"], str) or not isinstance(record["settings"], dict):
        return "computed_at must be text and settings a mapping"
    rows = record["results"]
    if not isinstance(record["tests"], list) or not isinstance(rows, list) or not rows:
        return "tests and results must be lists, and results not empty"
    if not all(isinstance(row, dict) and set(RESULT_COLUMNS) <= set(row) for row in rows):
        return f"every result needs the columns {', '.join(RESULT_COLUMNS)}"
    return ""


def power_protocol(
    protocol_file: Path,
    *,
    lesions: Sequence[int] | None = None,
    n_sim: int | None = None,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> tuple[PowerResult, dict, Path]:
    """Simulate a protocol's power and write its record beside the protocol.

    Parameters
    ----------
    protocol_file
        The protocol.
    lesions, n_sim
        Override ``power.lesions`` and ``power.n_sim``.
    workers
        Processes; default every core.
    on_progress
        Called with the number of simulated studies just finished.
    on_start
        Called once with the number of studies to simulate.

    Returns
    -------
    tuple
        The result, the record written and its path.
    """
    protocol_file = Path(protocol_file)
    protocol = load_protocol(protocol_file)
    try:
        design = resolve(protocol)
    except UserInputError as error:
        raise UserInputError(f"{protocol_file}: {error}") from None
    sizes = sorted(set(lesions or design.power.lesions))
    path = power_record_path(protocol_file, protocol.id)
    partial = path.with_name(path.name + ".partial")
    if path.resolve() == protocol_file.resolve():
        raise UserInputError(
            f"{protocol_file}: the power record of protocol {protocol.id!r} would be written "
            f"over the protocol itself ({path.name}); rename the protocol file"
        )
    for target in (path, partial):
        if target.exists() and not target.is_file():
            raise UserInputError(
                f"{target} exists and is not a file, so the power record cannot be written; "
                "move it away"
            )
    result = run_power(
        design,
        lesions=sizes,
        n_sim=n_sim or design.power.n_sim,
        workers=workers,
        on_start=on_start,
        on_progress=on_progress,
    )
    record = result.to_record(
        protocol_id=protocol.id, protocol_sha256=protocol_sha256(protocol_file)
    )
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return result, record, path
