"""Waits are measured on a monotonic clock: setting the wall clock back or forth, while
boothsync runs or while it does not, never makes a picture wait longer (or shorter) than its
backoff or rate limit; the times shown to people stay the wall clock's."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from boothsync.destinations import UploadItem
from boothsync.errors import ServerBusy
from boothsync.health import Health
from boothsync.outbox import LONGEST_WAIT, Outbox
from boothsync.retry import RETRY_AFTER_CAP, RetryBudget, backoff
from tests.helpers import Clock, queue, wait_for
from tests.test_outbox import add, claim
from tests.test_uploader import FakeGallery, picture, running, totals

HOUR = 3600.0


@pytest.fixture
def wall() -> Clock:
    """The wall clock, as an operator or NTP may set it."""
    return Clock(1_800_000_000.0)


@pytest.fixture
def ticks() -> Clock:
    """The monotonic clock: it only ever moves forward, by the time that passed."""
    return Clock(5_000.0)


@pytest.fixture
def box(tmp_path: Path, wall: Clock, ticks: Clock) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite3", clock=wall, monotonic=ticks)
    yield outbox
    outbox.close()


@pytest.mark.parametrize("step", [-HOUR, +HOUR], ids=["set-back", "set-forward"])
def test_a_job_in_backoff_is_due_on_time_whatever_the_wall_clock_does(
    box: Outbox, wall: Clock, ticks: Clock, step: float
) -> None:
    """A job backed off for 60 s is not due after 59 s and is due after 60 s, with the wall
    clock stepped an hour back or forth in between."""
    add(box, "IMG_1.jpg")
    box.retry_later(claim(box).id, delay=60, error="timeout")
    wall.advance(step)
    ticks.advance(59)
    wall.advance(59)
    assert box.claim() is None
    assert box.next_due() is not None and 0.9 < box.next_due() - box.now() < 1.1  # type: ignore[operator]
    ticks.advance(1)
    wall.advance(1)
    assert claim(box).path.name == "IMG_1.jpg"


def test_times_shown_to_people_follow_the_wall_clock(
    box: Outbox, wall: Clock, ticks: Clock
) -> None:
    """When a picture was uploaded and when it last failed are the wall clock's times, as the
    operator's own clock shows them, also after a step."""
    add(box, "IMG_1.jpg")
    add(box, "IMG_2.jpg")
    first = claim(box)
    second = claim(box)
    wall.advance(-HOUR)
    ticks.advance(5)
    box.complete(first.id)
    box.retry_later(second.id, delay=10, error="timeout")
    stats = box.stats()
    assert stats.last_upload is not None and stats.last_upload.at == wall.now
    assert stats.last_error is not None and stats.last_error.at == wall.now
    assert box.uploaded_since(wall.now - 1) == 1


def test_a_clock_set_back_while_stopped_strands_no_job(
    tmp_path: Path, wall: Clock, ticks: Clock
) -> None:
    """Jobs scheduled by a run whose wall clock was two hours ahead are due at the next open
    (further ahead than any wait boothsync sets), while a job in an ordinary backoff keeps its
    wait."""
    db = tmp_path / "state" / "outbox.sqlite3"
    ahead = Clock(wall.now + 2 * HOUR)
    first = Outbox(db, clock=ahead, monotonic=ticks)
    try:
        add(first, "IMG_stranded.jpg")
        first.retry_later(claim(first).id, delay=30, error="timeout")
    finally:
        first.close()
    second = Outbox(db, clock=wall, monotonic=ticks)
    try:
        stranded = claim(second)
        assert stranded.path.name == "IMG_stranded.jpg"
        second.complete(stranded.id)
        add(second, "IMG_backoff.jpg")
        second.retry_later(claim(second).id, delay=600, error="timeout")
    finally:
        second.close()
    for clock in (wall, ticks):
        clock.advance(1)
    third = Outbox(db, clock=wall, monotonic=ticks)
    try:
        assert third.claim() is None
        for clock in (wall, ticks):
            clock.advance(599)
        assert claim(third).path.name == "IMG_backoff.jpg"
    finally:
        third.close()


def test_the_longest_wait_covers_every_wait_boothsync_sets() -> None:
    """Nothing boothsync schedules is ever pulled in by the open: the backoff's cap and the
    Retry-After cap are within LONGEST_WAIT."""
    assert backoff(1_000) <= LONGEST_WAIT
    assert RETRY_AFTER_CAP <= LONGEST_WAIT


def test_the_claim_stays_one_indexed_query(box: Outbox) -> None:
    """claim() finds its job through the jobs_due index, not a scan of the queue."""
    add(box, "IMG_1.jpg")
    conn = box._connection()
    plan = " ".join(
        str(row[3])
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE state = ? AND next_attempt_at <= ?"
            " AND destination IN (?) ORDER BY next_attempt_at, id LIMIT 1",
            ("waiting", box.now(), "eventpics"),
        )
    )
    assert "USING INDEX jobs_due" in plan and "TEMP B-TREE" not in plan, plan


def test_a_backed_off_upload_goes_on_time_after_the_clock_is_set_back(tmp_path: Path) -> None:
    """Real workers: the wall clock is set back an hour while a picture is in a half-second
    backoff; the picture is tried again after that half second, not an hour later."""
    wall = Clock(time.time())
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite3", clock=wall)
    tries: list[float] = []

    def busy(item: UploadItem) -> None:
        tries.append(time.monotonic())
        if len(tries) == 1:
            wall.advance(-HOUR)
        if len(tries) <= 2:  # the try and its one quick retry
            raise ServerBusy("EventPics answered 503", status=503)

    queue(outbox, picture(tmp_path), "eventpics")
    uploader = running(
        outbox,
        FakeGallery("eventpics", busy),
        job_backoff=lambda attempts: 0.5,
        retry_budget=RetryBudget(rate=0.0, burst=1),
    )
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1, timeout=10)
    finally:
        uploader.stop(5)
        outbox.close()
    # On time: after its half second, not at the workers' next idle look (5 s) or later.
    assert len(tries) == 3 and 0.5 <= tries[2] - tries[1] < 3.0


def test_a_rate_limit_is_measured_on_the_monotonic_clock(tmp_path: Path) -> None:
    """A 429's wait (paused_until) is on the monotonic clock, which no wall-clock step moves,
    and the destination goes again once it has passed."""
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite3")
    answers: list[str] = []

    def limited_once(item: UploadItem) -> None:
        answers.append(item.file_name)
        if len(answers) == 1:
            raise ServerBusy("EventPics answered 429", status=429, retry_after=1.0)

    queue(outbox, picture(tmp_path), "eventpics")
    uploader = running(outbox, FakeGallery("eventpics", limited_once))
    try:
        wait_for(lambda: uploader.health()["eventpics"].health is Health.RATE_LIMITED)
        until = uploader.health()["eventpics"].paused_until
        assert until is not None and abs(until - (time.monotonic() + 1.0)) < 1.0
        wait_for(lambda: totals(outbox)["uploaded"] == 1, timeout=10)
    finally:
        uploader.stop(5)
        outbox.close()


def test_next_attempt_at_is_stored_on_the_schedule_and_added_at_on_the_wall(
    box: Outbox, wall: Clock, ticks: Clock, tmp_path: Path
) -> None:
    """In the database, a job's due time is on the queue's schedule (wall clock at open plus the
    monotonic time since) and its file's added time is the wall clock's."""
    opened_at = wall.now
    wall.advance(-HOUR)
    ticks.advance(10)
    add(box, "IMG_1.jpg")
    raw = sqlite3.connect(tmp_path / "state" / "outbox.sqlite3")
    try:
        ((due, added),) = raw.execute(
            "SELECT j.next_attempt_at, f.added_at"
            " FROM jobs AS j JOIN files AS f ON f.id = j.file_id"
        ).fetchall()
    finally:
        raw.close()
    assert due == opened_at + 10
    assert added == wall.now
