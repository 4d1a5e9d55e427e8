"""When to try again, and how long to wait first.

Owns the classification of HTTP answers into the error tree of
:mod:`boothsync.errors` (the same rule for every destination: retry, pause the
destination, or fail the one file), the job-level backoff with jitter, the
parsing of ``Retry-After``, the per-attempt tenacity policy whose sleeps a
shutdown interrupts, and the client-wide retry budget that keeps an outage
from turning into a retry storm. Knows nothing of HTTP libraries or of the queue.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Literal

import tenacity

from boothsync.errors import (
    FileRejected,
    NetworkError,
    RetryableError,
    ServerBusy,
    Unauthorized,
    UnknownTarget,
    UploadError,
    UploadUrlRejected,
)

__all__ = [
    "RETRYABLE_STATUSES",
    "Phase",
    "RetryBudget",
    "attempt_policy",
    "attempts_bound",
    "backoff",
    "classify_status",
    "http_date",
    "parse_retry_after",
]

# Where a request goes: ``write``, the service's API with the key, sending a picture or asking
# where to send it; ``storage``, a presigned storage URL taking the bytes (no key: the URL is
# the grant); ``read``, the service's API with the key, reading events, albums or photos.
Phase = Literal["write", "storage", "read"]

# Statuses that say "not now" rather than "not this": the request may succeed
# unchanged later (rclone's retryErrorCodes, plus 408 for slow venue links).
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

# A Retry-After longer than this is treated as this: a gallery that asks for a
# day's pause must not stop a wedding's uploads for a day.
RETRY_AFTER_CAP = 3600.0

# A quick in-attempt retry only waits for servers that ask for a short pause;
# a longer wish goes back to the queue so the worker can serve other files.
_QUICK_RETRY_AFTER = 5.0
# Tries of one upload attempt, and the longest jittered wait between two of them.
_QUICK_TRIES = 3
_QUICK_MAX_WAIT = 4.0


def classify_status(status: int, *, phase: Phase) -> type[UploadError]:
    """The error type for an HTTP status that is not a success.

    ``phase`` is where it happened (:data:`Phase`): ``write`` (the API, sending a picture or
    asking for an upload URL), ``storage`` (the bytes to a presigned storage URL) or ``read``
    (the API, reading events, albums or photos).
    """
    if status in RETRYABLE_STATUSES or status >= 500:
        return ServerBusy
    if phase == "storage":
        # The storage answers 403 for an expired URL or a signature it no
        # longer accepts, and 400 for some of the same; a new URL fixes both.
        if status in (400, 403):
            return UploadUrlRejected
        return FileRejected
    if status in (401, 403):
        return Unauthorized
    if status == 404:
        return UnknownTarget
    return FileRejected


def backoff(
    attempts: int,
    *,
    base: float = 2.0,
    cap: float = 600.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before a job that failed ``attempts`` times is due again.

    Capped exponential growth with "equal jitter": half the step is fixed so a
    retry never comes back at once, the other half is random so that files
    failed together by one outage do not all return together.
    """
    step = min(cap, base * 2.0 ** max(0, attempts - 1))
    return step / 2.0 + rand() * step / 2.0


def parse_retry_after(
    value: str | None,
    *,
    date: str | None = None,
    now: float | None = None,
    cap: float = RETRY_AFTER_CAP,
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, clamped to ``[0, cap]``.

    Both forms are accepted: delta-seconds, and an HTTP-date, which is read
    relative to the response's own ``Date`` header when there is one (so a
    booth PC whose clock is off still waits the right time), else to ``now``.
    Returns None when the header is absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = http_date(value)
        if when is None:
            return None
        reference = http_date(date) if date else None
        if reference is None:
            reference = time.time() if now is None else now
        seconds = when - reference
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(cap, seconds))


def http_date(value: str | None) -> float | None:
    """An HTTP-date (``Date``, ``Retry-After``) as epoch seconds; None when absent, unreadable
    or without a zone."""
    if not value:
        return None
    # Here rather than with the module: email.utils is a noticeable part of every short
    # command's start, and only an answer with a date needs it.
    from email.utils import parsedate_to_datetime

    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


class RetryBudget:
    """A token bucket shared by every worker: each quick in-attempt retry spends a token.

    ``rate`` tokens come back per second, up to ``burst``. When the bucket is
    empty a failed attempt is not retried on the spot but handed back to the
    queue, whose job backoff spreads the files out: one flaky moment costs a
    few quick retries, a long outage cannot multiply every file's requests
    (the pattern of gRPC's retry throttling and the AWS SDKs' retry quota).
    Thread-safe; ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        rate: float = 1.0,
        burst: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("a retry budget needs rate >= 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._at = clock()

    def try_acquire(self) -> bool:
        """Take one token if there is one; False (and nothing taken) when the budget is spent."""
        with self._lock:
            self._refill()
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    @property
    def available(self) -> float:
        """Tokens in the bucket now (for logs and tests)."""
        with self._lock:
            self._refill()
            return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        # A clock that steps back must not drain the bucket.
        elapsed = max(0.0, now - self._at)
        self._at = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)


def _quick_retry(exc: BaseException) -> bool:
    if isinstance(exc, NetworkError) and exc.maybe_delivered:
        # The whole request went out and its answer never came: the gallery may have kept
        # the picture. Sending it again at once, and again, could leave a copy each time;
        # the queue's growing pauses leave fewer, and give a slow gallery time to recover.
        return False
    if isinstance(exc, NetworkError | UploadUrlRejected):
        return True
    if isinstance(exc, ServerBusy) and exc.status != 429:
        return exc.retry_after is None or exc.retry_after <= _QUICK_RETRY_AFTER
    return False


class _WaitForServer(tenacity.wait.wait_base):
    """The server's own short Retry-After, added to the jittered wait."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return exc.retry_after
        return 0.0


class _BudgetSpent(tenacity.stop.stop_base):
    """Stop when the shared budget has no token left for one more quick retry."""

    def __init__(self, budget: RetryBudget) -> None:
        self._budget = budget

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return not self._budget.try_acquire()


def attempts_bound(
    per_try: float, *, attempts: int = _QUICK_TRIES, max_wait: float = _QUICK_MAX_WAIT
) -> float:
    """The longest :func:`attempt_policy` (with these ``attempts`` and ``max_wait``) can take
    when each try takes at most ``per_try`` seconds: the tries and the waits between them."""
    return attempts * per_try + (attempts - 1) * (max_wait + _QUICK_RETRY_AFTER)


def attempt_policy(
    stop: threading.Event,
    *,
    attempts: int = _QUICK_TRIES,
    max_wait: float = _QUICK_MAX_WAIT,
    budget: RetryBudget | None = None,
) -> tenacity.Retrying:
    """Tenacity policy for one upload attempt: a few quick tries, then give up to the queue.

    Network errors, rejected URLs and short server hiccups are tried again at
    once with full-jitter exponential waits (or the server's short
    Retry-After). Every wait is on ``stop``, so a shutdown never waits out a
    backoff, and no new try starts once ``stop`` is set. Each quick retry
    takes a token from ``budget`` when one is given; with none left the error
    goes to the queue at once. The last error is re-raised for the caller to
    put the job back in the queue.
    """
    stops: list[tenacity.stop.stop_base] = [
        tenacity.stop_after_attempt(attempts),
        tenacity.stop_when_event_set(stop),
    ]
    if budget is not None:
        # Last, and tenacity asks "stop?" only once "retry?" said yes: a token
        # is spent only on a retry that really happens.
        stops.append(_BudgetSpent(budget))
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_quick_retry),
        wait=tenacity.wait_combine(
            tenacity.wait_random_exponential(multiplier=0.25, max=max_wait), _WaitForServer()
        ),
        stop=tenacity.stop_any(*stops),
        sleep=tenacity.nap.sleep_using_event(stop),
        reraise=True,
    )
