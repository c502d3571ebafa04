"""What every reader receives and returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as TypingProtocol

from study.prompts import Exemplar, Prompt
from study.protocol import DecodingSpec


@dataclass(frozen=True)
class ReadRequest:
    """One lesion to read under one cell's settings.

    ``truth`` is filled only for the ``simulated`` reader, which draws its
    answers from it; model readers see only ``prompt``.
    """

    lesion_id: str
    features: tuple[str, ...]
    sequences: tuple[str, ...]
    strategy: str
    replicate: int
    prompt: Prompt
    images: tuple[Any, ...]
    exemplars: tuple[Exemplar, ...] = ()
    truth: Mapping[str, str] | None = None
    decoding: DecodingSpec = field(default_factory=DecodingSpec)


@dataclass(frozen=True)
class ReaderResponse:
    """What a reader returned for one request."""

    text: str
    model_snapshot: str
    latency_s: float
    input_tokens: int = 0
    output_tokens: int = 0
    raw: dict[str, Any] | None = None
    refusal: str | None = None
    """The ``message.refusal`` text an OpenAI-compatible endpoint sent in place of content."""


class ReaderCallError(Exception):
    """A call that failed for reasons outside the answer: network, server or rate limit.

    The sweep records it as an ``infra_failure`` attempt and never caches it.
    ``kind`` is one of :data:`study.store.ATTEMPT_KINDS`; ``retryable`` says
    whether the same request may succeed when sent again; ``retry_after_s`` is
    the server's ``Retry-After``, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "reader_error",
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class Reader(TypingProtocol):
    """The interface of every reader kind."""

    name: str

    def identity(self) -> dict[str, Any]:
        """Return the settings that make this reader's answers differ (no secrets)."""

    def read(self, request: ReadRequest) -> ReaderResponse:
        """Read one lesion and return the response text with its usage."""
