"""A reader for any OpenAI-compatible chat-completions endpoint, through ``openai.AsyncOpenAI``.

Images go as base64 PNG data URLs with the configured ``detail``. The answer
is requested as structured output with the JSON Schema from
:func:`study.answers.answer_schema`. With ``structured_output: auto``, an
endpoint that rejects ``response_format`` with a 400 switches the reader to
prompt-only output: the schema is appended to the prompt and no
``response_format`` is sent again. The client's own retries are off, because
:mod:`study.calls` paces, retries and logs every attempt. The API key is read
from the environment variable the protocol names; it is removed from every
error message before that message is logged or stored.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import openai

from study import calls
from study.answers import answer_schema
from study.errors import UserInputError
from study.protocol import OpenAIReaderSpec
from study.readers.base import ReaderCallError, ReaderResponse, ReadRequest

logger = logging.getLogger(__name__)


@lru_cache(maxsize=64)
def _schema(features: tuple[str, ...], reasoning: bool) -> dict[str, Any]:
    # Building the pydantic model behind the schema takes milliseconds, so it is built once.
    return answer_schema(features, reasoning=reasoning)


_FORMAT_WORDS = ("response_format", "json_schema", "structured output", "guided_json")


def retry_after_seconds(headers: Any) -> float | None:
    """Read ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date) from headers.

    Examples
    --------
    >>> retry_after_seconds({"retry-after": "2"}), retry_after_seconds({"retry-after-ms": "250"})
    (2.0, 0.25)
    >>> retry_after_seconds({}) is None
    True
    """
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        moment = email.utils.parsedate_to_datetime(value) if value else None
        if moment is None:
            return None
        return max(0.0, moment.timestamp() - time.time())


class OpenAIReader:
    """Chat completions through ``openai.AsyncOpenAI``; see the module docstring.

    Parameters
    ----------
    spec
        The protocol's reader entry.
    require_key
        When true (the default), a missing key environment variable raises
        :class:`UserInputError` at once; a dry run passes false.
    """

    def __init__(self, spec: OpenAIReaderSpec, *, require_key: bool = True) -> None:
        self.name = spec.name
        self.spec = spec
        self._key = os.environ.get(spec.api_key_env) or None
        if require_key and self._key is None:
            raise UserInputError(
                f"reader {spec.name!r}: the environment variable {spec.api_key_env} is not set; "
                "export it with the endpoint's API key (api_key_env names the variable)."
            )
        self.policy = calls.CallPolicy(
            max_concurrency=spec.max_concurrency,
            requests_per_minute=spec.requests_per_minute,
            tokens_per_minute=spec.tokens_per_minute,
            max_retries=spec.max_retries,
            backoff_initial_s=spec.backoff_initial_s,
            backoff_max_s=spec.backoff_max_s,
            seed=calls.stable_seed(spec.name),
        )
        self.limiter = calls.RateLimiter(spec.requests_per_minute, spec.tokens_per_minute)
        self.structured = spec.structured_output != "prompt"

    def identity(self) -> dict[str, Any]:
        """Return the endpoint and model, which fix where the request goes."""
        return {"kind": "openai", "base_url": self.spec.base_url, "model": self.spec.model}

    @asynccontextmanager
    async def open_client(self):
        """Yield an ``AsyncOpenAI`` client for the running event loop, closed afterwards."""
        client = openai.AsyncOpenAI(
            base_url=self.spec.base_url,
            api_key=self._key or "not-set",
            max_retries=0,
            timeout=self.spec.timeout_s,
        )
        try:
            yield client
        finally:
            await client.close()

    def _redact(self, text: str) -> str:
        if self._key:
            text = text.replace(self._key, "[api key removed]")
        return text

    def _messages(self, request: ReadRequest, structured: bool) -> list[dict[str, Any]]:
        messages = request.prompt.openai_messages(detail=self.spec.image_detail)
        if not structured:
            schema = _schema(tuple(request.features), request.prompt.asks_reasoning)
            instruction = (
                "Reply with one JSON object that follows this JSON Schema, and nothing after it:\n"
                + json.dumps(schema, sort_keys=True)
            )
            content = messages[-1]["content"]
            messages[-1] = {
                **messages[-1],
                "content": [*content, {"type": "text", "text": instruction}],
            }
        return messages

    async def attempt(self, client: openai.AsyncOpenAI, request: ReadRequest) -> ReaderResponse:
        """Send one chat-completions request; raise :class:`ReaderCallError` when it fails."""
        decoding = request.decoding
        structured = self.structured
        options: dict[str, Any] = {}
        if structured:
            options["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "lesion_answer",
                    "schema": _schema(tuple(request.features), request.prompt.asks_reasoning),
                    "strict": False,
                },
            }
        if decoding.seed is not None:
            options["seed"] = decoding.seed

        started = time.perf_counter()
        try:
            # The messages and the schema go in extra_body, which the client sends as given:
            # as typed parameters, openai 3.60 walks every nested part of them, which cost
            # about 25 ms of CPU per call with four images (benchmarks/calls.py). The raw
            # response is read as JSON here, and kept whole in the store.
            http_response = await client.chat.completions.with_raw_response.create(
                model=self.spec.model,
                messages=[],
                temperature=decoding.temperature,
                top_p=decoding.top_p,
                max_tokens=decoding.max_tokens,
                extra_body={"messages": self._messages(request, structured), **options},
            )
        except openai.APITimeoutError as error:
            raise ReaderCallError(
                f"timed out after {self.spec.timeout_s} s", kind="timeout", retryable=True
            ) from error
        except openai.APIConnectionError as error:
            raise ReaderCallError(
                self._redact(f"connection failed: {error}"), kind="connection_error", retryable=True
            ) from error
        except openai.APIStatusError as error:
            raise self._status_error(error, structured) from error
        latency = time.perf_counter() - started

        try:
            raw = json.loads(http_response.content)
            message = raw["choices"][0]["message"]
            text = message.get("content") or ""
            refusal = message.get("refusal") or None
            usage = raw.get("usage") or {}
            input_tokens = int(usage.get("prompt_tokens") or 0)
            output_tokens = int(usage.get("completion_tokens") or 0)
            if not isinstance(text, str) or not isinstance(refusal, str | None):
                raise TypeError("message content or refusal is not a string")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            # A 200 response whose body is not a chat completion: cut off, not JSON, or empty.
            raise ReaderCallError(
                f"malformed response body: {type(error).__name__}: {error}",
                kind="malformed_body",
                status=200,
                retryable=True,
            ) from error

        raw["vlmstudy_structured_output"] = structured
        return ReaderResponse(
            text=text,
            model_snapshot=str(raw.get("model") or self.spec.model),
            latency_s=latency,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            raw=raw,
            refusal=refusal,
        )

    def _status_error(self, error: openai.APIStatusError, structured: bool) -> ReaderCallError:
        status = error.status_code
        message = self._redact(f"HTTP {status}: {error.message}")
        if status == 429:
            return ReaderCallError(
                message,
                kind="rate_limited",
                status=status,
                retryable=True,
                retry_after_s=retry_after_seconds(error.response.headers),
            )
        if status == 408 or status >= 500:
            return ReaderCallError(
                message,
                kind="http_error",
                status=status,
                retryable=True,
                retry_after_s=retry_after_seconds(error.response.headers),
            )
        rejects_format = status in (400, 422) and any(
            word in str(error.message).lower() for word in _FORMAT_WORDS
        )
        if structured and rejects_format and self.spec.structured_output == "auto":
            self.structured = False
            logger.warning(
                "reader %s: the endpoint rejected response_format (%s); asking for JSON in the "
                "prompt from now on",
                self.name,
                message,
            )
            return ReaderCallError(message, kind="format_rejected", status=status)
        return ReaderCallError(message, kind="http_error", status=status)

    def read(self, request: ReadRequest) -> ReaderResponse:
        """Read one lesion with pacing and retries, without a store; raise ReaderCallError."""
        outcome = calls.call_all(self, [calls.PendingCall("", "", request, 0)])[0]
        if outcome.response is None:
            raise ReaderCallError(outcome.error or "the call failed")
        return outcome.response
