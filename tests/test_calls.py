"""Calls through study.calls against the local server: what is retried, logged and stored."""

from __future__ import annotations

import json

import pytest

from study.calls import Budget, PendingCall, RateLimiter, call_all
from study.local_server import REFUSAL_TEXT, LocalOpenAIServer
from study.prompts import build_prompt
from study.protocol import DecodingSpec, OpenAIReaderSpec
from study.readers import OpenAIReader, ReadRequest
from study.store import ResponseStore

FEATURES = ("aphe", "washout")
KEY = "sk-test-calls-0123456789"


class Image:
    sequence = "arterial"
    sha256 = "0" * 64
    # A 1 x 1 PNG: the server checks the base64, not the picture.
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
        "3a7e9b550000000a49444154789c63600000000200015d0b0e6a0000000049454e44ae426082"
    )


def pending(index: int = 0) -> PendingCall:
    prompt = build_prompt("zero_shot", FEATURES, ("arterial",), (Image(),))
    request = ReadRequest(
        lesion_id=f"L{index}",
        features=FEATURES,
        sequences=("arterial",),
        strategy="zero_shot",
        replicate=index,
        prompt=prompt,
        images=(Image(),),
        decoding=DecodingSpec(),
    )
    return PendingCall(f"{index:064x}", "{}", request, 100, 1.0)


def reader(server: LocalOpenAIServer, monkeypatch, **fields) -> OpenAIReader:
    monkeypatch.setenv("VLMSTUDY_TEST_KEY", KEY)
    spec = OpenAIReaderSpec(
        kind="openai",
        name="local",
        base_url=server.base_url,
        model="local-vlm",
        api_key_env="VLMSTUDY_TEST_KEY",
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        timeout_s=5.0,
        **fields,
    )
    return OpenAIReader(spec)


@pytest.fixture
def store(tmp_path) -> ResponseStore:
    return ResponseStore(tmp_path / "responses.sqlite")


def test_rejected_key_not_retried(monkeypatch, store):
    with LocalOpenAIServer(require_api_key="another-key") as server:
        (outcome,) = call_all(reader(server, monkeypatch), [pending()], store=store)

    assert outcome.response is None
    assert server.request_count == 1
    (attempt,) = store.attempts()
    assert (attempt.kind, attempt.status, attempt.retryable) == ("http_error", 401, False)
    assert KEY not in attempt.error
    assert store.count() == 0


def test_connection_reset_retried_then_failure(monkeypatch, store):
    with LocalOpenAIServer(connection_reset=1.0) as server:
        (outcome,) = call_all(reader(server, monkeypatch, max_retries=2), [pending()], store=store)

    assert outcome.response is None
    assert outcome.attempts == 3
    assert server.request_count == 3
    assert [attempt.kind for attempt in store.attempts()] == ["connection_error"] * 3
    assert store.count() == 0


def test_retry_after_pauses_reader(monkeypatch, store):
    with LocalOpenAIServer(rate_limit_429=1.0, retry_after_s=30) as server:
        model = reader(server, monkeypatch, max_retries=0)
        (outcome,) = call_all(model, [pending()], store=store)

    assert outcome.response is None
    (attempt,) = store.attempts()
    assert (attempt.kind, attempt.status, attempt.retryable) == ("rate_limited", 429, True)
    # The failed call's Retry-After holds back every later start of this reader.
    assert model.limiter.reserve(0) > 20


def test_rejected_format_falls_back_to_prompt(monkeypatch, store):
    with LocalOpenAIServer(reject_response_format=True) as server:
        (outcome,) = call_all(reader(server, monkeypatch), [pending()], store=store)

    assert outcome.response is not None
    assert [attempt.kind for attempt in store.attempts()] == ["format_rejected", "ok"]
    first, second = server.requests
    assert "response_format" in first
    assert "response_format" not in second
    assert "JSON Schema" in json.dumps(second["messages"])
    assert outcome.response.raw["vlmstudy_structured_output"] is False


def test_structured_refusal_kept(monkeypatch, store):
    with LocalOpenAIServer(refusal=1.0) as server:
        (outcome,) = call_all(reader(server, monkeypatch), [pending()], store=store)

    assert outcome.response.refusal == REFUSAL_TEXT
    assert outcome.response.text == ""
    assert store.get(pending().request_sha256).refusal == REFUSAL_TEXT


def test_response_records_usage_and_snapshot(monkeypatch, store):
    with LocalOpenAIServer() as server:
        (outcome,) = call_all(reader(server, monkeypatch), [pending()], store=store)

    response = outcome.response
    assert response.model_snapshot == "local-vlm-2026-12-01"
    assert response.input_tokens > 85
    assert response.output_tokens > 0
    assert response.raw["system_fingerprint"].startswith("fp_")
    body = server.requests[0]
    assert body["seed"] == 0
    assert body["max_tokens"] == 800
    assert body["response_format"]["type"] == "json_schema"


def test_budget_stops_new_calls(monkeypatch, store):
    budget = Budget(2.5)
    with LocalOpenAIServer() as server:
        outcomes = call_all(
            reader(server, monkeypatch, max_concurrency=1),
            [pending(index) for index in range(4)],
            store=store,
            budget=budget,
            cost_of=lambda response: 1.0,
        )

    sent = [outcome for outcome in outcomes if not outcome.not_sent]
    assert len(sent) == 2
    assert server.request_count == 2
    assert budget.spent_usd == 2.0
    assert budget.exhausted
    assert store.count() == 2


def test_limiter_spaces_starts_evenly():
    now = [100.0]
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=600, clock=lambda: now[0])
    waits = [limiter.reserve(5) for _ in range(3)]
    # 60 per minute with the 0.5 s window margin: one start every 60.5 / 60 s.
    assert waits == pytest.approx([0.0, 60.5 / 60, 2 * 60.5 / 60])

    big = limiter.reserve(300)
    assert big == pytest.approx(3 * 60.5 / 60)
    # 300 tokens of a 600-per-minute limit hold the next start back by half a window.
    assert limiter.reserve(1) == pytest.approx(big + 300 * 60.5 / 600)
