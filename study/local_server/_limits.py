"""Sliding-window rate limits of the local server: requests and tokens per minute.

This private module contains :class:`_WindowLimits`, which admits a request
when both its count and its tokens fit in the last 60 s. Otherwise it raises
the 429 :class:`~study.local_server._protocol._RequestError` that OpenAI sends,
with a ``Retry-After`` of the seconds until enough leaves the window.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from study.local_server._protocol import _RequestError

RATE_WINDOW_S = 60.0


class _WindowLimits:
    """Requests-per-minute and tokens-per-minute limits over a sliding 60 s window."""

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._lock = threading.Lock()
        self._admitted: deque[tuple[float, int]] = deque()
        self._tokens_in_window = 0

    def admit(self, tokens: int) -> None:
        """Count a request of ``tokens`` tokens, or raise a 429 when it does not fit."""
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            return
        now = time.monotonic()
        with self._lock:
            while self._admitted and now - self._admitted[0][0] >= RATE_WINDOW_S:
                self._tokens_in_window -= self._admitted.popleft()[1]
            too_many = (
                self.requests_per_minute is not None
                and len(self._admitted) >= self.requests_per_minute
            )
            too_large = (
                self.tokens_per_minute is not None
                and self._admitted
                and self._tokens_in_window + tokens > self.tokens_per_minute
            )
            if not too_many and not too_large:
                self._admitted.append((now, tokens))
                self._tokens_in_window += tokens
                return
            wait_s = self._wait_s(now, tokens, bool(too_many))
        if too_many:
            limit = f"requests per minute (RPM): limit {self.requests_per_minute}"
        else:
            limit = f"tokens per minute (TPM): limit {self.tokens_per_minute}, requested {tokens}"
        raise _RequestError(
            429,
            f"Rate limit reached for {limit}. Retry after {wait_s} s.",
            "requests" if too_many else "tokens",
            "rate_limit_exceeded",
            headers={"Retry-After": str(wait_s)},
        )

    def _wait_s(self, now: float, tokens: int, too_many: bool) -> int:
        if too_many:
            return max(1, math.ceil(self._admitted[0][0] + RATE_WINDOW_S - now))
        # Wait until enough of the oldest requests leave the window for these tokens to fit.
        freed = 0
        needed = self._tokens_in_window + tokens - (self.tokens_per_minute or 0)
        for admitted_at, admitted_tokens in self._admitted:
            freed += admitted_tokens
            if freed >= needed:
                return max(1, math.ceil(admitted_at + RATE_WINDOW_S - now))
        return math.ceil(RATE_WINDOW_S)
