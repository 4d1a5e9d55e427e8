"""When to try again, and how long to wait first.

Owns the classification of HTTP answers into the error tree of
:mod:`boothsync.errors` (the same rule for every destination: retry, pause the
destination, or fail the one file), the job-level backoff with jitter, the
parsing of ``Retry-After``, and the client-wide retry budget that keeps an outage
from turning into a retry storm (the quick retries inside one attempt, which draw on it,
are :mod:`boothsync.attempts`). Knows nothing of HTTP libraries or of the queue.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Literal

from boothsync.errors import (
    FileRejected,
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
