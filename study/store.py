"""The append-only response store, keyed by the SHA-256 of each request.

A response is stored once and never replaced (``INSERT OR IGNORE``), so a
request that was paid for is never paid for again, whichever run or worker
asks. Every HTTP attempt, successful or not, is a row of the ``attempts``
table; failed attempts are never served as answers. SQLite in WAL mode with a
busy timeout lets threads and processes on one machine write concurrently;
``synchronous=NORMAL`` means a power cut can lose the last few commits but
never corrupts the file.
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
CREATE INDEX IF NOT EXISTS attempts_by_request ON attempts (request_sha256);
"""

# Columns added after the first release; an older store gains them on open.
_ADDED_COLUMNS = {
    "responses": {"refusal": "TEXT"},
    "attempts": {
        "attempt": "INTEGER",
        "kind": "TEXT",
        "status": "INTEGER",
        "retryable": "INTEGER",
        "latency_s": "REAL",
        "reader": "TEXT",
    },
}

ATTEMPT_KINDS: tuple[str, ...] = (
    "ok",
    "http_error",
    "rate_limited",
    "timeout",
    "connection_error",
    "malformed_body",
    "format_rejected",
    "reader_error",
)
"""Kinds of attempt rows: ``ok`` for a stored response, the rest for failures."""


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
class Attempt:
    """One call attempt as logged in the ``attempts`` table."""

    request_sha256: str
    attempt: int
    kind: str
    status: int | None
    retryable: bool
    latency_s: float
    error: str
    reader: str


class ResponseStore:
    """An append-only SQLite store of reader responses; see the module docstring.

    Examples
    --------
    >>> import tempfile
    >>> store = ResponseStore(Path(tempfile.mkdtemp()) / "responses.sqlite")
    >>> store.put("k" * 64, "simulated", "{}", ReaderResponse("{}", "simulated", 0.01))
    >>> store.put("k" * 64, "simulated", "{}", ReaderResponse("other", "simulated", 0.01))
    >>> store.get("k" * 64).text, store.count()
    ('{}', 1)
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        connection = self._connection()
        connection.executescript(_SCHEMA)
        for table, columns in _ADDED_COLUMNS.items():
            present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            for name, sql_type in columns.items():
                if name not in present:
                    try:
                        connection.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")
                    except sqlite3.OperationalError as error:
                        # Another process added it between our check and our ALTER.
                        if "duplicate column" not in str(error):
                            raise

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            connection.execute("PRAGMA busy_timeout=60000")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        return connection

    def get(self, request_sha256: str) -> ReaderResponse | None:
        """Return the stored response for a request, or None."""
        row = (
            self._connection()
            .execute(
                "SELECT text, model_snapshot, latency_s, input_tokens, output_tokens, raw_json, "
                "refusal FROM responses WHERE request_sha256 = ?",
                (request_sha256,),
            )
            .fetchone()
        )
        if row is None:
            return None
        text, snapshot, latency, input_tokens, output_tokens, raw_json, refusal = row
        raw = json.loads(raw_json) if raw_json else None
        return ReaderResponse(text, snapshot, latency, input_tokens, output_tokens, raw, refusal)

    def stored_keys(self, request_sha256s: list[str]) -> set[str]:
        """Return which of the given request keys have a stored response."""
        found: set[str] = set()
        connection = self._connection()
        for start in range(0, len(request_sha256s), 500):
            chunk = request_sha256s[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = connection.execute(
                f"SELECT request_sha256 FROM responses WHERE request_sha256 IN ({marks})", chunk
            )
            found.update(row[0] for row in rows)
        return found

    def put(
        self,
        request_sha256: str,
        reader_kind: str,
        request_json: str,
        response: ReaderResponse,
        attempt: Attempt | None = None,
    ) -> None:
        """Store a response unless one is already stored, and log its attempt in the same commit."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            self._insert_response(connection, request_sha256, reader_kind, request_json, response)
            if attempt is not None:
                self._insert_attempt(connection, attempt)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def _insert_response(
        self,
        connection: sqlite3.Connection,
        request_sha256: str,
        reader_kind: str,
        request_json: str,
        response: ReaderResponse,
    ) -> None:
        connection.execute(
            "INSERT OR IGNORE INTO responses (request_sha256, stored_at, reader_kind, "
            "request_json, text, model_snapshot, latency_s, input_tokens, output_tokens, "
            "raw_json, refusal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                response.refusal,
            ),
        )

    def log_attempt(self, attempt: Attempt) -> None:
        """Append one call attempt; a failed one is never served as an answer."""
        self._insert_attempt(self._connection(), attempt)

    def _insert_attempt(self, connection: sqlite3.Connection, attempt: Attempt) -> None:
        connection.execute(
            "INSERT INTO attempts (request_sha256, attempted_at, error, attempt, kind, status, "
            "retryable, latency_s, reader) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                attempt.request_sha256,
                datetime.now(UTC).isoformat(),
                attempt.error,
                attempt.attempt,
                attempt.kind,
                attempt.status,
                int(attempt.retryable),
                attempt.latency_s,
                attempt.reader,
            ),
        )

    def record_failure(self, request_sha256: str, error: str) -> None:
        """Record a failed attempt of a local reader; it is never served as an answer."""
        self.log_attempt(Attempt(request_sha256, 1, "reader_error", None, False, 0.0, error, ""))

    def attempts(self, request_sha256: str | None = None) -> list[Attempt]:
        """Return the logged attempts, of one request or of all, in the order logged."""
        sql = (
            "SELECT request_sha256, COALESCE(attempt, 1), COALESCE(kind, 'reader_error'), "
            "status, COALESCE(retryable, 0), COALESCE(latency_s, 0), error, "
            "COALESCE(reader, '') FROM attempts"
        )
        parameters: tuple[Any, ...] = ()
        if request_sha256 is not None:
            sql += " WHERE request_sha256 = ?"
            parameters = (request_sha256,)
        rows = self._connection().execute(sql + " ORDER BY rowid", parameters).fetchall()
        return [
            Attempt(key, number, kind, status, bool(retryable), latency, error, reader)
            for key, number, kind, status, retryable, latency, error, reader in rows
        ]

    def count(self) -> int:
        """Return the number of stored responses."""
        return self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()[0]
