"""Calling model endpoints: pacing, retries, attempt logging and the budget cap.

:func:`call_all` sends a batch of requests through one reader's async client.
Requests start no faster than the reader's declared requests-per-minute and
tokens-per-minute limits allow (:class:`RateLimiter` spaces starts evenly
rather than letting a burst hit the server's window), with at most
``max_concurrency`` in flight. A ``Retry-After`` pauses every start of that
reader. Only 408, 429, 5xx, timeouts, connection errors and malformed
response bodies are retried, at most ``max_retries`` times. Each retry waits a
full-jitter exponential backoff drawn from a seeded generator. A call that
still fails has the outcome ``infra_failure``. Every HTTP attempt, successful or not, is one
row of the store's ``attempts`` table, so the number of requests an endpoint
received equals the attempts logged. Failed attempts are never cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from study import store as response_store
from study.errors import UserInputError
from study.readers.base import ReaderCallError, ReaderResponse, ReadRequest

if TYPE_CHECKING:
    from study.store import Attempt, ResponseStore

logger = logging.getLogger(__name__)

WINDOW_MARGIN_S = 0.5
"""Seconds added to each 60 s rate window, so network jitter cannot push one request too many
into the server's window. At 1,200 requests per minute it costs under 1 % of the bound."""

MAX_RETRY_AFTER_S = 600.0
"""The longest ``Retry-After`` honoured; a longer one is cut to this."""


@dataclass(frozen=True)
class CallPolicy:
    """Pacing and retry settings of one reader's calls.

    Examples
    --------
    >>> CallPolicy(requests_per_minute=1200).interval_s
    0.050416666666666665
    """

    max_concurrency: int = 4
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_retries: int = 4
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    seed: int = 0

    @property
    def interval_s(self) -> float:
        """Seconds between request starts that the requests-per-minute limit allows."""
        if self.requests_per_minute is None:
            return 0.0
        return (60.0 + WINDOW_MARGIN_S) / self.requests_per_minute

    def backoff_s(self, request_sha256: str, attempt: int) -> float:
        """Return the wait before retry ``attempt`` (1 for the first retry): full jitter.

        The wait is uniform on ``[0, min(backoff_max_s, backoff_initial_s * 2**(attempt-1))]``,
        drawn from a generator seeded by the policy's seed, the request and the attempt.

        Examples
        --------
        >>> policy = CallPolicy(backoff_initial_s=1.0, backoff_max_s=8.0)
        >>> 0.0 <= policy.backoff_s("ab" * 32, 10) <= 8.0
        True
        >>> policy.backoff_s("ab" * 32, 2) == policy.backoff_s("ab" * 32, 2)
        True
        """
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** (attempt - 1))
        entropy = int(request_sha256[:16], 16) if request_sha256 else 0
        rng = np.random.default_rng([self.seed, entropy, attempt])
        return float(rng.uniform(0.0, ceiling))


class RateLimiter:
    """Even spacing of request starts from declared per-minute limits; safe across threads.

    Each call to :meth:`reserve` books the next free start time and returns
    how long the caller must wait for it, so callers in threads or event
    loops share one schedule. Tokens are booked the same way against the
    tokens-per-minute limit. :meth:`pause` moves every later start past a
    server's ``Retry-After``.

    NOTE: the schedule is per process; several worker processes that share
    one endpoint's limit should each declare their share of it.

    Examples
    --------
    >>> clock = iter([0.0, 0.0, 0.0]).__next__
    >>> limiter = RateLimiter(requests_per_minute=120, tokens_per_minute=None, clock=clock)
    >>> limiter.reserve(100), round(limiter.reserve(100), 4), round(limiter.reserve(100), 4)
    (0.0, 0.5042, 1.0083)
    """

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.request_interval_s = (
            (60.0 + WINDOW_MARGIN_S) / requests_per_minute if requests_per_minute else 0.0
        )
        self.seconds_per_token = (
            (60.0 + WINDOW_MARGIN_S) / tokens_per_minute if tokens_per_minute else 0.0
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._next_request = float("-inf")
        self._next_token = float("-inf")
        self._paused_until = float("-inf")

    def reserve(self, tokens: int) -> float:
        """Book the next start for a request of ``tokens`` tokens; return seconds to wait."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_request, self._next_token, self._paused_until)
            self._next_request = start + self.request_interval_s
            self._next_token = start + tokens * self.seconds_per_token
            return start - now

    def pause(self, seconds: float) -> None:
        """Hold back every start for ``seconds`` from now, as a ``Retry-After`` header requests."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


class Budget:
    """A cap on the cost of new calls in one run; safe across threads.

    A call books its largest possible cost (its input estimate and
    ``max_tokens`` of output) before it is sent and settles the actual cost
    when it returns, so calls in flight together cannot overshoot the cap.

    Examples
    --------
    >>> budget = Budget(1.0)
    >>> budget.reserve(0.6), budget.reserve(0.6)
    (True, False)
    >>> budget.settle(0.6, 0.2)
    >>> budget.reserve(0.6), round(budget.spent_usd, 2)
    (True, 0.2)
    """

    def __init__(self, max_cost_usd: float | None) -> None:
        self.max_cost_usd = max_cost_usd
        self.spent_usd = 0.0
        self.exhausted = False
        self._booked_usd = 0.0
        self._lock = threading.Lock()

    def reserve(self, usd: float) -> bool:
        """Book ``usd`` for a call about to be sent; return False once the cap would be passed."""
        with self._lock:
            if self.max_cost_usd is None:
                return True
            if self.spent_usd + self._booked_usd + usd > self.max_cost_usd:
                self.exhausted = True
                return False
            self._booked_usd += usd
            return True

    def settle(self, booked_usd: float, actual_usd: float) -> None:
        """Replace a booking with the call's actual cost (0 for a failed attempt)."""
        with self._lock:
            if self.max_cost_usd is not None:
                self._booked_usd -= booked_usd
            self.spent_usd += actual_usd


class BudgetExhausted(UserInputError):
    """The run stopped starting new calls because the budget cap was reached."""


class AsyncReader(Protocol):
    """A reader whose calls go through :func:`call_all`."""

    name: str
    policy: CallPolicy
    limiter: RateLimiter

    def open_client(self) -> Any:
        """Return an async context manager for a client bound to the running event loop."""

    async def attempt(self, client: Any, request: ReadRequest) -> ReaderResponse:
        """Send one HTTP request; raise :class:`ReaderCallError` when it fails."""


@dataclass(frozen=True)
class PendingCall:
    """One request to send, with its key and what it may cost."""

    request_sha256: str
    request_json: str
    request: ReadRequest
    estimated_tokens: int
    max_cost_usd: float = 0.0


@dataclass(frozen=True)
class CallOutcome:
    """The end of one call: its stored response, or the last error after its attempts."""

    request_sha256: str
    response: ReaderResponse | None
    attempts: int
    error: str | None = None
    not_sent: bool = False


def _attempt_row(
    call: PendingCall, number: int, reader: str, error: ReaderCallError | None, latency: float
) -> Attempt:
    if error is None:
        return response_store.Attempt(
            call.request_sha256, number, "ok", 200, False, latency, "", reader
        )
    return response_store.Attempt(
        call.request_sha256,
        number,
        error.kind,
        error.status,
        error.retryable,
        latency,
        str(error),
        reader,
    )


async def _call_one(
    reader: AsyncReader,
    client: Any,
    call: PendingCall,
    semaphore: asyncio.Semaphore,
    store: ResponseStore | None,
    reader_kind: str,
    budget: Budget | None,
    cost_of: Callable[[ReaderResponse], float],
) -> CallOutcome:
    policy = reader.policy
    number = 0
    retries = 0
    last_error: ReaderCallError | None = None
    while True:
        if budget is not None and not budget.reserve(call.max_cost_usd):
            return CallOutcome(call.request_sha256, None, number, "budget cap reached", True)
        number += 1

        async with semaphore:
            delay = reader.limiter.reserve(call.estimated_tokens)
            if delay > 0:
                await asyncio.sleep(delay)
            started = time.perf_counter()
            try:
                response = await reader.attempt(client, call.request)
            except ReaderCallError as error:
                last_error = error
                response = None
            latency = time.perf_counter() - started

        if response is not None:
            if budget is not None:
                budget.settle(call.max_cost_usd, cost_of(response))
            if store is not None:
                row = _attempt_row(call, number, reader.name, None, latency)
                store.put(call.request_sha256, reader_kind, call.request_json, response, row)
            return CallOutcome(call.request_sha256, response, number)

        assert last_error is not None  # set in the except branch above
        if budget is not None:
            budget.settle(call.max_cost_usd, 0.0)
        if store is not None:
            store.log_attempt(_attempt_row(call, number, reader.name, last_error, latency))

        if last_error.retry_after_s is not None:
            # The server asked every client of this endpoint to wait, not only this request.
            reader.limiter.pause(min(last_error.retry_after_s, MAX_RETRY_AFTER_S))
        if last_error.kind == "format_rejected":
            # The reader has switched to prompt-only output; the resend is not a retry.
            logger.info("reader %s: resending without response_format", reader.name)
            continue
        if not last_error.retryable or retries >= policy.max_retries:
            logger.warning(
                "reader %s: request %s failed after %d attempt(s): %s",
                reader.name,
                call.request_sha256[:12],
                number,
                last_error,
            )
            return CallOutcome(call.request_sha256, None, number, str(last_error))

        retries += 1
        if last_error.retry_after_s is not None:
            wait = min(last_error.retry_after_s, MAX_RETRY_AFTER_S)
        else:
            wait = policy.backoff_s(call.request_sha256, retries)
        logger.info(
            "reader %s: retry %d of request %s in %.2f s after %s",
            reader.name,
            retries,
            call.request_sha256[:12],
            wait,
            last_error.kind,
        )
        await asyncio.sleep(wait)


async def call_all_async(
    reader: AsyncReader,
    calls: Sequence[PendingCall],
    *,
    store: ResponseStore | None = None,
    reader_kind: str = "openai",
    budget: Budget | None = None,
    cost_of: Callable[[ReaderResponse], float] = lambda response: 0.0,
) -> list[CallOutcome]:
    """Send every call through one client and return their outcomes in the same order."""
    semaphore = asyncio.Semaphore(reader.policy.max_concurrency)
    async with reader.open_client() as client:
        return list(
            await asyncio.gather(
                *(
                    _call_one(reader, client, call, semaphore, store, reader_kind, budget, cost_of)
                    for call in calls
                )
            )
        )


def call_all(
    reader: AsyncReader, calls: Sequence[PendingCall], **options: Any
) -> list[CallOutcome]:
    """Run :func:`call_all_async` to completion from synchronous code.

    Inside a thread that already runs an event loop (a notebook, say), the
    calls run on a new loop in a helper thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call_all_async(reader, calls, **options))

    results: list[list[CallOutcome]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(asyncio.run(call_all_async(reader, calls, **options)))
        except BaseException as error:  # handed back to the calling thread below
            errors.append(error)

    helper = threading.Thread(target=run, name="vlmstudy-calls")
    helper.start()
    helper.join()
    if errors:
        raise errors[0]
    return results[0]


def call_local(
    reader: Any,
    call: PendingCall,
    *,
    store: ResponseStore | None = None,
    reader_kind: str = "local",
) -> CallOutcome:
    """Call a local reader once (no pacing, no retries) and log the attempt."""
    started = time.perf_counter()
    try:
        response = reader.read(call.request)
    except ReaderCallError as error:
        if store is not None:
            row = _attempt_row(call, 1, reader.name, error, time.perf_counter() - started)
            store.log_attempt(row)
        logger.warning("reader %s: call failed: %s", reader.name, error)
        return CallOutcome(call.request_sha256, None, 1, str(error))
    if store is not None:
        row = _attempt_row(call, 1, reader.name, None, time.perf_counter() - started)
        store.put(call.request_sha256, reader_kind, call.request_json, response, row)
    return CallOutcome(call.request_sha256, response, 1)


def stable_seed(text: str) -> int:
    """Return a 63-bit seed from a string, the same in every process.

    Examples
    --------
    >>> stable_seed("gpt-4o") == stable_seed("gpt-4o")
    True
    """
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1
