"""The append-only response store, keyed by the SHA-256 of each request.

A response is stored once and never replaced (``INSERT OR IGNORE``), so a
request that was paid for is never paid for again, whichever run or worker
asks. Failed calls go to a separate ``attempts`` table and are never served
as answers. SQLite in WAL mode with a busy timeout lets threads and processes
on one machine write concurrently.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from study import __version__
from study.readers.base import ReaderResponse

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    request_sha256 TEXT PRIMARY KEY,
    stored_at TEXT NOT NULL,
    reader_kind TEXT NOT NULL,
    request_json TEXT NOT NULL,
    text TEXT NOT NULL,
    model_snapshot TEXT NOT NULL,
    latency_s REAL NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    raw_json TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    request_sha256 TEXT NOT NULL,
    attempted_at TEXT NOT NULL,
    error TEXT NOT NULL
);
"""


def request_key(
    reader_identity: dict[str, Any],
    messages: list[dict[str, Any]],
    features: tuple[str, ...],
    decoding: dict[str, Any],
    replicate: int,
) -> tuple[str, str]:
    """Return the canonical request JSON and its SHA-256.

    The key covers the reader's identity (endpoint and model, or a local
    reader's settings), the messages with image hashes in place of bytes, the
    features asked, the decoding settings, the replicate index and the
    package version.

    Examples
    --------
    >>> _, key = request_key({"kind": "simulated"}, [], ("aphe",), {}, 0)
    >>> len(key)
    64
    """
    document = {
        "reader": reader_identity,
        "messages": messages,
        "features": list(features),
        "decoding": decoding,
        "replicate": replicate,
        "package_version": __version__,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    """A response read back from the store."""

    request_sha256: str
    response: ReaderResponse


class ResponseStore:
    """An append-only SQLite store of reader responses; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connection() as connection:
            connection.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=60000")
            self._local.connection = connection
        return connection

    def get(self, request_sha256: str) -> ReaderResponse | None:
        """Return the stored response for a request, or None."""
        row = (
            self._connection()
            .execute(
                "SELECT text, model_snapshot, latency_s, input_tokens, output_tokens, raw_json "
                "FROM responses WHERE request_sha256 = ?",
                (request_sha256,),
            )
            .fetchone()
        )
        if row is None:
            return None
        text, snapshot, latency, input_tokens, output_tokens, raw_json = row
        raw = json.loads(raw_json) if raw_json else None
        return ReaderResponse(text, snapshot, latency, input_tokens, output_tokens, raw)

    def put(
        self, request_sha256: str, reader_kind: str, request_json: str, response: ReaderResponse
    ) -> None:
        """Store a response unless one is already stored for the request."""
        self._connection().execute(
            "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request_sha256,
                datetime.now(UTC).isoformat(),
                reader_kind,
                request_json,
                response.text,
                response.model_snapshot,
                response.latency_s,
                response.input_tokens,
                response.output_tokens,
                json.dumps(response.raw, sort_keys=True) if response.raw is not None else None,
            ),
        )

    def record_failure(self, request_sha256: str, error: str) -> None:
        """Record a failed attempt; it is never served as an answer."""
        self._connection().execute(
            "INSERT INTO attempts VALUES (?, ?, ?)",
            (request_sha256, datetime.now(UTC).isoformat(), error),
        )

    def count(self) -> int:
        """Return the number of stored responses."""
        return self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()[0]
