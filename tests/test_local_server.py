"""Tests of the local OpenAI-compatible server, driven through the real ``openai`` client."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import openai
import pytest

from study.local_server import (
    FAULT_KINDS,
    REFUSAL_TEXT,
    LocalOpenAIServer,
    build_schema_instance,
    main,
)

FEATURE_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"enum": ["absent", "nonrim", "rim", "indeterminate"]},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
        "evidence": {"type": "string"},
    },
    "required": ["answer", "confidence"],
}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "features": {
            "type": "object",
            "properties": {
                "aphe": FEATURE_SCHEMA,
                "washout": {"$ref": "#/$defs/presence"},
                "capsule": {"$ref": "#/$defs/presence"},
            },
            "required": ["aphe", "washout", "capsule"],
        }
    },
    "required": ["features"],
    "$defs": {
        "presence": {
            "type": "object",
            "properties": {
                "answer": {"enum": ["absent", "present", "indeterminate"]},
                "confidence": {"type": "integer", "minimum": 0, "maximum": 100},
            },
            "required": ["answer", "confidence"],
        }
    },
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "lirads_features", "schema": ANSWER_SCHEMA, "strict": True},
}


# --------------------------------------------------------------------------- helpers


def validate(instance: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> list[str]:
    """Return the ways `instance` breaks `schema`, for the keywords the server supports."""
    while "$ref" in schema:
        target: Any = root
        for token in schema["$ref"][2:].split("/") if schema["$ref"] != "#" else []:
            target = target[token]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}

    if "anyOf" in schema:
        if all(validate(instance, branch, root) for branch in schema["anyOf"]):
            return [f"{instance!r} matches no anyOf branch"]
        return []
    errors: list[str] = []
    for branch in schema.get("allOf", []):
        errors += validate(instance, branch, root)
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{instance!r} != const {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{instance!r} not in enum {schema['enum']!r}")

    python_types = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "null": type(None),
        "integer": int,
        "number": (int, float),
    }
    declared = schema.get("type")
    if declared is not None:
        names = declared if isinstance(declared, list) else [declared]
        is_bool = isinstance(instance, bool)
        if not any(
            isinstance(instance, python_types[name]) and (name == "boolean" or not is_bool)
            for name in names
        ):
            return errors + [f"{instance!r} is not of type {declared!r}"]

    if isinstance(instance, dict):
        for name in schema.get("required", []):
            if name not in instance:
                errors.append(f"missing required property {name!r}")
        for name, value in instance.items():
            if name in schema.get("properties", {}):
                errors += validate(value, schema["properties"][name], root)
            elif schema.get("additionalProperties") is False:
                errors.append(f"unexpected property {name!r}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            errors.append(f"{len(instance)} items < minItems")
        if len(instance) > schema.get("maxItems", len(instance)):
            errors.append(f"{len(instance)} items > maxItems")
        for item in instance:
            errors += validate(item, schema.get("items", {}), root)
    if isinstance(instance, int | float) and not isinstance(instance, bool):
        if instance < schema.get("minimum", instance):
            errors.append(f"{instance} < minimum")
        if instance > schema.get("maximum", instance):
            errors.append(f"{instance} > maximum")
        if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
            errors.append(f"{instance} <= exclusiveMinimum")
        if "exclusiveMaximum" in schema and instance >= schema["exclusiveMaximum"]:
            errors.append(f"{instance} >= exclusiveMaximum")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{instance!r} shorter than minLength")
        if len(instance) > schema.get("maxLength", len(instance)):
            errors.append(f"{instance!r} longer than maxLength")
    return errors


_open_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while _open_clients:
        _open_clients.pop().close()


def make_client(
    server: LocalOpenAIServer, timeout: float = 5.0, api_key: str = "test-key"
) -> openai.OpenAI:
    # trust_env=False keeps proxy variables from routing loopback traffic elsewhere.
    client = openai.OpenAI(
        base_url=server.base_url,
        api_key=api_key,
        max_retries=0,
        timeout=timeout,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )
    _open_clients.append(client)
    return client


def image_part(payload: bytes) -> dict[str, Any]:
    url = "data:image/png;base64," + base64.b64encode(payload).decode()
    return {"type": "image_url", "image_url": {"url": url}}


def lesion_messages(lesion: str, text: str = "Rate the LI-RADS features.") -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a radiologist."},
        {"role": "user", "content": [{"type": "text", "text": text}, image_part(lesion.encode())]},
    ]


def ask(client: openai.OpenAI, lesion: str = "lesion-1", **kwargs: Any) -> Any:
    kwargs.setdefault("response_format", RESPONSE_FORMAT)
    return client.chat.completions.create(
        model="local-vlm", messages=lesion_messages(lesion), **kwargs
    )


@pytest.fixture
def server() -> Iterator[LocalOpenAIServer]:
    with LocalOpenAIServer() as running:
        yield running


# --------------------------------------------------------------------------- answers


def test_structured_output_matches_schema(server: LocalOpenAIServer) -> None:
    completion = ask(make_client(server))

    content = json.loads(completion.choices[0].message.content)
    assert validate(content, ANSWER_SCHEMA, ANSWER_SCHEMA) == []
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "local-vlm-2026-12-01"
    assert completion.object == "chat.completion"
    assert completion.system_fingerprint.startswith("fp_")


def test_same_request_same_content(server: LocalOpenAIServer) -> None:
    client = make_client(server)

    first = ask(client).choices[0].message.content
    second = ask(client).choices[0].message.content

    assert first == second


def test_different_lesions_differ(server: LocalOpenAIServer) -> None:
    client = make_client(server)

    contents = {
        ask(client, lesion=f"lesion-{index}").choices[0].message.content for index in range(6)
    }

    assert len(contents) > 1


def test_count_and_bodies_recorded(server: LocalOpenAIServer) -> None:
    client = make_client(server)

    ask(client, lesion="a")
    ask(client, lesion="b")

    assert server.request_count == 2
    assert len(server.requests) == 2
    assert server.requests[0]["messages"] == lesion_messages("a")
    assert server.requests[1]["response_format"] == RESPONSE_FORMAT
    assert server.responses_by_status == {200: 2}


def test_usage_counts_text_and_images(server: LocalOpenAIServer) -> None:
    completion = ask(make_client(server))

    # "You are a radiologist." (22) + "Rate the LI-RADS features." (26) = 48 chars
    # -> 12 tokens, plus 85 for the one image.
    assert completion.usage.prompt_tokens == 12 + 85
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == 97 + completion.usage.completion_tokens


def test_plain_text_without_response_format(server: LocalOpenAIServer) -> None:
    completion = make_client(server).chat.completions.create(
        model="local-vlm", messages=[{"role": "user", "content": "Describe the lesion."}]
    )

    content = completion.choices[0].message.content
    assert content.endswith(".")
    assert not content.lstrip().startswith("{")


def test_step_by_step_gives_fenced_json(server: LocalOpenAIServer) -> None:
    completion = make_client(server).chat.completions.create(
        model="local-vlm",
        messages=lesion_messages("lesion-1", "Think step by step, then rate the features."),
        response_format=RESPONSE_FORMAT,
    )

    content = completion.choices[0].message.content
    reasoning, fenced = content.split("```json\n", 1)
    assert reasoning.strip() != ""
    assert fenced.endswith("\n```")
    assert validate(json.loads(fenced[: -len("\n```")]), ANSWER_SCHEMA, ANSWER_SCHEMA) == []


def test_max_tokens_cuts_content(server: LocalOpenAIServer) -> None:
    completion = ask(make_client(server), max_tokens=3)

    assert completion.choices[0].finish_reason == "length"
    assert len(completion.choices[0].message.content) == 12


def test_n_gives_several_choices(server: LocalOpenAIServer) -> None:
    client = make_client(server)

    completion = ask(client, n=3)
    repeated = ask(client, n=3)

    contents = [choice.message.content for choice in completion.choices]
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert len(set(contents)) > 1
    assert contents == [choice.message.content for choice in repeated.choices]


def test_models_lists_model_and_snapshot(server: LocalOpenAIServer) -> None:
    models = make_client(server).models.list()

    assert [model.id for model in models.data] == ["local-vlm", "local-vlm-2026-12-01"]


def test_snapshot_name_accepted(server: LocalOpenAIServer) -> None:
    completion = make_client(server).chat.completions.create(
        model="local-vlm-2026-12-01", messages=[{"role": "user", "content": "Hello"}]
    )

    assert completion.choices[0].finish_reason == "stop"


# --------------------------------------------------------------------------- schema instances

GENERAL_SCHEMAS = {
    "nested arrays": {
        "type": "object",
        "properties": {
            "lesions": {
                "type": "array",
                "minItems": 2,
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "properties": {"size_mm": {"type": "number", "minimum": 5, "maximum": 50}},
                    "required": ["size_mm"],
                },
            }
        },
        "required": ["lesions"],
        "additionalProperties": False,
    },
    "anyOf with null": {
        "type": "object",
        "properties": {"note": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 4}]}},
        "required": ["note"],
    },
    "type list and const": {
        "type": "object",
        "properties": {
            "version": {"const": 2},
            "flag": {"type": ["boolean", "null"]},
            "grade": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3},
        },
        "required": ["version", "flag", "grade"],
    },
    "allOf merge": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string", "minLength": 30}}},
            {"properties": {"b": {"enum": [1, 2, 3]}}, "required": ["a", "b"]},
        ]
    },
    "recursive ref": {
        "$ref": "#/$defs/node",
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "child": {"$ref": "#/$defs/node"}},
                "required": ["name"],
            }
        },
    },
    "integer below zero": {"type": "integer", "maximum": -5},
}


@pytest.mark.parametrize("name", GENERAL_SCHEMAS)
def test_instance_satisfies_schema(name: str) -> None:
    schema = GENERAL_SCHEMAS[name]

    for key in (b"a", b"b", b"c"):
        instance = build_schema_instance(schema, key)
        assert validate(instance, schema, schema) == [], instance


@pytest.mark.parametrize("name", ["nested arrays", "anyOf with null", "allOf merge"])
def test_violation_breaks_schema(name: str) -> None:
    schema = GENERAL_SCHEMAS[name]

    instance = build_schema_instance(schema, b"a", violate=True)

    assert validate(instance, schema, schema) != []


def test_instance_rejects_remote_ref() -> None:
    with pytest.raises(ValueError, match="must be local"):
        build_schema_instance({"$ref": "https://example.org/schema.json"})


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(("fault", "status"), [("fail_500", 500), ("fail_503", 503)])
def test_fault_server_error(fault: str, status: int) -> None:
    with LocalOpenAIServer(**{fault: 1.0}) as server:
        with pytest.raises(openai.InternalServerError) as caught:
            ask(make_client(server))

    assert caught.value.status_code == status
    assert caught.value.body["type"] == "server_error"
    assert server.responses_by_status == {status: 1}
    assert server.faults == {fault: 1}


def test_fault_rate_limit_retry_after() -> None:
    with LocalOpenAIServer(rate_limit_429=1.0, retry_after_s=2) as server:
        with pytest.raises(openai.RateLimitError) as caught:
            ask(make_client(server))

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2"


def test_fault_timeout() -> None:
    started = time.monotonic()
    with LocalOpenAIServer(timeout=1.0, timeout_sleep_s=2.0) as server:
        with pytest.raises(openai.APITimeoutError):
            ask(make_client(server, timeout=0.2))

    # stop() wakes the handler that is still sleeping instead of waiting 2 s for it.
    assert time.monotonic() - started < 1.5


def test_fault_malformed_body() -> None:
    with LocalOpenAIServer(malformed_body=1.0) as server:
        # openai 3.60 raises the JSON decoding error of the 200 response unwrapped.
        with pytest.raises(json.JSONDecodeError):
            ask(make_client(server))

    assert server.responses_by_status == {200: 1}


def test_fault_truncated_content() -> None:
    with LocalOpenAIServer(truncated_content=1.0) as server:
        completion = ask(make_client(server))

    assert completion.choices[0].finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(completion.choices[0].message.content)


def test_fault_refusal() -> None:
    with LocalOpenAIServer(refusal=1.0) as server:
        structured = ask(make_client(server))
        plain = ask(make_client(server), response_format=None)

    # Structured output puts the refusal in message.refusal, as OpenAI does.
    assert structured.choices[0].message.content is None
    assert structured.choices[0].message.refusal == REFUSAL_TEXT
    assert plain.choices[0].message.content == REFUSAL_TEXT
    assert plain.choices[0].message.refusal is None


def test_fault_connection_reset() -> None:
    with LocalOpenAIServer(connection_reset=1.0) as server:
        with pytest.raises(openai.APIConnectionError):
            ask(make_client(server))

    assert server.request_count == 1
    assert server.faults["connection_reset"] == 1
    assert sum(server.responses_by_status.values()) == 0


def test_reject_response_format() -> None:
    with LocalOpenAIServer(reject_response_format=True) as server:
        with pytest.raises(openai.BadRequestError, match="response_format"):
            ask(make_client(server))
        completion = ask(make_client(server), response_format=None)

    assert completion.choices[0].finish_reason == "stop"
    assert server.responses_by_status == {400: 1, 200: 1}


def test_fault_schema_violation() -> None:
    with LocalOpenAIServer(schema_violation=1.0) as server:
        completion = ask(make_client(server))

    content = json.loads(completion.choices[0].message.content)
    errors = validate(content, ANSWER_SCHEMA, ANSWER_SCHEMA)
    assert len(errors) == 1
    assert "not in enum" in errors[0]


def test_faults_reproducible_with_seed() -> None:
    outcomes = []
    for _ in range(2):
        with LocalOpenAIServer(seed=7, fail_500=0.3, refusal=0.3) as server:
            client = make_client(server)
            run = []
            for index in range(20):
                try:
                    run.append(ask(client, lesion=str(index)).choices[0].message.content)
                except openai.InternalServerError:
                    run.append("500")
            outcomes.append((run, server.faults))

    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1]["fail_500"] > 0
    assert outcomes[0][1]["refusal"] > 0


# --------------------------------------------------------------------------- access control


def test_api_key_required() -> None:
    with LocalOpenAIServer(require_api_key="secret-key") as server:
        with pytest.raises(openai.AuthenticationError) as caught:
            ask(make_client(server))
        ask(make_client(server, api_key="secret-key"))

    assert caught.value.status_code == 401
    assert "secret-key" not in str(caught.value)
    assert server.responses_by_status == {401: 1, 200: 1}


def test_requests_per_minute_limit() -> None:
    with LocalOpenAIServer(requests_per_minute=3) as server:
        client = make_client(server)
        for index in range(3):
            ask(client, lesion=str(index))
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client, lesion="over the limit")

    retry_after = int(caught.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert server.responses_by_status == {200: 3, 429: 1}
    assert server.request_count == 4


def test_tokens_per_minute_limit() -> None:
    # Each request: 1 image (85 tokens) + ceil(len(text) / 4) text tokens + max_tokens 100.
    with LocalOpenAIServer(tokens_per_minute=400) as server:
        client = make_client(server)
        ask(client, lesion="a", max_tokens=100)
        ask(client, lesion="b", max_tokens=100)
        with pytest.raises(openai.RateLimitError, match="tokens per minute") as caught:
            ask(client, lesion="c", max_tokens=100)

    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    assert server.responses_by_status == {200: 2, 429: 1}


# --------------------------------------------------------------------------- invalid requests


def test_unknown_model_not_found(server: LocalOpenAIServer) -> None:
    with pytest.raises(openai.NotFoundError, match="local-vlm"):
        make_client(server).chat.completions.create(
            model="gpt-unknown", messages=[{"role": "user", "content": "Hello"}]
        )


def test_remote_image_url_rejected(server: LocalOpenAIServer) -> None:
    messages = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}],
        }
    ]

    with pytest.raises(openai.BadRequestError, match="base64 data URL"):
        make_client(server).chat.completions.create(model="local-vlm", messages=messages)


def test_invalid_base64_rejected(server: LocalOpenAIServer) -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}

    with pytest.raises(openai.BadRequestError, match="base64"):
        make_client(server).chat.completions.create(
            model="local-vlm", messages=[{"role": "user", "content": [part]}]
        )


# --------------------------------------------------------------------------- construction and CLI


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fail_500": 1.5}, "fail_500 must be a probability"),
        ({"refusal": -0.1}, "refusal must be a probability"),
        ({"host": "0.0.0.0"}, "host must be one of"),
        ({"latency_s": -1}, "latency_s must be"),
        ({"requests_per_minute": 0}, "requests_per_minute must be"),
        ({"model": ""}, "model must be a non-empty string"),
    ],
)
def test_constructor_rejects_invalid(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalOpenAIServer(**options)


def test_empty_api_key_rejected() -> None:
    with pytest.raises(ValueError, match="require_api_key"):
        LocalOpenAIServer(require_api_key="")


def test_every_fault_has_constructor_option() -> None:
    server = LocalOpenAIServer(**{kind: 0.5 for kind in FAULT_KINDS})

    assert server.fault_rates == {kind: 0.5 for kind in FAULT_KINDS}


def test_stopped_server_unreachable() -> None:
    server = LocalOpenAIServer().start()
    client = make_client(server, timeout=1.0)
    server.stop()
    server.stop()

    with pytest.raises(openai.APIConnectionError):
        ask(client)


def test_ipv6_loopback_base_url() -> None:
    try:
        server = LocalOpenAIServer(host="::1").start()
    except OSError:
        pytest.skip("IPv6 loopback is not available")

    with server:
        assert server.base_url == f"http://[::1]:{server.port}/v1"
        assert ask(make_client(server)).choices[0].finish_reason == "stop"


def test_cli_rejects_invalid_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--port", "0", "--fail-500", "2"])

    assert caught.value.code == 2
    assert "fail_500 must be a probability" in capsys.readouterr().err


def test_cli_rejects_unset_key_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLMSTUDY_TEST_UNSET_KEY", raising=False)

    with pytest.raises(SystemExit) as caught:
        main(["--port", "0", "--api-key-env", "VLMSTUDY_TEST_UNSET_KEY"])

    assert caught.value.code == 2
    assert "VLMSTUDY_TEST_UNSET_KEY is not set" in capsys.readouterr().err


def test_concurrent_requests_all_counted(server: LocalOpenAIServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = make_client(server)
    with ThreadPoolExecutor(max_workers=8) as pool:
        completions = list(pool.map(lambda index: ask(client, lesion=str(index)), range(40)))

    assert len(completions) == 40
    assert server.request_count == 40
    assert len(server.requests) == 40
    assert server.responses_by_status == {200: 40}


def test_record_requests_off() -> None:
    with LocalOpenAIServer(record_requests=False) as server:
        ask(make_client(server))

    assert server.requests == []
    assert server.request_count == 1
