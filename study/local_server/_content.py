"""Completions and injected faults of the local server.

This private module contains :func:`_build_completion`, which turns a
validated request and the fault it drew into the reply to send. The reply is
an error body, a completion whose content satisfies the request's JSON schema,
or a completion broken in the way the fault names.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from study.local_server._protocol import (
    CHARS_PER_TOKEN,
    _ChatRequest,
    _error_reply,
    _estimate_tokens,
    _Reply,
    _RequestError,
)
from study.schema_instance import build_schema_instance

REFUSAL_TEXT = "I'm sorry, but I can't provide a medical diagnosis from these images."
"""Text of an injected refusal."""


@dataclass(frozen=True)
class _Settings:
    """The server settings a completion depends on."""

    snapshot: str
    system_fingerprint: str
    latency_s: float
    timeout_sleep_s: float
    retry_after_s: float


def _build_completion(
    settings: _Settings,
    body: Mapping[str, Any],
    request: _ChatRequest,
    request_number: int,
    fault: str | None,
) -> _Reply:
    delay_s = settings.latency_s
    if fault == "fail_500":
        message = "The server had an error while processing your request (injected fault)."
        return _error_reply(_RequestError(500, message, "server_error"), delay_s=delay_s)
    if fault == "fail_503":
        message = "The engine is currently overloaded, please try again later (injected fault)."
        return _error_reply(_RequestError(503, message, "server_error"), delay_s=delay_s)
    if fault == "rate_limit_429":
        retry_after = f"{settings.retry_after_s:g}"
        error = _RequestError(
            429,
            f"Rate limit reached (injected fault). Retry after {retry_after} s.",
            "requests",
            "rate_limit_exceeded",
            headers={"Retry-After": retry_after},
        )
        return _error_reply(error, delay_s=delay_s)
    if fault == "connection_reset":
        return _Reply(0, b"", {}, delay_s, reset=True)
    if fault == "timeout":
        delay_s += settings.timeout_sleep_s

    # Every choice in the content comes from the canonical body, so the
    # same request always gets the same content.
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    request_key = hashlib.sha256(canonical.encode()).digest()

    choices = []
    completion_tokens = 0
    for index in range(request.choice_count):
        key = request_key if index == 0 else request_key + index.to_bytes(2, "big")
        if fault == "refusal" and request.schema is not None:
            # Structured output puts a refusal in message.refusal, with no content.
            message = {"role": "assistant", "content": None, "refusal": REFUSAL_TEXT}
            finish_reason = "stop"
            completion_tokens += _estimate_tokens(REFUSAL_TEXT)
        else:
            content, finish_reason = _build_content(request, key, fault)
            message = {"role": "assistant", "content": content, "refusal": None}
            completion_tokens += _estimate_tokens(content)
        choices.append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}
        )

    completion = {
        "id": f"chatcmpl-local-{request_number:08d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": settings.snapshot,
        "system_fingerprint": settings.system_fingerprint,
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


def _build_content(request: _ChatRequest, key: bytes, fault: str | None) -> tuple[str, str]:
    if fault == "refusal":
        return REFUSAL_TEXT, "stop"

    if request.schema is not None:
        instance = build_schema_instance(request.schema, key, violate=fault == "schema_violation")
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
