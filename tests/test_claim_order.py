"""The order pictures are claimed in: `[upload] order = "live"` puts a picture just queued
before the backlog, newest first, the backlog oldest first behind it, and never lets either
starve; `"oldest"` keeps strict queue order."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from boothsync.engine import Engine
from boothsync.outbox import Outbox
from boothsync.receiver import Faults, Receiver
from tests.helpers import Clock, engine_config, jpeg, wait_for

WINDOW = 120.0


@pytest.fixture
def box(db: Path, clock: Clock) -> Iterator[Outbox]:
    outbox = Outbox(db, clock=clock, monotonic=clock)
    outbox.order_live(WINDOW)
    yield outbox
    outbox.close()


def add(box: Outbox, name: str, *, written: float | None = None) -> None:
    """Queue a picture written at ``written`` (default: just now)."""
    box.add(
        Path("/booth/prints") / name,
        size=100,
        mtime_ns=int((box.now() if written is None else written) * 1e9),
        watch="prints",
        destinations={"eventpics": None},
    )


def claims(box: Outbox) -> list[str]:
    """Every job claimed until none is due, by name (each completed at once)."""
    names = []
    while (job := box.claim()) is not None:
        names.append(job.path.name)
        box.complete(job.id, xxh128=f"{job.id:032x}")
    return names


def backlog_then_fresh(box: Outbox, clock: Clock, backlog: int, fresh: int) -> None:
    for number in range(1, backlog + 1):
        add(box, f"old-{number}.jpg")
        clock.advance(1)
    # The backlog waited out an outage: it is well past the live window now.
    clock.advance(WINDOW * 2)
    for number in range(1, fresh + 1):
        add(box, f"new-{number}.jpg")
        clock.advance(1)


def test_a_fresh_picture_goes_before_the_backlog(box: Outbox, clock: Clock) -> None:
    """One picture queued now goes first, before 5 older ones; the backlog then goes oldest
    first."""
    backlog_then_fresh(box, clock, backlog=5, fresh=1)
    assert claims(box) == [
        "new-1.jpg",
        "old-1.jpg",
        "old-2.jpg",
        "old-3.jpg",
        "old-4.jpg",
        "old-5.jpg",
    ]


def test_fresh_pictures_go_newest_first_and_the_backlog_gets_every_second_turn(
    box: Outbox, clock: Clock
) -> None:
    """Several fresh pictures go newest first; while fresh and backlog both wait, they take
    turns, so the backlog never starves behind a stream of new pictures."""
    backlog_then_fresh(box, clock, backlog=3, fresh=3)
    assert claims(box) == [
        "new-3.jpg",
        "old-1.jpg",
        "new-2.jpg",
        "old-2.jpg",
        "new-1.jpg",
        "old-3.jpg",
    ]


def test_the_backlog_waits_while_a_fresh_picture_is_uploaded(box: Outbox, clock: Clock) -> None:
    """While a fresh picture is being uploaded and no other waits, the backlog of its
    destination is held (it then has the link to itself once the uploads before it are
    done); another destination's backlog is not; its end lets the backlog go again."""
    backlog_then_fresh(box, clock, backlog=2, fresh=1)
    box.add(
        Path("/booth/prints/old-folder.jpg"),
        size=100,
        mtime_ns=int((box.now() - WINDOW * 3) * 1e9),
        watch="prints",
        destinations={"folder": None},
    )
    fresh = box.claim()
    assert fresh is not None and fresh.path.name == "new-1.jpg" and fresh.live
    other = box.claim()
    assert other is not None and other.destination == "folder" and not other.live
    assert box.claim() is None
    box.complete(fresh.id, xxh128=f"{fresh.id:032x}")
    assert claims(box) == ["old-1.jpg", "old-2.jpg"]


def test_while_fresh_ones_wait_the_backlog_keeps_its_turn(box: Outbox, clock: Clock) -> None:
    """Held or not, the backlog still gets every second claim while fresh pictures wait:
    a stream of new pictures does not starve it."""
    backlog_then_fresh(box, clock, backlog=2, fresh=2)
    first = box.claim()
    assert first is not None and first.path.name == "new-2.jpg"
    turn = box.claim()
    assert turn is not None and turn.path.name == "old-1.jpg"
    second = box.claim()
    assert second is not None and second.path.name == "new-1.jpg"
    assert box.claim() is None  # fresh ones in flight, none waiting: the backlog holds
    for job in (first, turn, second):
        box.complete(job.id, xxh128=f"{job.id:032x}")
    assert claims(box) == ["old-2.jpg"]


def test_a_picture_is_live_only_for_the_live_window(box: Outbox, clock: Clock) -> None:
    """Once the window has passed, a picture never uploaded is backlog like the others, in
    queue order."""
    backlog_then_fresh(box, clock, backlog=2, fresh=1)
    clock.advance(WINDOW + 1)
    assert claims(box) == ["old-1.jpg", "old-2.jpg", "new-1.jpg"]


def test_a_retry_is_not_fresh_again(box: Outbox, clock: Clock) -> None:
    """A fresh picture whose upload failed once waits as backlog when it is due again: it
    does not jump the queue a second time."""
    backlog_then_fresh(box, clock, backlog=2, fresh=1)
    job = box.claim()
    assert job is not None and job.path.name == "new-1.jpg"
    box.retry_later(job.id, error="server busy (503)", delay=0)
    assert claims(box) == ["old-1.jpg", "old-2.jpg", "new-1.jpg"]


def test_a_picture_written_long_ago_is_backlog_when_queued(box: Outbox, clock: Clock) -> None:
    """A picture found now but written long before (boothsync was off meanwhile) is backlog:
    it is not the picture a guest just took."""
    add(box, "old-1.jpg")
    clock.advance(WINDOW * 2)
    add(box, "found-at-start.jpg", written=box.now() - WINDOW * 3)
    add(box, "new-1.jpg")
    assert box.live_count(WINDOW) == 1
    assert claims(box) == ["new-1.jpg", "old-1.jpg", "found-at-start.jpg"]


def test_oldest_order_is_strict_queue_order(box: Outbox, clock: Clock) -> None:
    """`order = "oldest"`: everything in the order it was queued, fresh or not."""
    box.order_live(None)
    backlog_then_fresh(box, clock, backlog=2, fresh=2)
    assert claims(box) == ["old-1.jpg", "old-2.jpg", "new-1.jpg", "new-2.jpg"]


def test_live_and_backlog_are_counted(box: Outbox, clock: Clock) -> None:
    """The waiting jobs split into live (queued in the window, never tried) and backlog."""
    backlog_then_fresh(box, clock, backlog=4, fresh=2)
    assert box.live_count(WINDOW) == 2
    assert box.counts()["waiting"] - box.live_count(WINDOW) == 4
    clock.advance(WINDOW + 1)
    assert box.live_count(WINDOW) == 0


def test_the_live_claim_reads_indexes_only(box: Outbox, clock: Clock, db: Path) -> None:
    """The live claim is one statement answered from two indexes however long the queue:
    no step of its plan scans the jobs table."""
    backlog_then_fresh(box, clock, backlog=50, fresh=5)
    captured: list[tuple[str, list[object]]] = []
    raw = sqlite3.connect(db)
    try:
        box._connection().set_trace_callback(lambda sql: captured.append((sql, [])))
        job = box.claim()
        assert job is not None
        box._connection().set_trace_callback(None)
        select = next(sql for sql, _ in captured if "UNION ALL" in sql)
        plan = [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + select)]
    finally:
        raw.close()
    assert any("jobs_fresh" in step for step in plan), plan
    assert any("jobs_due" in step for step in plan), plan
    assert not any(step.startswith("SCAN jobs") and "INDEX" not in step for step in plan), plan


def test_a_new_picture_overtakes_the_backlog_for_real(
    tmp_path: Path, engine_for: Callable[..., Engine]
) -> None:
    """A running boothsync with a backlog of pictures written an hour ago, uploading one at a
    time to a slow gallery: a picture taken now reaches the gallery right after the upload in
    flight, not behind the backlog."""
    with Receiver(tmp_path / "received", faults=Faults(delay=0.3)) as receiver:
        config = engine_config(tmp_path, receiver.base_url)
        config = replace(config, upload=replace(config.upload, concurrency=1))
        hour_ago = time.time() - 3600
        for number in range(1, 9):
            old = tmp_path / "hot" / f"old-{number}.jpg"
            old.write_bytes(jpeg(f"old {number}".encode()))
            os.utime(old, (hour_ago + number, hour_ago + number))
        engine_for(config)
        wait_for(lambda: len(receiver.received()) >= 1, timeout=30, what="the backlog to go")
        before = len(receiver.received())
        fresh = tmp_path / "hot" / "new.jpg.part"
        fresh.write_bytes(jpeg(b"taken now"))
        fresh.rename(tmp_path / "hot" / "new.jpg")
        wait_for(
            lambda: "new.jpg" in [r.file_name for r in receiver.received()],
            timeout=60,
            what="the new picture",
        )
        order = [r.file_name for r in receiver.received()]
    # At most the upload in flight (and one more claimed meanwhile) went before it.
    assert order.index("new.jpg") <= before + 2, order
    assert order.index("new.jpg") < 8, order


def test_status_counts_new_and_backlog(tmp_path: Path) -> None:
    """`boothsync status` (and its JSON) say how many waiting pictures are new and how many
    are the backlog, read from the queue of a boothsync that is not running."""
    from boothsync.config import load_config
    from boothsync.paths import outbox_path
    from tests.test_cli import boothsync, write_config

    config_file = write_config(tmp_path, "http://127.0.0.1:9")
    outbox = Outbox(outbox_path(load_config(config_file)))
    try:
        for name, written in (("old.jpg", time.time() - 3600), ("new.jpg", time.time())):
            outbox.add(
                tmp_path / "hot" / name,
                size=100,
                mtime_ns=int(written * 1e9),
                watch=str(tmp_path / "hot"),
                destinations={"eventpics": "a1"},
            )
    finally:
        outbox.close()
    result = boothsync("status", "-c", str(config_file), "--json")
    report = json.loads(result.stdout)
    assert (report["live"], report["backlog"]) == (1, 1)
    text = boothsync("status", "-c", str(config_file)).stdout
    assert "waiting: 1 new (they go first), 1 backlog" in text


def test_a_spare_worker_is_not_held(box: Outbox, clock: Clock) -> None:
    """The hold is for a live upload that moves: a spare worker (it claims only while every
    upload in flight stands still) gets the backlog beside a live upload in flight."""
    backlog_then_fresh(box, clock, backlog=1, fresh=1)
    fresh = box.claim()
    assert fresh is not None and fresh.live
    assert box.claim() is None
    spare = box.claim(hold=False)
    assert spare is not None and spare.path.name == "old-1.jpg"
