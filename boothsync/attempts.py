"""The quick retries inside one upload attempt: a tenacity policy whose sleeps a shutdown
interrupts, that waits for a server's short ``Retry-After``, and that draws on the client-wide
:class:`~boothsync.retry.RetryBudget`. A longer wait, a spent budget or the last try hands
the job back to the queue, whose backoff (:func:`~boothsync.retry.backoff`) takes over.

Apart from :mod:`boothsync.retry` so that reading a config, which imports the gallery
services and through them the retry rules, does not import tenacity.
"""

from __future__ import annotations

import threading

import tenacity

from boothsync.errors import (
    NetworkError,
    RetryableError,
    ServerBusy,
    UploadUrlRejected,
)
from boothsync.retry import RetryBudget

__all__ = ["attempt_policy", "attempts_bound"]

# A quick in-attempt retry only waits for servers that ask for a short pause;
# a longer wish goes back to the queue so the worker can serve other files.
_QUICK_RETRY_AFTER = 5.0
# Tries of one upload attempt, and the longest jittered wait between two of them.
_QUICK_TRIES = 3
_QUICK_MAX_WAIT = 4.0


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
