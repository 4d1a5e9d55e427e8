"""Error classification, backoff and Retry-After: the one place that decides when to retry."""

from __future__ import annotations

import calendar
import threading

import pytest

from boothsync.attempts import attempt_policy
from boothsync.errors import (
    FileRejected,
    NetworkError,
    ServerBusy,
    Unauthorized,
    UnknownTarget,
    UploadUrlRejected,
)
from boothsync.retry import (
    RetryBudget,
    backoff,
    classify_status,
    parse_retry_after,
)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
@pytest.mark.parametrize("phase", ["write", "storage", "read"])
def test_transient_statuses_are_retried_everywhere(status: int, phase: str) -> None:
    """408, 429 and every 5xx mean "not now": the file waits and is tried again."""
    assert classify_status(status, phase=phase) is ServerBusy  # type: ignore[arg-type]


def test_storage_refusing_a_presigned_url_asks_for_a_new_url() -> None:
    """403 and 400 on the PUT mean the URL expired or its signature broke: get a new one."""
    assert classify_status(403, phase="storage") is UploadUrlRejected
    assert classify_status(400, phase="storage") is UploadUrlRejected


def test_key_and_target_errors_pause_the_destination() -> None:
    """401 is a wrong key and 404 an unknown link or album: the destination pauses."""
    assert classify_status(401, phase="write") is Unauthorized
    assert classify_status(401, phase="read") is Unauthorized
    assert classify_status(404, phase="write") is UnknownTarget


@pytest.mark.parametrize(
    ("status", "phase"), [(400, "write"), (413, "storage"), (415, "storage"), (422, "write")]
)
def test_other_client_errors_fail_only_that_file(status: int, phase: str) -> None:
    """Any other 4xx is about this one file: it fails, the rest go on."""
    assert classify_status(status, phase=phase) is FileRejected  # type: ignore[arg-type]


def test_backoff_grows_is_capped_and_never_zero() -> None:
    """Job backoff doubles per attempt up to the cap, with jitter but never an instant retry."""
    assert backoff(1, rand=lambda: 0.0) == pytest.approx(1.0)
    assert backoff(1, rand=lambda: 1.0) == pytest.approx(2.0)
    assert backoff(4, rand=lambda: 1.0) == pytest.approx(16.0)
    assert backoff(50, rand=lambda: 1.0) == pytest.approx(600.0)
    assert backoff(50, rand=lambda: 0.0) == pytest.approx(300.0)
    samples = {backoff(3) for _ in range(50)}
    assert len(samples) > 1 and all(4.0 <= s <= 8.0 for s in samples)


def test_retry_after_in_seconds() -> None:
    """A delta-seconds Retry-After is taken as is, clamped to the cap and never negative."""
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("99999") == 3600.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_retry_after_http_date_is_relative_to_the_servers_date() -> None:
    """An HTTP-date is read against the response's Date, so a wrong booth clock does not matter."""
    server_now = "Sat, 21 Nov 2026 22:40:00 GMT"
    later = "Sat, 21 Nov 2026 22:41:30 GMT"
    assert parse_retry_after(later, date=server_now, now=0.0) == 90.0
    booth_now = calendar.timegm((2026, 11, 21, 22, 40, 0))
    assert parse_retry_after(later, now=booth_now) == pytest.approx(90.0)


def test_attempt_policy_retries_network_errors_a_few_times_then_gives_up() -> None:
    """One attempt is tried a few times on network errors, then the error goes to the queue."""
    calls = []
    with pytest.raises(NetworkError):
        for attempt in attempt_policy(threading.Event(), attempts=3, max_wait=0.01):
            with attempt:
                calls.append(1)
                raise NetworkError("down")
    assert len(calls) == 3


def test_attempt_policy_does_not_retry_rejections_or_rate_limits() -> None:
    """A rejected file or a 429 is not hammered again inside one attempt."""
    for error in (
        FileRejected("no", status=422),
        ServerBusy("slow down", status=429, retry_after=30),
    ):
        calls = []
        with pytest.raises(type(error)):
            for attempt in attempt_policy(threading.Event(), max_wait=0.01):
                with attempt:
                    calls.append(1)
                    raise error
        assert len(calls) == 1


def test_a_request_that_may_have_been_delivered_is_not_sent_again_at_once() -> None:
    """A request that went out whole and got no answer (the gallery may have kept the picture)
    is not tried again inside the attempt: the queue's pauses leave fewer copies."""
    calls = []
    with pytest.raises(NetworkError):
        for attempt in attempt_policy(threading.Event(), max_wait=0.01):
            with attempt:
                calls.append(1)
                raise NetworkError("no answer in time", maybe_delivered=True)
    assert len(calls) == 1


def test_attempt_policy_stops_at_once_when_shutting_down() -> None:
    """A stop request ends the quick retries without waiting out the backoff."""
    stop = threading.Event()
    calls = []
    with pytest.raises(NetworkError):
        for attempt in attempt_policy(stop, attempts=10, max_wait=3600.0):
            with attempt:
                calls.append(1)
                stop.set()
                raise NetworkError("down")
    assert len(calls) == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_retry_budget_allows_a_burst_then_refills_at_its_rate() -> None:
    """A full bucket gives ``burst`` tokens at once, then one per 1/rate seconds, never more
    than ``burst`` however long it rested."""
    clock = FakeClock()
    budget = RetryBudget(rate=2.0, burst=3, clock=clock)
    assert [budget.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5
    assert budget.try_acquire() and not budget.try_acquire()
    clock.now += 3600
    assert budget.available == pytest.approx(3.0)
    clock.now -= 10  # a clock stepping back neither adds nor drains tokens
    assert budget.available == pytest.approx(3.0)


def test_the_retry_budget_is_shared_safely_between_threads() -> None:
    """Many workers drawing at once never get more tokens than the bucket held."""
    budget = RetryBudget(rate=0.0, burst=50)
    granted: list[bool] = []
    lock = threading.Lock()

    def draw() -> None:
        for _ in range(20):
            ok = budget.try_acquire()
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 50


def test_a_spent_budget_sends_the_error_to_the_queue_without_a_quick_retry() -> None:
    """With no token left an attempt is tried once; tokens go only to retries that happen."""
    budget = RetryBudget(rate=0.0, burst=2)
    calls = []
    with pytest.raises(NetworkError):
        for attempt in attempt_policy(threading.Event(), attempts=3, max_wait=0.01, budget=budget):
            with attempt:
                calls.append(1)
                raise NetworkError("down")
    assert len(calls) == 3 and budget.available == 0.0
    calls.clear()
    with pytest.raises(NetworkError):
        for attempt in attempt_policy(threading.Event(), attempts=3, max_wait=0.01, budget=budget):
            with attempt:
                calls.append(1)
                raise NetworkError("down")
    assert len(calls) == 1


def test_an_attempt_that_succeeds_spends_nothing() -> None:
    """A first try that works, or an error not retried, leaves the budget untouched."""
    budget = RetryBudget(rate=0.0, burst=1)
    for attempt in attempt_policy(threading.Event(), budget=budget):
        with attempt:
            pass
    with pytest.raises(FileRejected):
        for attempt in attempt_policy(threading.Event(), budget=budget):
            with attempt:
                raise FileRejected("no", status=422)
    assert budget.available == 1.0
