"""An OpenAI-compatible chat completions server on loopback, with injected faults.

Tests, benchmarks and offline demos point the ``openai`` client at
:class:`LocalOpenAIServer` in place of a paid endpoint. The server builds
structured content from the request's JSON schema, deterministically from a
SHA-256 of the request body. It can also inject the failures that a real
endpoint shows, at seeded and reproducible rates: 5xx errors, 429 with
``Retry-After``, timeouts, malformed or truncated bodies, refusals and schema
violations.

It uses the standard library only and binds loopback addresses only. Run
``python -m study.local_server --port 8000`` to serve in the foreground.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import logging
import math
import os
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = [
    "FAULT_KINDS",
    "REFUSAL_TEXT",
    "LocalOpenAIServer",
    "build_schema_instance",
    "main",
]

logger = logging.getLogger(__name__)

FAULT_KINDS: tuple[str, ...] = (
    "fail_500",
    "fail_503",
    "rate_limit_429",
    "timeout",
    "malformed_body",
    "truncated_content",
    "refusal",
    "schema_violation",
)
"""Injectable faults, in the order in which each request draws them."""

REFUSAL_TEXT = "I'm sorry, but I can't provide a medical diagnosis from these images."
"""Content of an injected refusal."""

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1")
CHARS_PER_TOKEN = 4
TOKENS_PER_IMAGE = 85  # an estimate: the fixed count for one detail "low" image on GPT-4o
MAX_CHOICES = 16
RATE_WINDOW_S = 60.0
MAX_SCHEMA_DEPTH = 8  # below this depth only required properties are built, so recursion ends

_WORDS = ("smooth", "enhancing", "peripheral", "lobulated", "hypointense", "central", "uniform")
_COT_PHRASE = "think step by step"


# --------------------------------------------------------------------------- schema instances


def build_schema_instance(
    schema: Mapping[str, Any], key: bytes = b"", *, violate: bool = False
) -> Any:
    """Build a JSON value that satisfies a JSON Schema, chosen deterministically from `key`.

    Parameters
    ----------
    schema : mapping
        A JSON Schema. Supported: ``type`` (also a list), ``properties``,
        ``required``, ``items``, ``prefixItems``, ``enum``, ``const``,
        ``anyOf``, ``oneOf``, ``allOf``, local ``$ref`` into ``$defs`` or
        ``definitions``, ``minimum``, ``maximum``, their exclusive forms,
        ``minItems``, ``maxItems``, ``minLength``, ``maxLength`` and the string
        formats ``date``, ``date-time`` and ``uuid``.
    key : bytes
        Seed of every choice. The same schema and key always give the same value.
    violate : bool
        If true, break the schema on purpose: the first ``enum`` gets a value
        outside it, or, without any ``enum``, the first typed scalar gets a
        value of another type.

    Returns
    -------
    object
        A JSON-serialisable value. Every property is present above a nesting
        depth of 8 and required properties are present at any depth.

    Raises
    ------
    ValueError
        If a ``$ref`` is not local or not found, or integer bounds leave no value.

    Notes
    -----
    ``pattern``, ``multipleOf`` and ``uniqueItems`` are ignored, so a schema
    that relies on them may get a value that breaks it.

    Examples
    --------
    >>> schema = {"type": "object", "properties": {
    ...     "answer": {"enum": ["absent", "present"]},
    ...     "confidence": {"type": "integer", "minimum": 0, "maximum": 100}},
    ...     "required": ["answer", "confidence"]}
    >>> value = build_schema_instance(schema, b"lesion-1")
    >>> value["answer"] in ("absent", "present"), 0 <= value["confidence"] <= 100
    (True, True)
    >>> value == build_schema_instance(schema, b"lesion-1")
    True
    >>> build_schema_instance(schema, b"lesion-1", violate=True)["answer"]
    'not-a-valid-option'
    """
    if not violate:
        return _InstanceBuilder(schema, key, violation=None).build(schema, "#", 0)

    for violation in ("enum", "type"):
        builder = _InstanceBuilder(schema, key, violation=violation)
        instance = builder.build(schema, "#", 0)
        if builder.violated:
            return instance

    # NOTE: a schema without enums or typed scalars (say, an object with no
    # properties) is broken only if its root type is not "string".
    return "not-a-valid-value"


class _InstanceBuilder:
    """One walk over a schema, with the state of an optional deliberate violation."""

    def __init__(self, root: Mapping[str, Any], key: bytes, violation: str | None) -> None:
        self.root = root
        self.key = key
        self.violation = violation
        self.violated = False

    def pick(self, path: str, count: int) -> int:
        digest = hashlib.sha256(self.key + b"\x00" + path.encode()).digest()
        return int.from_bytes(digest[:8], "big") % count

    def resolve(self, schema: Mapping[str, Any] | bool) -> Mapping[str, Any]:
        if schema is True or schema is False:
            return {}
        hops = 0
        while "$ref" in schema:
            reference = schema["$ref"]
            if not isinstance(reference, str) or not reference.startswith("#"):
                raise ValueError(f"$ref must be local (start with '#'), got {reference!r}.")
            target: Any = self.root
            for token in reference[1:].split("/")[1:]:
                token = token.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, Mapping) or token not in target:
                    raise ValueError(f"$ref {reference!r} not found in the schema.")
                target = target[token]

            # Keywords beside a $ref apply too (JSON Schema 2019-09 and later).
            siblings = {name: value for name, value in schema.items() if name != "$ref"}
            schema = {**target, **siblings}
            hops += 1
            if hops > 64:
                raise ValueError(f"$ref {reference!r} is circular.")
        return schema

    def build(self, schema: Mapping[str, Any] | bool, path: str, depth: int) -> Any:
        schema = self.resolve(schema)

        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            options = list(schema["enum"])
            if self.violation == "enum" and not self.violated:
                self.violated = True
                return _value_outside(options)
            return options[self.pick(path, len(options))]

        for keyword in ("anyOf", "oneOf"):
            if keyword in schema:
                # Prefer a non-null branch so that optional fields still carry a value.
                branches = [self.resolve(branch) for branch in schema[keyword]]
                non_null = [branch for branch in branches if branch.get("type") != "null"]
                candidates = non_null or branches
                branch = candidates[self.pick(path + "/" + keyword, len(candidates))]
                rest = {name: value for name, value in schema.items() if name != keyword}
                return self.build({**rest, **branch}, path, depth)
        if "allOf" in schema:
            return self.build(_merge_all_of(self, schema), path, depth)

        return self.build_typed(schema, _schema_type(schema), path, depth)

    def build_typed(self, schema: Mapping[str, Any], type_: str, path: str, depth: int) -> Any:
        if type_ == "object":
            return self.build_object(schema, path, depth)
        if type_ == "array":
            return self.build_array(schema, path, depth)
        if type_ == "null":
            return None

        if self.violation == "type" and not self.violated:
            self.violated = True
            return 0 if type_ == "string" else f"not-a-{type_}"

        if type_ == "integer":
            low, high = _integer_bounds(schema)
            return low + self.pick(path, high - low + 1)
        if type_ == "number":
            low, high = _number_bounds(schema)
            steps = 1000
            return low + (high - low) * (self.pick(path, steps) + 1) / (steps + 1)
        if type_ == "boolean":
            return self.pick(path, 2) == 1
        return self.build_string(schema, path)

    def build_object(self, schema: Mapping[str, Any], path: str, depth: int) -> dict[str, Any]:
        properties = schema.get("properties", {})
        required = list(schema.get("required", []))
        instance: dict[str, Any] = {}
        for name, subschema in properties.items():
            if depth >= MAX_SCHEMA_DEPTH and name not in required:
                continue
            instance[name] = self.build(subschema, f"{path}/{name}", depth + 1)
        for name in required:
            if name not in instance:
                instance[name] = self.build_string({}, f"{path}/{name}")
        return instance

    def build_array(self, schema: Mapping[str, Any], path: str, depth: int) -> list[Any]:
        prefix = list(schema.get("prefixItems", []))
        items = schema.get("items", {})
        count = max(int(schema.get("minItems", 0)), 1 if depth < MAX_SCHEMA_DEPTH else 0)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        if items is False:
            count = min(count, len(prefix))

        instance = []
        for index in range(count):
            subschema = prefix[index] if index < len(prefix) else items
            instance.append(self.build(subschema, f"{path}/{index}", depth + 1))
        return instance

    def build_string(self, schema: Mapping[str, Any], path: str) -> str:
        string_format = schema.get("format")
        if string_format == "date":
            text = "2026-01-01"
        elif string_format == "date-time":
            text = "2026-01-01T00:00:00Z"
        elif string_format == "uuid":
            digest = hashlib.sha256(self.key + path.encode()).hexdigest()
            text = f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"
        else:
            first = _WORDS[self.pick(path + "/0", len(_WORDS))]
            second = _WORDS[self.pick(path + "/1", len(_WORDS))]
            text = f"{first} {second}"

        minimum = int(schema.get("minLength", 0))
        while len(text) < minimum:
            text += " " + text
        if "maxLength" in schema:
            text = text[: int(schema["maxLength"])]
        return text


def _schema_type(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        non_null = [name for name in declared if name != "null"]
        return non_null[0] if non_null else "null"
    if isinstance(declared, str):
        return declared
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _merge_all_of(builder: _InstanceBuilder, schema: Mapping[str, Any]) -> dict[str, Any]:
    # NOTE: the merge is shallow, so a keyword set in two branches keeps the later value.
    merged = {name: value for name, value in schema.items() if name != "allOf"}
    for branch in schema["allOf"]:
        branch = builder.resolve(branch)
        properties = {**merged.get("properties", {}), **branch.get("properties", {})}
        required = list(dict.fromkeys([*merged.get("required", []), *branch.get("required", [])]))
        merged = {**merged, **branch, "properties": properties, "required": required}
    if not merged["properties"]:
        del merged["properties"]
    return merged


def _integer_bounds(schema: Mapping[str, Any]) -> tuple[int, int]:
    low = high = None
    if "minimum" in schema:
        low = math.ceil(schema["minimum"])
    if isinstance(schema.get("exclusiveMinimum"), int | float) and not isinstance(
        schema["exclusiveMinimum"], bool
    ):
        floor = math.floor(schema["exclusiveMinimum"]) + 1
        low = max(low if low is not None else -math.inf, floor)
    if "maximum" in schema:
        high = math.floor(schema["maximum"])
    if isinstance(schema.get("exclusiveMaximum"), int | float) and not isinstance(
        schema["exclusiveMaximum"], bool
    ):
        ceiling = math.ceil(schema["exclusiveMaximum"]) - 1
        high = min(high if high is not None else math.inf, ceiling)

    if low is None:
        low = 0 if high is None or high >= 0 else high - 100
    if high is None:
        high = low + 100
    if low > high:
        raise ValueError(f"No integer satisfies the bounds of {dict(schema)!r}.")
    return int(low), int(high)


def _number_bounds(schema: Mapping[str, Any]) -> tuple[float, float]:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    low = float(low) if isinstance(low, int | float) and not isinstance(low, bool) else None
    high = float(high) if isinstance(high, int | float) and not isinstance(high, bool) else None
    if low is None:
        low = 0.0 if high is None or high >= 0 else high - 1.0
    if high is None:
        high = low + 1.0
    return low, high


def _value_outside(options: Sequence[Any]) -> str:
    value = "not-a-valid-option"
    while value in options:
        value += "-x"
    return value


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class _Reply:
    """An HTTP response ready to send, after `delay_s` seconds."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class _RequestError(Exception):
    """A request the server rejects with an OpenAI-style error body."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.code = code
        self.headers = headers or {}


class LocalOpenAIServer:
    """Serve the OpenAI chat completions API on loopback, with seeded injected faults.

    For a request with a ``response_format`` of type ``json_schema``,
    ``POST /v1/chat/completions`` returns a JSON object that satisfies the
    schema. Every choice in it (enum value, integer, word) comes from a SHA-256
    of the canonical request body, so the same request always gets the same content.
    Without a schema the content is one plain sentence. If the last user
    message contains "think step by step", a sentence of reasoning comes before
    the content, and JSON content is then put in a fenced ``json`` block.
    ``GET /v1/models`` lists the model name and the snapshot.

    Parameters
    ----------
    host : {"127.0.0.1", "::1"}
        Loopback address to bind.
    port : int
        TCP port. 0 picks a free port.
    model : str
        Model name that requests must use, besides `snapshot`.
    snapshot : str
        Dated model snapshot reported in the response's ``model`` field.
    latency_s : float
        Seconds to wait before every response.
    seed : int
        Seed of the ``random.Random`` that draws faults.
    fail_500, fail_503, rate_limit_429, timeout, malformed_body, truncated_content, \
refusal, schema_violation : float
        Probability of each injected fault. Every request that passes the API
        key check, the rate limit and validation draws one uniform number per
        fault kind, in the order of :data:`FAULT_KINDS`, and gets the first
        fault whose draw falls below its rate. The faults a run sees thus
        depend only on the seed and the order of requests.
    timeout_sleep_s : float
        Seconds that a ``timeout`` fault waits before answering. Set the
        client timeout below it.
    retry_after_s : float
        ``Retry-After`` header of an injected 429, in seconds.
    requests_per_minute : int or None
        If set, a request beyond this many in the last 60 s gets 429 with a
        ``Retry-After`` of the seconds until the oldest leaves the window.
        Rejected requests do not count towards the limit.
    require_api_key : str or None
        If set, a request without ``Authorization: Bearer <require_api_key>``
        gets 401.
    record_requests : bool
        If false, `requests` stays empty. Set it for long benchmarks, because
        every recorded body is kept in memory with its base64 images.

    Attributes
    ----------
    request_count : int
        Number of POST requests to chat completions received, including
        rejected ones.
    requests : list of dict
        Copy of the parsed JSON bodies received, in order. Bodies that are not
        valid JSON are left out.
    responses_by_status : collections.Counter
        Copy of the count of responses sent, by HTTP status, on every path.
    faults : collections.Counter
        Copy of the count of injected faults, by fault kind.

    Notes
    -----
    A refusal is sent as ``message.content`` with ``finish_reason`` "stop",
    whereas OpenAI's structured outputs put refusals in ``message.refusal``.
    Streaming (``stream: true``) is rejected with 400. Image parts must be
    base64 ``data:`` URLs, because the server never fetches a remote URL.

    Examples
    --------
    >>> import http.client, json
    >>> with LocalOpenAIServer(seed=1) as server:
    ...     connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    ...     connection.request("POST", "/v1/chat/completions", body=json.dumps(
    ...         {"model": "local-vlm", "messages": [{"role": "user", "content": "Hello"}]}))
    ...     completion = json.loads(connection.getresponse().read())
    ...     connection.close()
    >>> completion["model"], completion["choices"][0]["finish_reason"]
    ('local-vlm-2026-12-01', 'stop')
    >>> server.request_count, server.responses_by_status[200]
    (1, 1)
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "local-vlm",
        snapshot: str = "local-vlm-2026-12-01",
        latency_s: float = 0.0,
        seed: int = 0,
        fail_500: float = 0.0,
        fail_503: float = 0.0,
        rate_limit_429: float = 0.0,
        timeout: float = 0.0,
        malformed_body: float = 0.0,
        truncated_content: float = 0.0,
        refusal: float = 0.0,
        schema_violation: float = 0.0,
        timeout_sleep_s: float = 30.0,
        retry_after_s: float = 1,
        requests_per_minute: int | None = None,
        require_api_key: str | None = None,
        record_requests: bool = True,
    ) -> None:
        fault_rates = {
            "fail_500": fail_500,
            "fail_503": fail_503,
            "rate_limit_429": rate_limit_429,
            "timeout": timeout,
            "malformed_body": malformed_body,
            "truncated_content": truncated_content,
            "refusal": refusal,
            "schema_violation": schema_violation,
        }
        _check(host in LOOPBACK_HOSTS, "host", "one of " + ", ".join(LOOPBACK_HOSTS), host)
        _check(
            isinstance(port, int) and 0 <= port <= 65535, "port", "an integer in [0, 65535]", port
        )
        for name, text in (("model", model), ("snapshot", snapshot)):
            _check(isinstance(text, str) and text != "", name, "a non-empty string", text)
        for name, rate in fault_rates.items():
            _check(_is_real(rate) and 0.0 <= rate <= 1.0, name, "a probability in [0, 1]", rate)
        for name, seconds in (
            ("latency_s", latency_s),
            ("timeout_sleep_s", timeout_sleep_s),
            ("retry_after_s", retry_after_s),
        ):
            _check(_is_real(seconds) and seconds >= 0, name, "a finite number >= 0", seconds)
        _check(
            requests_per_minute is None
            or (isinstance(requests_per_minute, int) and requests_per_minute > 0),
            "requests_per_minute",
            "a positive integer or None",
            requests_per_minute,
        )
        if require_api_key is not None and (
            not isinstance(require_api_key, str) or require_api_key == ""
        ):
            # The value itself is a secret, so the message names only its type.
            raise ValueError(
                "require_api_key must be a non-empty string or None, got "
                f"{type(require_api_key).__name__} of length {len(str(require_api_key))}."
            )

        self.host = host
        self.model = model
        self.snapshot = snapshot
        self.latency_s = float(latency_s)
        self.timeout_sleep_s = float(timeout_sleep_s)
        self.retry_after_s = retry_after_s
        self.requests_per_minute = requests_per_minute
        self.fault_rates = fault_rates
        self.record_requests = record_requests
        self._requested_port = port
        self._require_api_key = require_api_key
        self._system_fingerprint = "fp_" + hashlib.sha256(snapshot.encode()).hexdigest()[:10]

        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._request_count = 0
        self._requests: list[Any] = []
        self._responses_by_status: Counter[int] = Counter()
        self._faults: Counter[str] = Counter()
        self._admitted_at: deque[float] = deque()
        self._stopping = threading.Event()
        self._http_server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> LocalOpenAIServer:
        """Bind the socket and serve in a daemon thread.

        Returns the server itself, so ``server = LocalOpenAIServer().start()`` works.
        """
        if self._http_server is not None:
            raise RuntimeError("The server is already running. Call stop() before start().")
        self._stopping.clear()
        self._http_server = _HTTPServer(self, (self.host, self._requested_port))
        self._thread = threading.Thread(
            target=self._http_server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"LocalOpenAIServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("Local OpenAI-compatible server started at %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, wake handlers that are sleeping, and close the socket.

        Calling it on a stopped server does nothing.
        """
        if self._http_server is None:
            return
        url = self.base_url
        self._stopping.set()
        self._http_server.shutdown()
        self._http_server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http_server = None
        self._thread = None
        logger.info("Local OpenAI-compatible server at %s stopped", url)

    def __enter__(self) -> LocalOpenAIServer:
        if self._http_server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """TCP port the server is bound to."""
        if self._http_server is None:
            raise RuntimeError("The server is not running. Call start() or use it in a with block.")
        return int(self._http_server.server_address[1])

    @property
    def base_url(self) -> str:
        """URL to pass as ``base_url`` to ``openai.OpenAI``, ending in ``/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    # ----------------------------------------------------------------- counters

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._request_count

    @property
    def requests(self) -> list[Any]:
        with self._lock:
            return list(self._requests)

    @property
    def responses_by_status(self) -> Counter[int]:
        with self._lock:
            return Counter(self._responses_by_status)

    @property
    def faults(self) -> Counter[str]:
        with self._lock:
            return Counter(self._faults)

    def _record_status(self, status: int) -> None:
        with self._lock:
            self._responses_by_status[status] += 1

    # ----------------------------------------------------------------- request handling

    def _handle_models(self, path: str) -> _Reply:
        created = 1_700_000_000
        listing = [
            {"id": name, "object": "model", "created": created, "owned_by": "vlmstudy-local"}
            for name in (self.model, self.snapshot)
        ]
        if path == "/v1/models":
            return _json_reply(200, {"object": "list", "data": listing})
        for entry in listing:
            if path == "/v1/models/" + entry["id"]:
                return _json_reply(200, entry)
        message = f"No route for GET {path}. This server serves /v1/models."
        logger.debug("GET %s rejected with 404", path)
        return _error_reply(_RequestError(404, message, "invalid_request_error"))

    def _handle_chat(self, raw_body: bytes, authorization: str | None) -> _Reply:
        with self._lock:
            self._request_count += 1
            request_number = self._request_count

        try:
            body = json.loads(raw_body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            message = f"The request body is not valid JSON: {error}."
            logger.debug("Request %d rejected with 400: %s", request_number, message)
            return _error_reply(_RequestError(400, message, "invalid_request_error"))
        if self.record_requests:
            with self._lock:
                self._requests.append(body)

        try:
            self._check_api_key(authorization)
            self._admit_under_rate_limit()
            request = _parse_chat_request(body, accepted_models=(self.model, self.snapshot))
        except _RequestError as error:
            logger.debug("Request %d rejected with %d: %s", request_number, error.status, error)
            return _error_reply(error, delay_s=self.latency_s)

        fault = self._draw_fault()
        if fault is not None:
            logger.debug("Request %d gets injected fault %s", request_number, fault)
        return self._build_completion(body, request, request_number, fault)

    def _check_api_key(self, authorization: str | None) -> None:
        if self._require_api_key is None:
            return
        if authorization != f"Bearer {self._require_api_key}":
            raise _RequestError(
                401,
                "Incorrect or missing API key. Send the header 'Authorization: Bearer <key>' "
                "with the key that this server was started with.",
                "invalid_request_error",
                "invalid_api_key",
            )

    def _admit_under_rate_limit(self) -> None:
        if self.requests_per_minute is None:
            return
        now = time.monotonic()
        with self._lock:
            while self._admitted_at and now - self._admitted_at[0] >= RATE_WINDOW_S:
                self._admitted_at.popleft()
            if len(self._admitted_at) < self.requests_per_minute:
                self._admitted_at.append(now)
                return
            wait_s = max(1, math.ceil(self._admitted_at[0] + RATE_WINDOW_S - now))
        raise _RequestError(
            429,
            f"Rate limit reached for requests per minute (RPM): limit {self.requests_per_minute}. "
            f"Retry after {wait_s} s.",
            "requests",
            "rate_limit_exceeded",
            headers={"Retry-After": str(wait_s)},
        )

    def _draw_fault(self) -> str | None:
        with self._lock:
            draws = [self._rng.random() for _ in FAULT_KINDS]
            for kind, draw in zip(FAULT_KINDS, draws, strict=True):
                if draw < self.fault_rates[kind]:
                    self._faults[kind] += 1
                    return kind
        return None

    def _build_completion(
        self, body: Mapping[str, Any], request: _ChatRequest, request_number: int, fault: str | None
    ) -> _Reply:
        delay_s = self.latency_s
        if fault == "fail_500":
            message = "The server had an error while processing your request (injected fault)."
            return _error_reply(_RequestError(500, message, "server_error"), delay_s=delay_s)
        if fault == "fail_503":
            message = "The engine is currently overloaded, please try again later (injected fault)."
            return _error_reply(_RequestError(503, message, "server_error"), delay_s=delay_s)
        if fault == "rate_limit_429":
            retry_after = f"{self.retry_after_s:g}"
            error = _RequestError(
                429,
                f"Rate limit reached (injected fault). Retry after {retry_after} s.",
                "requests",
                "rate_limit_exceeded",
                headers={"Retry-After": retry_after},
            )
            return _error_reply(error, delay_s=delay_s)
        if fault == "timeout":
            delay_s += self.timeout_sleep_s

        # Every choice in the content comes from the canonical body, so the
        # same request always gets the same content.
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        request_key = hashlib.sha256(canonical.encode()).digest()

        choices = []
        completion_tokens = 0
        for index in range(request.choice_count):
            key = request_key if index == 0 else request_key + index.to_bytes(2, "big")
            content, finish_reason = self._build_content(request, key, fault)
            completion_tokens += _estimate_tokens(content)
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            )

        completion = {
            "id": f"chatcmpl-local-{request_number:08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.snapshot,
            "system_fingerprint": self._system_fingerprint,
            "choices": choices,
            "usage": {
                "prompt_tokens": request.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": request.prompt_tokens + completion_tokens,
            },
        }
        encoded = json.dumps(completion).encode()
        if fault == "malformed_body":
            # Cut inside the envelope, so the body is never valid JSON.
            encoded = encoded[: max(1, len(encoded) // 2)]
        return _Reply(200, encoded, {"Content-Type": "application/json"}, delay_s)

    def _build_content(
        self, request: _ChatRequest, key: bytes, fault: str | None
    ) -> tuple[str, str]:
        if fault == "refusal":
            return REFUSAL_TEXT, "stop"

        if request.schema is not None:
            instance = build_schema_instance(
                request.schema, key, violate=fault == "schema_violation"
            )
            answer = json.dumps(instance)
        elif request.json_object:
            answer = json.dumps({"answer": "The lesion is visible on the images provided."})
        else:
            answer = "The lesion is visible on the images provided."

        if request.step_by_step:
            reasoning = "Looking at each image in turn, I compare the lesion with the liver."
            if request.schema is not None or request.json_object:
                answer = f"{reasoning}\n\n```json\n{answer}\n```"
            else:
                answer = f"{reasoning} {answer}"

        if fault == "truncated_content":
            return answer[: max(1, len(answer) // 2)], "length"
        if request.max_tokens is not None and _estimate_tokens(answer) > request.max_tokens:
            return answer[: request.max_tokens * CHARS_PER_TOKEN], "length"
        return answer, "stop"


# --------------------------------------------------------------------------- request parsing


@dataclass(frozen=True)
class _ChatRequest:
    """Fields of a validated chat completions request that the content depends on."""

    schema: Mapping[str, Any] | None
    json_object: bool
    step_by_step: bool
    prompt_tokens: int
    choice_count: int
    max_tokens: int | None


def _parse_chat_request(body: Any, accepted_models: Sequence[str]) -> _ChatRequest:
    """Validate a chat completions body and extract the fields the content depends on."""
    if not isinstance(body, dict):
        raise _RequestError(400, "The request body must be a JSON object.", "invalid_request_error")
    model = body.get("model")
    if model not in accepted_models:
        raise _RequestError(
            404,
            f"The model {model!r} does not exist on this server. Use one of "
            f"{', '.join(repr(name) for name in accepted_models)}.",
            "invalid_request_error",
            "model_not_found",
        )
    if body.get("stream"):
        raise _RequestError(
            400,
            "Streaming is not supported by this local server. Omit 'stream' or set it to false.",
            "invalid_request_error",
        )

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _RequestError(400, "'messages' must be a non-empty list.", "invalid_request_error")
    text_chars = 0
    image_count = 0
    last_user_text = ""
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise _RequestError(
                400, f"messages[{index}] must be an object with a 'role'.", "invalid_request_error"
            )
        texts, images = _message_parts(message.get("content"), index)
        text_chars += sum(len(text) for text in texts)
        image_count += images
        if message["role"] == "user":
            last_user_text = " ".join(texts)

    choice_count = body.get("n", 1)
    if not isinstance(choice_count, int) or not 1 <= choice_count <= MAX_CHOICES:
        raise _RequestError(
            400,
            f"'n' must be an integer in [1, {MAX_CHOICES}], got {choice_count!r}.",
            "invalid_request_error",
        )
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise _RequestError(
            400,
            f"'max_completion_tokens' must be a positive integer, got {max_tokens!r}.",
            "invalid_request_error",
        )

    schema, json_object = _response_format(body.get("response_format"))
    return _ChatRequest(
        schema=schema,
        json_object=json_object,
        step_by_step=_COT_PHRASE in last_user_text.lower(),
        prompt_tokens=math.ceil(text_chars / CHARS_PER_TOKEN) + TOKENS_PER_IMAGE * image_count,
        choice_count=choice_count,
        max_tokens=max_tokens,
    )


def _message_parts(content: Any, index: int) -> tuple[list[str], int]:
    """Return the texts of a message's content and its number of images."""
    if content is None:
        return [], 0
    if isinstance(content, str):
        return [content], 0
    if not isinstance(content, list):
        raise _RequestError(
            400,
            f"messages[{index}].content must be a string or a list of parts.",
            "invalid_request_error",
        )

    texts: list[str] = []
    images = 0
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            _check_image_url(url, index)
            images += 1
        else:
            raise _RequestError(
                400,
                f"messages[{index}].content has a part of unsupported type {kind!r}. "
                "use 'text' or 'image_url'.",
                "invalid_request_error",
            )
    return texts, images


def _check_image_url(url: Any, index: int) -> None:
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        url_start = url[:40] if isinstance(url, str) else url
        raise _RequestError(
            400,
            f"messages[{index}] has an image URL {url_start!r} that is not a base64 data URL. "
            "This local server accepts only 'data:image/<type>;base64,...' and fetches nothing.",
            "invalid_request_error",
            "invalid_image_url",
        )
    try:
        base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except binascii.Error as error:
        raise _RequestError(
            400,
            f"messages[{index}] has an image whose base64 data is invalid: {error}.",
            "invalid_request_error",
            "invalid_image_url",
        ) from error


def _response_format(response_format: Any) -> tuple[Mapping[str, Any] | None, bool]:
    """Return the JSON schema of a ``response_format`` and whether it requests JSON."""
    if response_format is None:
        return None, False
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None, False
    if kind == "json_object":
        return None, True
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return schema, True
        raise _RequestError(
            400,
            "response_format.json_schema.schema must be a JSON object.",
            "invalid_request_error",
        )
    raise _RequestError(
        400,
        f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}.",
        "invalid_request_error",
    )


def _estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def _json_reply(status: int, payload: Any, delay_s: float = 0.0) -> _Reply:
    headers = {"Content-Type": "application/json"}
    return _Reply(status, json.dumps(payload).encode(), headers, delay_s)


def _error_reply(error: _RequestError, delay_s: float = 0.0) -> _Reply:
    details = {"message": str(error), "type": error.error_type, "param": None, "code": error.code}
    payload = {"error": details}
    reply = _json_reply(error.status, payload, delay_s)
    return _Reply(reply.status, reply.body, {**reply.headers, **error.headers}, delay_s)


# --------------------------------------------------------------------------- HTTP plumbing


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: LocalOpenAIServer, address: tuple[str, int]) -> None:
        self.owner = owner
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes, and Nagle's algorithm would hold the
    # second one back until the client's delayed ACK (at least 40 ms on Linux).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        # Silenced because the counters on LocalOpenAIServer already record the traffic.
        return

    def do_GET(self) -> None:
        self._send(self.server.owner._handle_models(self.path.split("?", 1)[0].rstrip("/")))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            message = (
                "The Content-Length header is missing. Chunked request bodies are not supported."
            )
            logger.debug("POST %s rejected with 411: no valid Content-Length", path)
            self._send(_error_reply(_RequestError(411, message, "invalid_request_error")))
            return
        raw_body = self.rfile.read(int(length))

        if path != "/v1/chat/completions":
            message = f"No route for POST {path}. This server serves /v1/chat/completions."
            logger.debug("POST %s rejected with 404", path)
            self._send(_error_reply(_RequestError(404, message, "invalid_request_error")))
            return
        self._send(self.server.owner._handle_chat(raw_body, self.headers.get("Authorization")))

    def _send(self, reply: _Reply) -> None:
        owner = self.server.owner
        if reply.delay_s > 0 and owner._stopping.wait(reply.delay_s):
            # Drop the response because stop() was called while the handler waited.
            self.close_connection = True
            return

        owner._record_status(reply.status)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError) as error:
            # After an injected timeout the client has usually closed the connection already.
            logger.debug(
                "Client closed the connection before a %d response: %s", reply.status, error
            )
            self.close_connection = True


# --------------------------------------------------------------------------- checks and CLI


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check(condition: bool, name: str, requirement: str, value: Any) -> None:
    if not condition:
        raise ValueError(f"{name} must be {requirement}, got {value!r}.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server in the foreground on 127.0.0.1 until interrupted; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m study.local_server",
        description="Serve an OpenAI-compatible chat completions API on 127.0.0.1 with "
        "optional injected faults, for manual tests and offline demos.",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one.")
    parser.add_argument("--model", default="local-vlm", help="Model name that requests must use.")
    parser.add_argument(
        "--snapshot", default="local-vlm-2026-12-01", help="Snapshot reported in responses."
    )
    parser.add_argument("--latency", type=float, default=0.0, help="Seconds before each response.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the fault draws.")
    for kind in FAULT_KINDS:
        parser.add_argument(
            "--" + kind.replace("_", "-"),
            type=float,
            default=0.0,
            help=f"Probability of the injected fault {kind} per request.",
        )
    parser.add_argument(
        "--timeout-sleep", type=float, default=30.0, help="Seconds a timeout fault waits."
    )
    parser.add_argument(
        "--retry-after", type=float, default=1, help="Retry-After of an injected 429, in seconds."
    )
    parser.add_argument(
        "--requests-per-minute", type=int, default=None, help="Limit per sliding 60 s window."
    )
    parser.add_argument(
        "--api-key-env",
        default=None,
        metavar="NAME",
        help="Environment variable that contains the API key that requests must send.",
    )
    options = parser.parse_args(argv)

    api_key = None
    if options.api_key_env is not None:
        api_key = os.environ.get(options.api_key_env)
        if not api_key:
            parser.error(f"--api-key-env: environment variable {options.api_key_env} is not set.")
    try:
        server = LocalOpenAIServer(
            port=options.port,
            model=options.model,
            snapshot=options.snapshot,
            latency_s=options.latency,
            seed=options.seed,
            timeout_sleep_s=options.timeout_sleep,
            retry_after_s=options.retry_after,
            requests_per_minute=options.requests_per_minute,
            require_api_key=api_key,
            **{kind: getattr(options, kind) for kind in FAULT_KINDS},
        )
    except ValueError as error:
        parser.error(str(error))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server.start()
    except OSError as error:
        parser.error(f"could not bind 127.0.0.1:{options.port}: {error}; choose another --port.")
    print(f"Serving at {server.base_url}; press Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
