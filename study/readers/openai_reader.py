"""A reader for any OpenAI-compatible chat-completions endpoint.

Images go as base64 PNG data URLs; the answer is requested as structured
output with the JSON Schema from :func:`study.answers.answer_schema`. The
``openai`` client retries connection errors, timeouts, 408, 409, 429 and 5xx
responses with exponential backoff and honours ``Retry-After``; a call that
still fails raises :class:`ReaderCallError`, which the sweep records as an
``infra_failure`` and never caches. The API key is read from the environment
variable the protocol names and is never logged or stored.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import openai

from study.answers import answer_schema
from study.errors import UserInputError
from study.protocol import OpenAIReaderSpec
from study.readers.base import ReaderCallError, ReaderResponse, ReadRequest

logger = logging.getLogger(__name__)


class OpenAIReader:
    """Chat completions through the ``openai`` package; see the module docstring."""

    def __init__(self, spec: OpenAIReaderSpec) -> None:
        self.name = spec.name
        self.spec = spec
        key = os.environ.get(spec.api_key_env)
        if not key:
            raise UserInputError(
                f"reader {spec.name!r}: the environment variable {spec.api_key_env} is not set; "
                "export it with the endpoint's API key (api_key_env names the variable)."
            )
        self._client = openai.OpenAI(
            base_url=spec.base_url,
            api_key=key,
            max_retries=spec.max_retries,
            timeout=spec.timeout_s,
        )

    def identity(self) -> dict[str, Any]:
        """Return the endpoint and model, which fix where the request goes."""
        return {"kind": "openai", "base_url": self.spec.base_url, "model": self.spec.model}

    def read(self, request: ReadRequest) -> ReaderResponse:
        """Send one chat-completions request and return its text and usage."""
        decoding = request.decoding
        response_format = {
            "type": "json_schema",
            "json_schema": {
                "name": "lesion_answer",
                "schema": answer_schema(
                    request.features, reasoning=request.strategy == "chain_of_thought"
                ),
                "strict": False,
            },
        }
        started = time.perf_counter()
        try:
            completion = self._client.chat.completions.create(
                model=self.spec.model,
                messages=request.prompt.openai_messages(detail=self.spec.image_detail),
                temperature=decoding.temperature,
                top_p=decoding.top_p,
                max_tokens=decoding.max_tokens,
                seed=decoding.seed,
                response_format=response_format,
            )
        except (openai.APIError, json.JSONDecodeError) as error:
            # A 200 response whose body is not JSON surfaces as JSONDecodeError, not APIError.
            logger.warning(
                "reader %s: call for lesion %s failed: %s",
                self.name,
                request.lesion_id,
                type(error).__name__,
            )
            raise ReaderCallError(f"{type(error).__name__}: {error}") from error
        latency = time.perf_counter() - started

        if not completion.choices:
            raise ReaderCallError("the response has no choices")
        text = completion.choices[0].message.content or ""
        usage = completion.usage
        return ReaderResponse(
            text=text,
            model_snapshot=completion.model or self.spec.model,
            latency_s=latency,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            raw={
                "id": completion.id,
                "system_fingerprint": completion.system_fingerprint,
                "finish_reason": completion.choices[0].finish_reason,
            },
        )
