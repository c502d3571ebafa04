"""Parsing of chat completions requests and the replies the local server sends.

This private module contains the request checks that turn a JSON body into a
:class:`_ChatRequest` or raise :class:`_RequestError`, the token estimates, and
the :class:`_Reply` record with the OpenAI-style JSON and error bodies built
from it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CHARS_PER_TOKEN = 4
TOKENS_PER_IMAGE = 85  # an estimate: the fixed count for one detail "low" image on GPT-4o
MAX_CHOICES = 16
_COT_PHRASE = "think step by step"


@dataclass(frozen=True)
class _Reply:
    """An HTTP response ready to send, after `delay_s` seconds."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    reset: bool = False
    """Close the connection with a TCP reset in place of a response."""


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
