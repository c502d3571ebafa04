"""An OpenAI-compatible chat completions server on loopback, with injected faults.

Tests, benchmarks and offline demos point the ``openai`` client at
:class:`LocalOpenAIServer` in place of a paid endpoint. The server builds
structured content from the request's JSON schema, deterministically from a
SHA-256 of the request body. It can also inject the failures that a real
endpoint shows, at seeded and reproducible rates: 5xx errors, 429 with
``Retry-After``, timeouts, connection resets, malformed or truncated bodies,
refusals and schema violations. It can also enforce requests-per-minute and
tokens-per-minute limits, and reject structured output.

It uses the standard library only and binds loopback addresses only. Run
``python -m study.local_server --port 8000`` to serve in the foreground.
"""

from study.local_server._cli import main
from study.local_server._content import REFUSAL_TEXT
from study.local_server._server import FAULT_KINDS, LocalOpenAIServer
from study.schema_instance import build_schema_instance

__all__ = [
    "FAULT_KINDS",
    "REFUSAL_TEXT",
    "LocalOpenAIServer",
    "build_schema_instance",
    "main",
]
