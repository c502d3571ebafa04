"""The response store under concurrent writers: threads and separate processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from study.readers import ReaderResponse
from study.store import Attempt, ResponseStore

KEYS = [f"{index:064x}" for index in range(40)]


def write_all(path: str, writer: int) -> None:
    """Store a response for every key and log one failed and one good attempt per key."""
    store = ResponseStore(Path(path))
    for key in KEYS:
        store.log_attempt(Attempt(key, 1, "http_error", 500, True, 0.01, "HTTP 500", f"w{writer}"))
        response = ReaderResponse(f"writer {writer}", "model-1", 0.1, 10, 5, {"writer": writer})
        store.put(key, "openai", "{}", response)
        store.log_attempt(Attempt(key, 2, "ok", 200, False, 0.01, "", f"w{writer}"))


def test_processes_write_one_row_per_key(tmp_path):
    path = tmp_path / "responses.sqlite"
    # fork is the default on Linux and spares each writer the import of the package.
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=write_all, args=(str(path), index)) for index in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0

    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT request_sha256, text FROM responses").fetchall()
        attempts = connection.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    assert len(rows) == len(KEYS)
    assert len({key for key, _ in rows}) == len(KEYS)
    assert attempts == 4 * 2 * len(KEYS)

    # The first writer of a key wins and is never replaced: each stored text is one writer's.
    store = ResponseStore(path)
    for key in KEYS:
        stored = store.get(key)
        assert stored.text == f"writer {stored.raw['writer']}"


def test_threads_write_one_row_per_key(tmp_path):
    path = tmp_path / "responses.sqlite"
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda index: write_all(str(path), index), range(4)))

    store = ResponseStore(path)
    assert store.count() == len(KEYS)
    assert len(store.attempts()) == 4 * 2 * len(KEYS)
    assert store.stored_keys([*KEYS, "f" * 64]) == set(KEYS)


def test_failure_never_served(tmp_path):
    store = ResponseStore(tmp_path / "responses.sqlite")
    store.record_failure("a" * 64, "no ground truth")

    assert store.get("a" * 64) is None
    assert store.count() == 0
    assert [attempt.kind for attempt in store.attempts("a" * 64)] == ["reader_error"]


def test_refusal_kept_with_response(tmp_path):
    store = ResponseStore(tmp_path / "responses.sqlite")
    store.put("b" * 64, "openai", "{}", ReaderResponse("", "m", 0.2, refusal="I can't help."))

    assert store.get("b" * 64).refusal == "I can't help."


def test_old_store_gains_columns(tmp_path):
    path = tmp_path / "responses.sqlite"
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "CREATE TABLE attempts (request_sha256 TEXT NOT NULL, attempted_at TEXT NOT NULL, "
            "error TEXT NOT NULL);"
            "INSERT INTO attempts VALUES ('k', '2026-01-01', 'timeout');"
        )

    store = ResponseStore(path)

    (old,) = store.attempts()
    assert (old.request_sha256, old.kind, old.error) == ("k", "reader_error", "timeout")
