"""The :class:`LocalOpenAIServer` class: configuration, lifecycle, counters and faults.

This private module contains the server object that tests and demos start,
with its checks of the arguments, the seeded fault draws, the rate limit and
the building of completions. Request parsing lives in
:mod:`study.local_server._protocol` and the socket handling in
:mod:`study.local_server._http`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import threading
from collections import Counter
from types import TracebackType
from typing import Any

from study.local_server._content import _build_completion, _Settings
from study.local_server._http import _HTTPServer
from study.local_server._limits import _WindowLimits
from study.local_server._protocol import (
    _error_reply,
    _json_reply,
    _parse_chat_request,
    _Reply,
    _RequestError,
)

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
    "connection_reset",
)
"""Injectable faults, in the order in which each request draws them."""


LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1")


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
refusal, schema_violation, connection_reset : float
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
    tokens_per_minute : int or None
        If set, a request whose tokens (its prompt estimate plus its
        ``max_tokens``, as OpenAI counts them against the limit) would take
        the last 60 s over this many gets 429 with a ``Retry-After``.
    reject_response_format : bool
        If true, a request with a ``json_schema`` response format gets 400,
        as an endpoint without structured output answers.
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
    A refusal to a request with a JSON schema is sent as OpenAI's structured
    outputs send it, in ``message.refusal`` with no content; to any other
    request, as ``message.content``. A ``connection_reset`` fault closes the
    connection with a TCP reset and sends nothing.
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
        connection_reset: float = 0.0,
        timeout_sleep_s: float = 30.0,
        retry_after_s: float = 1,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        reject_response_format: bool = False,
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
            "connection_reset": connection_reset,
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
        for name, limit in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            _check(
                limit is None or (isinstance(limit, int) and limit > 0),
                name,
                "a positive integer or None",
                limit,
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
        self.tokens_per_minute = tokens_per_minute
        self.reject_response_format = reject_response_format
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
        self._limits = _WindowLimits(requests_per_minute, tokens_per_minute)
        self._settings = _Settings(
            snapshot, self._system_fingerprint, self.latency_s, self.timeout_sleep_s, retry_after_s
        )
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
            request = _parse_chat_request(body, accepted_models=(self.model, self.snapshot))
            self._limits.admit(request.prompt_tokens + (request.max_tokens or 0))
            if self.reject_response_format and request.schema is not None:
                raise _RequestError(
                    400,
                    "response_format of type 'json_schema' is not supported by this model. "
                    "Omit response_format and ask for JSON in the prompt.",
                    "invalid_request_error",
                    "unsupported_response_format",
                )
        except _RequestError as error:
            logger.debug("Request %d rejected with %d: %s", request_number, error.status, error)
            return _error_reply(error, delay_s=self.latency_s)

        fault = self._draw_fault()
        if fault is not None:
            logger.debug("Request %d gets injected fault %s", request_number, fault)
        return _build_completion(self._settings, body, request, request_number, fault)

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

    def _draw_fault(self) -> str | None:
        with self._lock:
            draws = [self._rng.random() for _ in FAULT_KINDS]
            for kind, draw in zip(FAULT_KINDS, draws, strict=True):
                if draw < self.fault_rates[kind]:
                    self._faults[kind] += 1
                    return kind
        return None


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check(condition: bool, name: str, requirement: str, value: Any) -> None:
    if not condition:
        raise ValueError(f"{name} must be {requirement}, got {value!r}.")
